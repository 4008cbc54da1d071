import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import {
  type CallToolResult,
  classifyInboundRequest,
  createMcpHandler,
  type InputRequiredResult,
  McpServer,
  type ServerContext,
} from '@modelcontextprotocol/server'
import { z } from 'zod'
import type { ServerInfo } from './server.js'
import { type Caller, type ToolDefinition, type ToolExtra, toolError } from './tools.js'
import { jsonAnswer } from './transport.js'

/** The first protocol revision of the stateless era: `_meta` on every request, no sessions. */
export const MODERN_PROTOCOL_VERSION = '2026-07-28'

const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion'

/**
 * How long a client may keep `tools/list` and `server/discover` (MCP 2026-07-28,
 * server/utilities/caching): the tools are fixed for the life of the process and the same for
 * every caller, hence `public`; a redeploy may change them, hence minutes, not hours.
 */
const CACHE_HINT = { ttlMs: 300_000, cacheScope: 'public' } as const

/** The modern era of `/mcp`, served statelessly on the v2 SDK. */
export interface ModernEra {
  /**
   * Whether a POST belongs to this era rather than to the 2025 one: its body carries the
   * per-request `_meta` envelope claim, or its `MCP-Protocol-Version` names 2026-07-28 or
   * later (SDK `classifyInboundRequest`: everything else, `initialize` included, is legacy).
   */
  claims(body: unknown, protocolVersionHeader: string | undefined): boolean
  /**
   * Answers a POST this era claims, as the SDK's `createMcpHandler` would. The request comes as
   * its header reader and a way to build the whole `Request`: the replayed answers need two
   * headers, and building a WHATWG `Request` on @hono/node-server copies every header.
   */
  answer(request: InboundRequest, body: unknown, authInfo: AuthInfo): Promise<Response>
  close(): Promise<void>
}

/**
 * The 2026-07-28 era of the endpoint (basic/transports/streamable-http, basic/versioning):
 * every request on its own, no session, `server/discover` required, headers mirrored from the
 * body and checked against it. Served by the v2 SDK's `createMcpHandler` in strict mode (the
 * 2025 era stays on the endpoint's own transport), with an `McpServer` per request carrying
 * the same `ToolDefinition`s as the legacy server.
 *
 * `tools/list` and `server/discover` depend on nothing but the tools, yet the SDK builds a
 * server and a transport for each (a few percent of a bare Hono app's throughput). So their
 * results are taken once from the SDK itself and replayed, for a request the SDK's own
 * classifier accepted; its verdict is remembered per distinct header-and-envelope shape,
 * because classifying costs more than the rest of such a request and a client sends the same
 * envelope every time. Anything else, including every refusal, is the SDK's answer.
 */
export function createModernEra(info: ServerInfo, tools: readonly ToolDefinition[]): ModernEra {
  const byName = new Map(tools.map((tool) => [tool.name, tool]))
  const factory = () => {
    const server = new McpServer(
      { name: info.name, version: info.version },
      {
        capabilities: { tools: {} },
        instructions: info.instructions,
        cacheHints: { 'tools/list': CACHE_HINT, 'server/discover': CACHE_HINT },
      },
    )
    for (const tool of byName.values()) {
      server.registerTool(
        tool.name,
        {
          title: tool.title,
          description: tool.description,
          inputSchema: z.object(tool.inputSchema ?? {}),
          annotations: tool.annotations,
        },
        (args: Record<string, unknown>, ctx: ServerContext) => runTool(tool, args, ctx),
      )
    }
    return server
  }
  const handler = createMcpHandler(factory, { legacy: 'reject' })
  const constants = new Map<string, Promise<string | undefined>>()
  const verdicts = new Map<string, boolean>()

  /** The SDK's own result for `method`, without the request's id, as JSON text. */
  const constantResult = (method: string) => {
    let result = constants.get(method)
    if (!result) {
      result = handler
        .fetch(
          new Request('http://localhost/mcp', {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              'mcp-protocol-version': MODERN_PROTOCOL_VERSION,
              'mcp-method': method,
            },
            body: JSON.stringify({
              jsonrpc: '2.0',
              id: 0,
              method,
              params: {
                _meta: {
                  [PROTOCOL_VERSION_META_KEY]: MODERN_PROTOCOL_VERSION,
                  'io.modelcontextprotocol/clientCapabilities': {},
                },
              },
            }),
          }),
        )
        .then(async (response) => {
          const answer = (await response.json()) as { result?: unknown }
          return response.status === 200 && answer.result
            ? JSON.stringify(answer.result)
            : undefined
        })
      constants.set(method, result)
    }
    return result
  }

  /**
   * Whether the SDK would serve this `tools/list` or `server/discover` as is: classified
   * modern with a supported revision, both required headers present, no cursor.
   */
  const replayable = (request: InboundRequest, body: unknown): body is ConstantRequest => {
    if (!isConstantRequest(body)) return false
    const version = request.header('mcp-protocol-version')
    const methodHeader = request.header('mcp-method')
    const meta = body.params._meta
    if (
      version !== MODERN_PROTOCOL_VERSION ||
      methodHeader !== body.method ||
      meta[PROTOCOL_VERSION_META_KEY] !== version
    ) {
      return false
    }
    const key = `${body.method}\n${JSON.stringify(meta)}`
    let verdict = verdicts.get(key)
    if (verdict === undefined) {
      const outcome = classifyInboundRequest({
        httpMethod: 'POST',
        protocolVersionHeader: version,
        mcpMethodHeader: methodHeader,
        body: { jsonrpc: '2.0', id: 0, method: body.method, params: { _meta: meta } },
      })
      verdict = outcome.kind === 'modern' && outcome.classification.revision === version
      // Bounded: a client varies its envelope rarely; one that varies it on purpose only
      // empties the memo.
      if (verdicts.size >= 1024) verdicts.clear()
      verdicts.set(key, verdict)
    }
    return verdict
  }

  return {
    claims(body, protocolVersionHeader) {
      if (protocolVersionHeader !== undefined && protocolVersionHeader.trim() >= '2026-07-28') {
        return true
      }
      return Array.isArray(body) ? body.some(hasEnvelopeClaim) : hasEnvelopeClaim(body)
    },
    async answer(request, body, authInfo) {
      if (replayable(request, body)) {
        const result = await constantResult(body.method)
        if (result !== undefined) {
          return jsonAnswer(
            `{"jsonrpc":"2.0","id":${JSON.stringify(body.id)},"result":${result}}`,
            {},
          )
        }
      }
      return handler.fetch(request.raw(), { authInfo, parsedBody: body })
    },
    close: () => handler.close(),
  }
}

/** A POST as the modern era reads it. */
export interface InboundRequest {
  header(name: string): string | undefined
  /** The whole request, built only for the SDK's handler. */
  raw(): Request
}

interface ConstantRequest {
  readonly jsonrpc: '2.0'
  readonly id: string | number
  readonly method: 'tools/list' | 'server/discover'
  readonly params: { readonly _meta: Record<string, unknown> }
}

function isConstantRequest(body: unknown): body is ConstantRequest {
  if (typeof body !== 'object' || body === null) return false
  const { jsonrpc, id, method, params } = body as Record<string, unknown>
  if (jsonrpc !== '2.0' || (method !== 'tools/list' && method !== 'server/discover')) return false
  if (typeof id !== 'string' && (typeof id !== 'number' || !Number.isInteger(id))) return false
  if (typeof params !== 'object' || params === null) return false
  for (const key in params) if (key !== '_meta') return false
  const meta = (params as { _meta?: unknown })._meta
  return typeof meta === 'object' && meta !== null && !Array.isArray(meta)
}

function hasEnvelopeClaim(message: unknown): boolean {
  if (typeof message !== 'object' || message === null) return false
  const params = (message as { params?: unknown }).params
  if (typeof params !== 'object' || params === null) return false
  const meta = (params as { _meta?: unknown })._meta
  return typeof meta === 'object' && meta !== null && PROTOCOL_VERSION_META_KEY in meta
}

/**
 * Runs an era-neutral tool for a modern request: the same `caller` and `authInfo` as on the
 * legacy path, the request's signal and id; notifications go on the request's own stream.
 * Server-to-client requests do not exist in this era: a tool asks for input by returning
 * `inputRequired(...)` and reads the answers from `extra.inputResponses` on the retry.
 */
async function runTool(
  tool: ToolDefinition,
  args: Record<string, unknown>,
  ctx: ServerContext,
): Promise<CallToolResult | InputRequiredResult> {
  const authInfo = ctx.http?.authInfo as AuthInfo | undefined
  // The bearer gate attaches the caller to every request; without it nothing may run.
  if (!authInfo?.extra) throw new McpError(ErrorCode.InternalError, 'unauthenticated call')
  const extra: ToolExtra = {
    era: 'modern',
    signal: ctx.mcpReq.signal,
    requestId: ctx.mcpReq.id,
    _meta: ctx.mcpReq._meta as ToolExtra['_meta'],
    authInfo,
    caller: authInfo.extra as unknown as Caller,
    inputResponses: ctx.mcpReq.inputResponses,
    sendNotification: (notification) => ctx.mcpReq.notify(notification),
    sendRequest: () => {
      throw new McpError(
        ErrorCode.InvalidRequest,
        'a 2026-07-28 server cannot send requests to the client: return inputRequired(...) instead',
      )
    },
  }
  try {
    return (await tool.handler(args as never, extra)) as CallToolResult | InputRequiredResult
  } catch (error) {
    return toolError(error instanceof Error ? error.message : String(error)) as CallToolResult
  }
}

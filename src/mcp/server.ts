import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import {
  CallToolRequestSchema,
  ErrorCode,
  type JSONRPCRequest,
  ListToolsRequestSchema,
  type ListToolsResult,
  McpError,
} from '@modelcontextprotocol/sdk/types.js'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv'
import { z } from 'zod'
import { type Caller, type ToolDefinition, toolError } from './tools.js'

/** The name and version the server reports in `initialize` (MCP lifecycle). */
export interface ServerInfo {
  readonly name: string
  readonly version: string
  readonly instructions?: string | undefined
}

/** Builds the MCP servers of an endpoint, and knows the answers that need none. */
export interface ServerFactory {
  /** A server for a session, or for one stateless POST. */
  create(): Server
  /**
   * The JSON text of the result of `request` when it depends on nothing but the tools, so
   * the endpoint can answer it without a server: `tools/list` (one page, no cursor).
   * Undefined for anything else, which goes to a server.
   */
  constantResult(request: JSONRPCRequest): string | undefined
}

/**
 * Returns a factory of MCP servers that serve `tools`. Everything that depends only on the
 * tools is built once here and shared: the `tools/list` result (JSON Schema conversion is the
 * costly part of listing), the argument validators, and the JSON Schema validator the SDK
 * would otherwise construct per server (an Ajv instance: hundreds of microseconds, against a
 * few for the rest of a server). A server is then cheap enough to build per session, or per
 * request in stateless mode.
 *
 * It is the SDK's low-level `Server` rather than `McpServer`, because `McpServer` converts
 * every tool's schema on every `tools/list`. Semantics follow the MCP spec (2025-11-25): an
 * unknown tool is a JSON-RPC error (-32602); invalid arguments and handler failures are tool
 * results with `isError`, so the model can correct itself.
 */
export function createServerFactory(
  info: ServerInfo,
  tools: readonly ToolDefinition[],
): ServerFactory {
  const byName = new Map<string, { tool: ToolDefinition; args: z.ZodObject }>()
  for (const tool of tools) {
    if (byName.has(tool.name)) throw new Error(`MCP tool ${tool.name} is defined twice`)
    byName.set(tool.name, { tool, args: z.object(tool.inputSchema ?? {}) })
  }
  const list: ListToolsResult = {
    tools: [...byName.values()].map(({ tool, args }) => ({
      name: tool.name,
      ...(tool.title ? { title: tool.title } : {}),
      description: tool.description,
      inputSchema: z.toJSONSchema(args, {
        io: 'input',
      }) as ListToolsResult['tools'][0]['inputSchema'],
      ...(tool.annotations ? { annotations: tool.annotations } : {}),
    })),
  }
  const jsonSchemaValidator = new AjvJsonSchemaValidator()
  const listJson = JSON.stringify(list)

  const create = (): Server => {
    const server = new Server(
      { name: info.name, version: info.version },
      { capabilities: { tools: {} }, instructions: info.instructions, jsonSchemaValidator },
    )
    server.setRequestHandler(ListToolsRequestSchema, () => list)
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const { name } = request.params
      const entry = byName.get(name)
      if (!entry) throw new McpError(ErrorCode.InvalidParams, `Tool ${name} not found`)
      const authInfo = extra.authInfo
      // The bearer gate attaches the caller to every request; without it nothing may run.
      if (!authInfo?.extra) throw new McpError(ErrorCode.InternalError, 'unauthenticated call')
      const parsed = entry.args.safeParse(request.params.arguments ?? {})
      if (!parsed.success) {
        return toolError(`Invalid arguments for tool ${name}: ${z.prettifyError(parsed.error)}`)
      }
      try {
        const result = await entry.tool.handler(parsed.data, {
          ...extra,
          authInfo,
          caller: callerOf(authInfo),
          era: 'legacy',
        })
        // The 2025 era has no input_required result; its tools ask through `sendRequest`.
        if (result.resultType === 'input_required') {
          return toolError(`Tool ${name} needs input that only a 2026-07-28 client can give`)
        }
        return result
      } catch (error) {
        return toolError(error instanceof Error ? error.message : String(error))
      }
    })
    return server
  }

  return {
    create,
    constantResult(request) {
      if (request.method !== 'tools/list') return undefined
      // What ListToolsRequestSchema accepts with no cursor: no params, or only `_meta`.
      const { params } = request
      if (params === undefined) return listJson
      for (const key in params) if (key !== '_meta') return undefined
      const meta: unknown = params._meta
      const isObject = typeof meta === 'object' && meta !== null && !Array.isArray(meta)
      return meta === undefined || isObject ? listJson : undefined
    },
  }
}

// The bearer gate builds `AuthInfo.extra` from a `Caller` (see auth.ts).
function callerOf(authInfo: AuthInfo): Caller {
  return authInfo.extra as unknown as Caller
}

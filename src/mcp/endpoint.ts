import { randomUUID } from 'node:crypto'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'
import { type Context, Hono } from 'hono'
import type { Deps } from '../deps.js'
import { refusalResponse } from '../errors.js'
import { anyOriginCors, methodNotAllowed } from '../http.js'
import type { AccessTokenVerifier } from '../tokens/verifier.js'
import { type McpEnv, mcpBearerAuth } from './auth.js'
import { builtinTools } from './builtin-tools.js'
import { forwardHandler } from './forward.js'
import { originGuard } from './origin.js'
import { createServerFactory, type ServerInfo } from './server.js'
import {
  createSessionRegistry,
  type SessionOwner,
  type SessionRegistryOptions,
} from './sessions.js'
import type { ToolDefinition } from './tools.js'
import { createUpstreamTokenSource, type UpstreamTokenSourceOptions } from './upstream-token.js'

/** What the endpoint needs: the app's dependencies, with the verifier `/revoke` also uses. */
export type McpDeps = Deps & { readonly verifier: AccessTokenVerifier }

export interface McpEndpointOptions {
  /** Tools served next to the built-ins (`whoami`, `upstream_userinfo`), names unique. */
  readonly tools?: readonly ToolDefinition[]
  /** Serve `whoami` and `upstream_userinfo`; default true. */
  readonly builtinTools?: boolean
  readonly serverInfo?: ServerInfo
  /** Stateful mode only: how many sessions, and for how long idle. */
  readonly sessions?: SessionRegistryOptions
  readonly upstreamRefresh?: UpstreamTokenSourceOptions
  /** Largest JSON-RPC POST body; default 1 MiB. */
  readonly maxBodyBytes?: number
}

const DEFAULT_SERVER_INFO: ServerInfo = { name: 'mcp-oauth-proxy', version: '0.1.0' }

/**
 * `/mcp`: the MCP Streamable HTTP endpoint (MCP spec 2025-11-25, basic/transports) behind the
 * bearer gate, with CORS for browser clients (any origin, no credentials: the token is a
 * header, never a cookie). With `config.mcpSessions === 'stateful'` each `initialize` opens a
 * session (`Mcp-Session-Id`) bound to the token's user and client; `stateless` handles every
 * POST on its own server and refuses GET and DELETE with 405, as the spec allows. With
 * `config.mcpUpstreamUrl` it forwards to that MCP server instead (see `forwardHandler`), which
 * serves its own tools: none are served here, and `mcpSessions` does not apply.
 */
export function createMcpEndpoint(deps: McpDeps, options: McpEndpointOptions = {}) {
  const backend = deps.config.mcpUpstreamUrl
  if (backend && options.tools?.length) {
    throw new Error('MCP tools cannot be served here when MCP_UPSTREAM_URL forwards /mcp')
  }
  const builtins = backend || options.builtinTools === false ? [] : builtinTools(deps.upstream)
  const tools = [...builtins, ...(options.tools ?? [])]
  const newServer = createServerFactory(options.serverInfo ?? DEFAULT_SERVER_INFO, tools)
  const upstreamTokens = createUpstreamTokenSource(deps, options.upstreamRefresh)
  const gate = mcpBearerAuth(deps.config, {
    verifier: deps.verifier,
    upstreamTokens,
    toolScopes: new Map(tools.map((tool) => [tool.name, tool.requiredScopes ?? []])),
    maxBodyBytes: options.maxBodyBytes,
    audit: deps.audit,
  })
  const handle = backend
    ? forwardHandler(deps, { target: backend, upstreamTokens })
    : deps.config.mcpSessions === 'stateless'
      ? statelessHandler(newServer)
      : statefulHandler(deps, newServer, options.sessions)

  const app = new Hono<McpEnv>()
  app.use('/mcp', originGuard(deps.config))
  app.use(
    '/mcp',
    anyOriginCors({
      allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      allowHeaders: [
        'Authorization',
        'Content-Type',
        'MCP-Protocol-Version',
        'Mcp-Session-Id',
        'Last-Event-ID',
      ],
      exposeHeaders: ['WWW-Authenticate', 'Mcp-Session-Id'],
      maxAge: 86_400,
    }),
  )
  // Every method but OPTIONS (answered by CORS above) meets the gate first, so an
  // unauthenticated caller learns nothing, not even which methods exist.
  app.use('/mcp', gate)
  // HEAD would match GET and open an SSE stream nobody reads.
  app.on(['GET', 'POST', 'DELETE'], '/mcp', (c) =>
    c.req.method === 'HEAD' ? refuseMethod(c) : handle(c),
  )
  app.all('/mcp', refuseMethod)
  // Refusals render here, so the endpoint answers the same when mounted in another app
  // (library mode); anything else goes on to the host app's error handler.
  app.onError((error, c) => {
    const response = refusalResponse(error, deps.logger, c.req.path)
    if (!response) throw error
    return response
  })
  return app
}

const refuseMethod = methodNotAllowed(['GET', 'POST', 'DELETE'])

type Handler = (c: Context<McpEnv>) => Promise<Response>

/**
 * Stateless mode: a server and a transport per POST. The SDK forbids reusing a stateless
 * transport (JSON-RPC ids of different clients would collide), and with the tool list and the
 * validator shared by the factory a server costs microseconds, so pooling would save little
 * while carrying one caller's `initialize` state (client info) into another's request. JSON
 * responses rather than SSE: the request is over when its response is, so the pair is closed
 * right after — on the next turn of the event loop, once the SDK has finished its own
 * bookkeeping for the answered requests. Closed at once, it would find them still in flight
 * and abort each one (an `AbortError` apiece, nobody listening).
 */
function statelessHandler(newServer: () => Server): Handler {
  const refuse = methodNotAllowed(['POST'])
  return async (c) => {
    if (c.req.method !== 'POST') return refuse(c)
    const { authInfo, parsedBody } = c.var.mcp
    const server = newServer()
    const transport = new WebStandardStreamableHTTPServerTransport({ enableJsonResponse: true })
    await server.connect(transport)
    try {
      return await transport.handleRequest(c.req.raw, { authInfo, parsedBody })
    } finally {
      setImmediate(() => {
        // Closing only drops the pair's maps; nothing can be done if it fails.
        server.close().catch(() => {})
      })
    }
  }
}

interface Session {
  readonly owner: SessionOwner
  readonly transport: WebStandardStreamableHTTPServerTransport
  close(): Promise<void>
}

/**
 * Stateful mode: one server and transport per session, kept in a bounded, idle-expiring
 * registry owned by this endpoint. A session id presented with another user's or client's
 * token is answered 404 like an unknown one (the spec's answer for a session the server does
 * not have), so ids cannot be probed and a leaked id serves nobody else.
 */
function statefulHandler(
  deps: McpDeps,
  newServer: () => Server,
  options: SessionRegistryOptions | undefined,
): Handler {
  const sessions = createSessionRegistry<Session>(deps.clock, options)

  const open = async (owner: SessionOwner) => {
    const server = newServer()
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        // Unguessable: the id is a handle, the token is what authorizes (MCP security practices).
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id: string): void =>
          sessions.add(id, { owner, transport, close: () => server.close() }),
      })
    // Set before connect, which chains its own handler after this one.
    transport.onclose = () => {
      if (transport.sessionId) sessions.remove(transport.sessionId)
    }
    await server.connect(transport)
    return transport
  }

  return async (c) => {
    const { authInfo, caller, parsedBody } = c.var.mcp
    const owner = { sub: caller.sub, clientId: authInfo.clientId }
    const id = c.req.header('mcp-session-id')
    let transport: WebStandardStreamableHTTPServerTransport
    if (id !== undefined) {
      const session = sessions.find(id, owner)
      if (!session) return jsonRpcError(404, -32001, 'Session not found')
      transport = session.transport
    } else if (c.req.method === 'POST') {
      // A new transport answers anything but `initialize` with 400, as the SDK would.
      transport = await open(owner)
    } else {
      return jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required')
    }
    return transport.handleRequest(c.req.raw, { authInfo, parsedBody })
  }
}

function jsonRpcError(status: number, code: number, message: string): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), {
    status,
    headers: { 'content-type': 'application/json' },
  })
}

import { randomUUID } from 'node:crypto'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import {
  type JSONRPCMessage,
  type RequestInfo,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js'
import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { requestIdOf } from '../audit.js'
import type { Deps } from '../deps.js'
import { OAuthError, refusalResponse } from '../errors.js'
import { anyOriginCors, hasMediaType, methodNotAllowed, readBody } from '../http.js'
import type { AccessTokenVerifier } from '../tokens/verifier.js'
import { builtinTools } from './builtin-tools.js'
import { forwardHandler } from './forward.js'
import { type BearerGate, createBearerGate, credentialsOf, scopesForToolCalls } from './gate.js'
import { createModernEra, type ModernEra } from './modern.js'
import { originGuard } from './origin.js'
import { createServerFactory, type ServerFactory, type ServerInfo } from './server.js'
import {
  createSessionRegistry,
  type SessionOwner,
  type SessionRegistryOptions,
} from './sessions.js'
import { type Caller, checkToolScopes, type ToolDefinition } from './tools.js'
import {
  type Delivery,
  HttpServerTransport,
  isInitialize,
  isRequest,
  jsonAnswer,
  jsonRpcError,
  readMessages,
  wantsStream,
} from './transport.js'

/** What the endpoint needs: the app's dependencies, with the verifier `/revoke` also uses. */
export type McpDeps = Deps & { readonly verifier: AccessTokenVerifier }

/** What the gate's adapter hands the handlers: who is calling, and the POST body it read. */
export interface GatedRequest {
  readonly authInfo: AuthInfo
  readonly caller: Caller
  /** The JSON-RPC message (or batch) of a JSON POST; `undefined` when no body was read. */
  readonly parsedBody: unknown
}

/** Hono environment of the routes behind the gate. */
export type McpEnv = { Variables: { mcp: GatedRequest } }

export interface McpEndpointOptions {
  /** Tools served next to the built-ins (`whoami`, `upstream_userinfo`), names unique. */
  readonly tools?: readonly ToolDefinition[]
  /** Serve `whoami` and `upstream_userinfo`; default true. */
  readonly builtinTools?: boolean
  readonly serverInfo?: ServerInfo
  /** Stateful mode only: how many sessions, and for how long idle. */
  readonly sessions?: SessionRegistryOptions
  /** Largest JSON-RPC POST body; default 1 MiB. */
  readonly maxBodyBytes?: number
  /**
   * Aborted at shutdown: every session closes, so open event streams end (and the HTTP server
   * can finish) and requests still running are answered `Connection closed`.
   */
  readonly signal?: AbortSignal | undefined
}

const DEFAULT_SERVER_INFO: ServerInfo = { name: 'mcp-oauth-proxy', version: '0.1.0' }

/**
 * `/mcp`: the MCP Streamable HTTP endpoint behind the bearer gate, with CORS for browser
 * clients (any origin, no credentials: the token is a header, never a cookie). It speaks both
 * protocol eras at one URL (see `eraRouter`): 2026-07-28 requests statelessly on the v2 SDK
 * (`createModernEra`), whatever `mcpSessions` says, and the 2025 era (basic/transports of
 * 2025-11-25) as follows. With `config.mcpSessions === 'stateful'` each `initialize` opens a
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
  checkToolScopes(deps.config, tools)
  const serverInfo = options.serverInfo ?? DEFAULT_SERVER_INFO
  const servers = createServerFactory(serverInfo, tools)
  // The instance's one gate: `requireAuth()` builds the same over the same services.
  const gate = createBearerGate(deps)
  const gated = gatedRequests(gate, {
    toolScopes: new Map(tools.map((tool) => [tool.name, tool.requiredScopes ?? []])),
    maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
    // A backend checks the upstream token on every request; local tools run on POSTs only.
    upstreamOnEveryMethod: backend !== undefined,
  })
  const legacy = backend
    ? forwardHandler(deps, { target: backend, gate })
    : deps.config.mcpSessions === 'stateless'
      ? statelessHandler(servers)
      : statefulHandler(deps, servers, options)
  let handle = legacy
  if (!backend) {
    const modern = createModernEra(serverInfo, tools)
    options.signal?.addEventListener('abort', () => void modern.close(), { once: true })
    handle = eraRouter(modern, legacy)
  }

  const app = new Hono<McpEnv>()
  app.use('/mcp', originGuard(deps.config))
  app.use('/mcp', mcpCors())
  // Every method but OPTIONS (answered by CORS above) meets the gate first, so an
  // unauthenticated caller learns nothing, not even which methods exist.
  app.use('/mcp', gated)
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

/**
 * `/mcp`'s adapter over the bearer gate: verifies the token before anything else (an
 * unauthenticated caller learns nothing), then reads a JSON POST's body (bounded), so the
 * scopes of the tools it calls can be required, and admits the caller with the upstream token
 * resolved where handlers will use it.
 */
function gatedRequests(
  gate: BearerGate,
  options: {
    toolScopes: ReadonlyMap<string, readonly string[]>
    maxBodyBytes: number
    upstreamOnEveryMethod: boolean
  },
): MiddlewareHandler<McpEnv> {
  return async function mcpBearerAuth(c, next) {
    const requestId = requestIdOf(c)
    const presented = await gate.verify(credentialsOf(c), requestId)
    const post = c.req.method === 'POST'
    let parsedBody: unknown
    if (post && hasMediaType(c, 'application/json')) {
      try {
        parsedBody = JSON.parse(await readBody(c, options.maxBodyBytes))
      } catch (error) {
        if (error instanceof OAuthError) throw error
        // The transport's answer to a body that is not JSON (JSON-RPC 2.0 §5.1).
        return jsonRpcError(400, -32700, 'Parse error: Invalid JSON')
      }
    }
    const { authInfo, caller } = await gate.admit(presented, {
      scopes: scopesForToolCalls(parsedBody, options.toolScopes),
      upstream: post || options.upstreamOnEveryMethod,
      requestId,
    })
    c.set('mcp', { authInfo, caller, parsedBody })
    await next()
  }
}

type Handler = (c: Context<McpEnv>) => Promise<Response>

/** What a browser client may send to `/mcp`, both eras' headers included. */
const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'MCP-Protocol-Version',
  'Mcp-Session-Id',
  'Last-Event-ID',
  'Mcp-Method',
  'Mcp-Name',
  'DPoP',
]
/** An `Mcp-Param-{Name}` header (2026-07-28 `x-mcp-header`): `Name` is an RFC 9110 token. */
const PARAM_HEADER = /^mcp-param-[!#$%&'*+.^_`|~0-9a-z-]+$/i

/**
 * CORS for browser clients (any origin, no credentials: the token is a header, never a
 * cookie). A tool's `Mcp-Param-*` headers are named by its schema, so a preflight asking for
 * some is allowed those, next to the fixed list.
 */
function mcpCors() {
  const options = {
    allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    allowHeaders: ALLOWED_HEADERS,
    exposeHeaders: ['WWW-Authenticate', 'Mcp-Session-Id'],
    maxAge: 86_400,
  }
  const fixed = anyOriginCors(options)
  return async function mcpCorsMiddleware(c: Context, next: () => Promise<void>) {
    if (c.req.method === 'OPTIONS') {
      const params = (c.req.header('access-control-request-headers') ?? '')
        .split(',')
        .map((name) => name.trim())
        .filter((name) => PARAM_HEADER.test(name))
      if (params.length) {
        return anyOriginCors({ ...options, allowHeaders: [...ALLOWED_HEADERS, ...params] })(c, next)
      }
    }
    return fixed(c, next)
  }
}

/**
 * Both protocol eras at one URL (MCP 2026-07-28, basic/versioning): a POST carrying the
 * per-request `_meta` envelope (or naming a modern `MCP-Protocol-Version`) is the modern era's,
 * served statelessly whatever `MCP_SESSIONS` says (an `Mcp-Session-Id` on it is ignored, as the
 * transport spec asks); everything else, `initialize`, GET and DELETE included, is the 2025
 * era's.
 */
function eraRouter(modern: ModernEra, legacy: Handler): Handler {
  return async (c) => {
    if (c.req.method === 'POST') {
      const { parsedBody, authInfo } = c.get('mcp')
      if (
        parsedBody !== undefined &&
        modern.claims(parsedBody, c.req.header('mcp-protocol-version'))
      ) {
        const request = { header: (name: string) => c.req.header(name), raw: () => c.req.raw }
        return notAcceptable(c) ?? modern.answer(request, parsedBody, authInfo)
      }
    }
    return legacy(c)
  }
}

/** 406 unless the client accepts both JSON and SSE, as both eras' transports ask. */
function notAcceptable(c: Context): Response | undefined {
  const accept = c.req.header('accept')
  if (accept?.includes('application/json') && accept.includes('text/event-stream')) return undefined
  return jsonRpcError(
    406,
    -32000,
    'Not Acceptable: Client must accept both application/json and text/event-stream',
  )
}

/**
 * Stateless mode: a server and a transport per POST, closed once its requests are answered.
 * A server is never shared between POSTs: JSON-RPC ids of different clients would collide in
 * it, and one caller's `initialize` state (client info, capabilities) would reach another's
 * request. With the tool list and the validator shared by the factory, a server costs
 * microseconds. Closed on the next turn of the event loop, once the SDK has finished its own
 * bookkeeping for the answered requests (closed at once, it would abort each one).
 */
function statelessHandler(servers: ServerFactory): Handler {
  const refuse = methodNotAllowed(['POST'])
  return async (c) => {
    if (c.req.method !== 'POST') return refuse(c)
    const messages = postedMessages(c)
    if (messages instanceof Response) return messages
    const refused = messages.some(isInitialize) ? onlyInitialize(messages) : unsupportedProtocol(c)
    if (refused) return refused
    const constant = constantAnswer(servers, messages, {})
    if (constant) return constant
    const server = servers.create()
    const transport = new HttpServerTransport()
    transport.onsettled = () =>
      setImmediate(() => {
        // Closing only drops the pair's maps; nothing can be done if it fails.
        server.close().catch(() => {})
      })
    await server.connect(transport)
    return transport.post(messages, delivery(c, {}), wantsStream(messages))
  }
}

interface Session {
  readonly owner: SessionOwner
  readonly transport: HttpServerTransport
  /** What every response of the session carries. */
  readonly headers: Readonly<Record<string, string>>
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
  servers: ServerFactory,
  options: Pick<McpEndpointOptions, 'sessions' | 'signal'>,
): Handler {
  const sessions = createSessionRegistry<Session>(deps.clock, options.sessions)
  options.signal?.addEventListener('abort', () => sessions.closeAll(), { once: true })

  const open = async (owner: SessionOwner): Promise<Session> => {
    const server = servers.create()
    const transport = new HttpServerTransport()
    // Unguessable: the id is a handle, the token is what authorizes (MCP security practices).
    const id = randomUUID()
    transport.sessionId = id
    // Set before connect, which chains its own handler after this one.
    transport.onclose = () => sessions.remove(id)
    // A client holding the GET stream is using the session even when it sends nothing.
    transport.onlistening = () => sessions.touch(id)
    await server.connect(transport)
    const session = {
      owner,
      transport,
      headers: { 'mcp-session-id': id },
      close: () => server.close(),
    }
    sessions.add(id, session)
    return session
  }

  return async (c) => {
    const { authInfo, caller } = c.get('mcp')
    const owner = { sub: caller.sub, clientId: authInfo.clientId }
    const id = c.req.header('mcp-session-id')
    let session: Session | undefined
    if (id !== undefined) {
      session = sessions.find(id, owner)
      if (!session) return jsonRpcError(404, -32001, 'Session not found')
    }
    const method = c.req.method
    if (method === 'POST') {
      const messages = postedMessages(c)
      if (messages instanceof Response) return messages
      if (messages.some(isInitialize)) {
        if (session) return jsonRpcError(400, -32600, 'Invalid Request: Server already initialized')
        const refused = onlyInitialize(messages)
        if (refused) return refused
        session = await open(owner)
      } else {
        if (!session) return sessionRequired()
        const refused = unsupportedProtocol(c)
        if (refused) return refused
        const constant = constantAnswer(servers, messages, session.headers)
        if (constant) return constant
      }
      return session.transport.post(messages, delivery(c, session.headers), wantsStream(messages))
    }
    if (!session) return sessionRequired()
    const refused = unsupportedProtocol(c)
    if (refused) return refused
    if (method === 'GET') {
      if (!c.req.header('accept')?.includes('text/event-stream')) {
        return jsonRpcError(406, -32000, 'Not Acceptable: Client must accept text/event-stream')
      }
      return session.transport.openStream(session.headers)
    }
    // DELETE: the client ends its session (basic/transports, Session Management).
    await session.close()
    return new Response(null, { status: 200 })
  }
}

/**
 * The answer to a lone request whose result is the same for everyone (`tools/list`), given
 * without a server: the SDK's request machinery costs more than the rest of such a request.
 */
function constantAnswer(
  servers: ServerFactory,
  messages: readonly JSONRPCMessage[],
  headers: Readonly<Record<string, string>>,
): Response | undefined {
  const [message] = messages
  if (messages.length !== 1 || !message || !isRequest(message)) return undefined
  const result = servers.constantResult(message)
  if (result === undefined) return undefined
  return jsonAnswer(
    `{"jsonrpc":"2.0","id":${JSON.stringify(message.id)},"result":${result}}`,
    headers,
  )
}

const sessionRequired = () =>
  jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required')

/**
 * The JSON-RPC messages of a POST, or the refusal the transport spec asks for: 406 unless the
 * client accepts both JSON and SSE, 415 for a body that is not JSON (the gate parses JSON
 * bodies only), 400 for JSON that is not JSON-RPC.
 */
function postedMessages(c: Context<McpEnv>): JSONRPCMessage[] | Response {
  const refused = notAcceptable(c)
  if (refused) return refused
  const { parsedBody } = c.get('mcp')
  if (parsedBody === undefined) {
    return jsonRpcError(
      415,
      -32000,
      'Unsupported Media Type: Content-Type must be application/json',
    )
  }
  return (
    readMessages(parsedBody) ??
    jsonRpcError(400, -32600, 'Invalid Request: the body is not a JSON-RPC message or batch')
  )
}

function onlyInitialize(messages: readonly JSONRPCMessage[]): Response | undefined {
  if (messages.length === 1) return undefined
  return jsonRpcError(400, -32600, 'Invalid Request: Only one initialization request is allowed')
}

const SUPPORTED_VERSIONS = new Set(SUPPORTED_PROTOCOL_VERSIONS)

/** 400 for an `MCP-Protocol-Version` the server does not speak (basic/transports). */
function unsupportedProtocol(c: Context): Response | undefined {
  const version = c.req.header('mcp-protocol-version')
  if (version === undefined || SUPPORTED_VERSIONS.has(version)) return undefined
  return jsonRpcError(
    400,
    -32000,
    `Bad Request: Unsupported protocol version: ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
  )
}

/** The caller and request as the transport hands them to the server's handlers. */
function delivery(c: Context<McpEnv>, headers: Readonly<Record<string, string>>): Delivery {
  return { authInfo: c.get('mcp').authInfo, requestInfo: requestInfoOf(c), headers }
}

/**
 * `extra.requestInfo` for handlers, built only if one looks: copying every header on each
 * request would cost more than the rest of a `tools/list`. The credentials stay out: the
 * token is in `authInfo`, and a tool has no business with the caller's cookies.
 */
function requestInfoOf(c: Context): RequestInfo {
  let headers: Record<string, string> | undefined
  let url: URL | undefined
  return {
    get headers() {
      if (!headers) {
        headers = {}
        for (const [name, value] of c.req.raw.headers) {
          if (name !== 'authorization' && name !== 'cookie') headers[name] = value
        }
      }
      return headers
    },
    get url() {
      url ??= new URL(c.req.url)
      return url
    },
  }
}

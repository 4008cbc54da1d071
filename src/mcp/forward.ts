import { createHmac } from 'node:crypto'
import type { Context } from 'hono'
import { SignJWT } from 'jose'
import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import { safeEqual, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { clientIp } from '../http.js'
import { deriveKey } from '../tokens/derive.js'
import type { Keys } from '../tokens/keys.js'
import type { GatedRequest, McpEnv } from './endpoint.js'
import type { BearerGate } from './gate.js'
import type { SessionOwner } from './sessions.js'
import { jsonRpcError } from './transport.js'

/** What forwarding needs of the app's dependencies. */
export type ForwardDeps = Pick<Deps, 'config' | 'keys' | 'clock' | 'logger' | 'fetch'>

export interface ForwardOptions {
  /** The backend's Streamable HTTP endpoint (`MCP_UPSTREAM_URL`). */
  readonly target: URL
  /** The endpoint's bearer gate, whose challenges the backend's refusals become. */
  readonly gate: Pick<BearerGate, 'refuse'>
}

// What the MCP transport reads from a request: the 2025-11-25 headers, and the 2026-07-28
// ones mirrored from the body (`Mcp-Method`, `Mcp-Name`, and `Mcp-Param-*` below), which a
// 2026 backend checks against it. Never the client's Authorization (the proxy's own token)
// nor its cookies.
const REQUEST_HEADERS = [
  'accept',
  'content-type',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
]
const PARAM_HEADER_PREFIX = 'mcp-param-'
// `allow` keeps a backend's 405 for GET meaning "no event stream here" to the client.
const RESPONSE_HEADERS = ['content-type', 'cache-control', 'retry-after', 'allow']
// Statuses whose response must not have a body (Fetch: null body status).
const NULL_BODY = new Set([101, 204, 205, 304])

/**
 * Forward mode of `/mcp` (`MCP_UPSTREAM_URL`): an authenticating reverse proxy for an existing
 * Streamable HTTP MCP server of either era (MCP 2025-11-25 sessions, 2026-07-28 stateless
 * requests with their mirrored headers, passed through as sent). Runs behind the bearer
 * gate; forwards GET, POST and DELETE with the MCP headers and `Authorization: Bearer` of the
 * caller's upstream token (refreshed when needed) or, with `MCP_UPSTREAM_TOKEN=downstream-jwt`,
 * of a short HS256 JWT (see `createDownstreamTokens`).
 *
 * - Bodies stream: the backend's body is relayed chunk by chunk with no queue (`relay`), so SSE
 *   events reach the client as they are written. `UPSTREAM_TIMEOUT_SECONDS` bounds the wait
 *   for the response headers only; a client that disconnects ends the backend request.
 * - Sessions: the backend's `Mcp-Session-Id` reaches the client bound to the caller who
 *   opened it (`createSessionBinder`); presented with another user's or client's token it is
 *   answered 404, like an unknown session, and the backend is never asked.
 * - Refusals: backend 401 becomes our 401 `invalid_token` challenge, so the client refreshes
 *   (which refreshes the upstream token) or signs in again; 403 becomes `insufficient_scope`;
 *   a redirect or 5xx becomes 502 and no answer in time 504, never with the backend's body.
 */
export function forwardHandler(
  deps: ForwardDeps,
  options: ForwardOptions,
): (c: Context<McpEnv>) => Promise<Response> {
  const { config, logger } = deps
  const { target } = options
  const { refuse } = options.gate
  const sessions = createSessionBinder(deps.keys)
  const downstream =
    config.mcpUpstreamToken === 'downstream-jwt'
      ? createDownstreamTokens(deps.clock, config, target)
      : undefined
  const timeoutMs = config.upstreamTimeoutSeconds * 1000
  const forwardedProto = config.publicUrl.protocol.slice(0, -1)

  // The gate renews the upstream token on every request in this mode: a backend checks it on
  // GET and DELETE too.
  const bearer = (gated: GatedRequest): Promise<string> | string =>
    downstream ? downstream.token(gated) : gated.caller.upstreamAccessToken

  const refused = (c: Context<McpEnv>, backend: Response): OAuthError => {
    const { caller, authInfo } = c.get('mcp')
    const { status } = backend
    // The backend's own challenge says why (audience, expiry…): for the log only.
    const why = backend.headers.get('www-authenticate')?.slice(0, 500)
    if (status === 403) {
      logger.info(
        {
          event: 'mcp.backend_forbidden',
          sub: caller.sub,
          client_id: authInfo.clientId,
          backend_challenge: why,
        },
        'the MCP backend refused a request with 403',
      )
      return refuse(
        403,
        'insufficient_scope',
        'the MCP backend refused this request: the signed-in account lacks a permission it needs',
      )
    }
    if (downstream) {
      // The proxy minted that token from a verified one: signing in again changes nothing.
      return new OAuthError('server_error', 'the MCP backend refused the proxy’s credentials', {
        status: 502,
        internal: {
          backendStatus: status,
          backendChallenge: why,
          hint: 'check DOWNSTREAM_JWT_SECRET and DOWNSTREAM_JWT_AUDIENCE against the backend',
        },
      })
    }
    // A stale or revoked upstream token is cured by a refresh (which refreshes it upstream too)
    // or a new sign-in; the SDK clients stop after one such round, so a misconfigured backend
    // (wrong audience, another tenant) ends in an error rather than a loop. The log says which.
    logger.warn(
      {
        event: 'mcp.backend_refused_token',
        sub: caller.sub,
        client_id: authInfo.clientId,
        backend_challenge: why,
        hint: 'if this repeats after signing in again, the backend does not accept this upstream’s tokens (issuer, audience)',
      },
      'the MCP backend refused the upstream token',
    )
    return refuse(
      401,
      'invalid_token',
      'the MCP backend refused the upstream token; refresh the token or sign in again',
    )
  }

  return async function forwardToBackend(c) {
    const gated = c.get('mcp')
    const owner: SessionOwner = { sub: gated.caller.sub, clientId: gated.authInfo.clientId }
    const method = c.req.method
    // The gate reads (and bounds) JSON bodies only; MCP messages are never anything else.
    if (method === 'POST' && gated.parsedBody === undefined) {
      return jsonRpcError(
        415,
        -32000,
        'Unsupported Media Type: Content-Type must be application/json',
      )
    }

    const headers = new Headers()
    for (const name of REQUEST_HEADERS) {
      const value = c.req.header(name)
      if (value !== undefined) headers.set(name, value)
    }
    for (const [name, value] of c.req.raw.headers) {
      if (name.startsWith(PARAM_HEADER_PREFIX)) headers.set(name, value)
    }
    const presented = c.req.header('mcp-session-id')
    let session: string | undefined
    if (presented !== undefined) {
      session = await sessions.unwrap(presented, owner)
      if (session === undefined) return jsonRpcError(404, -32001, 'Session not found')
      headers.set('mcp-session-id', session)
    }
    headers.set('authorization', `Bearer ${await bearer(gated)}`)
    const ip = clientIp(c, config.trustProxy)
    if (ip !== 'unknown') headers.set('x-forwarded-for', ip)
    headers.set('x-forwarded-proto', forwardedProto)

    // Until the headers arrive, one controller ends the wait when the client leaves or the
    // backend takes too long. After, neither applies: a stream runs as long as it needs, and a
    // client that leaves has the server cancel the body, which closes the backend connection
    // (aborting it as well would error the body under the server, which logs that as a failure).
    const controller = new AbortController()
    const client = c.req.raw.signal
    const leave = () => controller.abort(client.reason)
    if (client.aborted) leave()
    else client.addEventListener('abort', leave, { once: true })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, timeoutMs)
    let response: Response
    try {
      response = await deps.fetch(target, {
        method,
        headers,
        body: method === 'POST' ? JSON.stringify(gated.parsedBody) : undefined,
        // A redirect would carry the Bearer wherever the backend points.
        redirect: 'manual',
        signal: controller.signal,
      })
    } catch (error) {
      // Nobody is left to read an answer; 499 only labels the request log.
      if (client.aborted) return new Response(null, { status: 499 })
      if (timedOut) {
        throw new OAuthError(
          'temporarily_unavailable',
          `the MCP backend did not answer within ${config.upstreamTimeoutSeconds} s`,
          { status: 504, internal: error },
        )
      }
      throw new OAuthError('server_error', 'the MCP backend is unreachable', {
        status: 502,
        internal: error,
      })
    } finally {
      clearTimeout(timer)
      client.removeEventListener('abort', leave)
    }

    const { status } = response
    if (status === 401 || status === 403 || (status >= 300 && status < 400) || status >= 500) {
      // The backend's body and challenge stay here: its resource_metadata would send the client
      // to the upstream directly, and a 5xx body may hold a stack trace.
      await response.body?.cancel().catch(() => {})
      if (status === 401 || status === 403) throw refused(c, response)
      throw new OAuthError(
        'server_error',
        status < 400
          ? 'the MCP backend answered with a redirect, which the proxy does not follow'
          : `the MCP backend failed (HTTP ${status})`,
        { status: 502, internal: { backendStatus: status } },
      )
    }

    const out = new Headers()
    for (const name of RESPONSE_HEADERS) {
      const value = response.headers.get(name)
      if (value !== null) out.set(name, value)
    }
    const issued = response.headers.get('mcp-session-id')
    if (issued !== null) {
      // A new session belongs to whoever opened it; a known one is echoed as presented. Any
      // other id on a request within a session is the backend's confusion, not passed on.
      if (session === undefined) {
        out.set('mcp-session-id', await sessions.wrap(issued, owner))
      } else if (issued === session && presented !== undefined) {
        out.set('mcp-session-id', presented)
      }
    }
    // Tells a buffering reverse proxy in front of us (nginx) to pass events as they come.
    if (out.get('content-type')?.startsWith('text/event-stream')) out.set('x-accel-buffering', 'no')
    const body =
      NULL_BODY.has(status) || !response.body
        ? null
        : relay(response.body, (error) => {
            logger.warn(
              { event: 'mcp.backend_stream_failed', err: error, sub: owner.sub },
              'the MCP backend’s response failed midway',
            )
            return cutConnection(c)
          })
    return new Response(body, { status, headers: out })
  }
}

/**
 * The backend's body as the client's: pulled chunk by chunk as the client's connection takes
 * them, with no queue of its own, so an event reaches the client as soon as the backend sends
 * it. When the backend's stream fails midway, `failed` is told and the stream ends; the client
 * must then see a truncated response, not a complete one, which `failed` arranges by cutting
 * the connection (answering `true`). Where it cannot, the stream errors instead.
 */
function relay(
  body: ReadableStream<Uint8Array>,
  failed: (error: unknown) => boolean,
): ReadableStream<Uint8Array> {
  const reader = body.getReader()
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Uint8Array | undefined
        try {
          ;({ value: chunk } = await reader.read())
        } catch (error) {
          if (failed(error)) controller.close()
          else controller.error(error)
          return
        }
        if (chunk === undefined) controller.close()
        else controller.enqueue(chunk)
      },
      cancel: (reason) => reader.cancel(reason).catch(() => {}),
    },
    { highWaterMark: 0 },
  )
}

/**
 * Ends the client's connection without finishing its response (Node's server only), so the
 * client sees it truncated. Erroring the body does the same there, but the node adapter then
 * reports it with `console.error`, outside the structured log.
 */
function cutConnection(c: Context): boolean {
  const outgoing = (c.env as { outgoing?: { destroy(): void } } | undefined)?.outgoing
  outgoing?.destroy()
  return outgoing !== undefined
}

/** Mints backend session ids bound to their owner, and checks them. */
export interface SessionBinder {
  /** `<backend id>.<mac>`: what the client is given for a session `owner` opened. */
  wrap(backendId: string, owner: SessionOwner): Promise<string>
  /** The backend id of `id` when `owner` opened it; `undefined` for anything else. */
  unwrap(id: string, owner: SessionOwner): Promise<string | undefined>
}

const MAC_BYTES = 16
const MAC_LENGTH = Math.ceil((MAC_BYTES * 4) / 3)

/**
 * Binds a backend's sessions to the user and client that opened them without keeping any
 * state: the client's `Mcp-Session-Id` is the backend's id plus an HMAC (key derived from the
 * proxy's encryption key) over it, the `sub` and the `client_id`. Any instance of a fleet
 * checks it, a restart forgets nothing, and there is no table to bound; the backend alone
 * decides how long a session lives. A session id the caller did not open is treated like an
 * unknown one (404), so ids cannot be probed and a leaked one serves nobody else.
 */
export function createSessionBinder(keys: Keys): SessionBinder {
  let derived: { kid: string; key: Uint8Array } | undefined
  const mac = async (backendId: string, owner: SessionOwner) => {
    const { encryption } = await keys.current()
    if (derived?.kid !== encryption.kid) {
      derived = {
        kid: encryption.kid,
        key: deriveKey(encryption.key, 'mcp-oauth-proxy forwarded session'),
      }
    }
    return createHmac('sha256', derived.key)
      .update(JSON.stringify([owner.sub, owner.clientId, backendId]))
      .digest()
      .subarray(0, MAC_BYTES)
      .toString('base64url')
  }

  return {
    wrap: async (backendId, owner) => `${backendId}.${await mac(backendId, owner)}`,
    async unwrap(id, owner) {
      const dot = id.lastIndexOf('.')
      if (dot < 1 || id.length - dot - 1 !== MAC_LENGTH) return undefined
      const backendId = id.slice(0, dot)
      return safeEqual(id.slice(dot + 1), await mac(backendId, owner)) ? backendId : undefined
    },
  }
}

/** Mints the Bearer of `MCP_UPSTREAM_TOKEN=downstream-jwt`. */
export interface DownstreamTokens {
  token(gated: GatedRequest): Promise<string>
}

export interface DownstreamTokenOptions {
  /** Lifetime of a minted token, capped by the proxy token's `exp`; default 300 s. */
  ttlSeconds?: number
  /** A cached token is reused while it has at least this long to live; default 60 s. */
  reuseSeconds?: number
  /** Bound on cached tokens (one per proxy token); default 10,000. */
  maxEntries?: number
}

/**
 * Short HS256 JWTs (RFC 7519) signed with `DOWNSTREAM_JWT_SECRET`, for backends that verify
 * their own secret, as Supabase / PostgREST row-level security does: `sub`, `email`, `role`,
 * `actor`, `org_code` (Kinde) or `org_id` (Auth0) when present, `iss` = our issuer, `aud` =
 * `DOWNSTREAM_JWT_AUDIENCE` or the backend's origin, `iat`, and `exp` at most `ttlSeconds`
 * away and never after the proxy token's. `role` is `authenticated` for users and agents
 * alike: Supabase's `service_role` bypasses row-level security, which would let any agent
 * past the `org_code` boundary; `actor` tells policies who is calling. One token per proxy
 * token is cached (bounded LRU) while it has `reuseSeconds` to live, so a session's requests
 * do not each cost a signature.
 */
export function createDownstreamTokens(
  clock: Clock,
  config: Pick<Config, 'issuer' | 'downstreamJwtSecret' | 'downstreamJwtAudience'>,
  target: URL,
  options: DownstreamTokenOptions = {},
): DownstreamTokens {
  if (!config.downstreamJwtSecret) throw new Error('unreachable: downstream-jwt without a secret')
  const key = new TextEncoder().encode(config.downstreamJwtSecret)
  const audience = config.downstreamJwtAudience ?? target.origin
  const ttlSeconds = options.ttlSeconds ?? 300
  const reuseSeconds = options.reuseSeconds ?? 60
  const cache = new LRUCache<string, { jwt: string; exp: number }>({
    max: options.maxEntries ?? 10_000,
  })

  return {
    async token({ caller, authInfo }) {
      const now = clock.now()
      const cacheKey = sha256(authInfo.token)
      const cached = cache.get(cacheKey)
      if (cached && cached.exp - now >= reuseSeconds) return cached.jwt
      const iat = Math.floor(now)
      const exp = Math.min(iat + ttlSeconds, authInfo.expiresAt ?? iat + ttlSeconds)
      const claims: Record<string, unknown> = {
        email: caller.email,
        role: 'authenticated',
        actor: caller.actor,
        org_code: caller.orgCode,
        org_id: caller.orgId,
      }
      for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name]
      const jwt = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(config.issuer)
        .setSubject(caller.sub)
        .setAudience(audience)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key)
      cache.set(cacheKey, { jwt, exp })
      return jwt
    },
  }
}

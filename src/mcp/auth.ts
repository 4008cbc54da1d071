import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { MiddlewareHandler } from 'hono'
import { type Audit, requestIdOf } from '../audit.js'
import type { Config } from '../config.js'
import { OAuthError, StoreUnavailableError, unavailable } from '../errors.js'
import { hasMediaType, readBody } from '../http.js'
import type { VerifiedAccessToken } from '../tokens/access-token.js'
import {
  createDpopKeyCache,
  type DpopDeps,
  type DpopVerdict,
  presentedToken,
  verifyDpopAtResource,
} from '../tokens/dpop.js'
import { describeNeededScopes } from '../tokens/policy.js'
import type { AccessTokenVerifier } from '../tokens/verifier.js'
import { bearerChallenge } from './challenge.js'
import type { Caller } from './tools.js'
import { jsonRpcError } from './transport.js'
import type { UpstreamTokenSource } from './upstream-token.js'

/** What the gate hands the endpoint: who is calling, and the POST body it had to read. */
export interface GatedRequest {
  readonly authInfo: AuthInfo
  readonly caller: Caller
  /** The JSON-RPC message (or batch) of a JSON POST; `undefined` when no body was read. */
  readonly parsedBody: unknown
}

/** Hono environment of the routes behind the gate. */
export type McpEnv = { Variables: { mcp: GatedRequest } }

export interface BearerGateOptions {
  readonly verifier: AccessTokenVerifier
  readonly upstreamTokens: UpstreamTokenSource
  /** Scopes each tool needs, by tool name; tools absent or with none need only a valid token. */
  readonly toolScopes: ReadonlyMap<string, readonly string[]>
  /** Largest POST body read; default 1 MiB. */
  readonly maxBodyBytes?: number
  /** Records refused tokens and calls (`mcp.denied`); a missing token is no event. */
  readonly audit?: Audit | undefined
  /** The DPoP replay cache and clock (RFC 9449 §7); proofs are checked on every request. */
  readonly dpop: DpopDeps
}

/** RFC 6750 §2.1 `b64token`, after the case-insensitive scheme name. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/**
 * The bearer gate of the MCP endpoint (RFC 6750, RFC 9728 §5.1, MCP authorization spec), with
 * challenges exact enough for clients to act on. The token is read from the `Authorization` header only (never the query). No
 * token: 401 with a challenge naming the resource metadata and scopes but no error code
 * (RFC 6750 §3.1); a token the verifier refuses: 401 `invalid_token` with why; a `tools/call`
 * for a tool needing scopes the token lacks: 403 `insufficient_scope` naming them, so the
 * client can step up. A store that cannot answer the revocation check: 503.
 *
 * For POSTs it also resolves the caller's upstream token (refreshing it when expired) into
 * `AuthInfo.extra`, and leaves the parsed body for the transport, which then does not read it.
 */
export function mcpBearerAuth(
  config: Pick<
    Config,
    'issuer' | 'resource' | 'scopes' | 'openScopes' | 'scopePermissions' | 'dpopRequired'
  >,
  options: BearerGateOptions,
): MiddlewareHandler<McpEnv> {
  const resource = new URL(config.resource)
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024
  const { refuse, challenged, refuseDpop } = bearerRefusals(config)
  const dpop = { ...options.dpop, config, keyCache: createDpopKeyCache() }

  return async function mcpBearerAuth(c, next) {
    const presented = presentedToken(c.req.header('authorization'))
    const token = presented?.token
    if (!presented || !token) {
      // Body code for people reading it; the header carries none, as RFC 6750 §3.1 asks.
      throw refuse(401, undefined, 'an access token is required')
    }
    let verified: VerifiedAccessToken
    try {
      verified = await options.verifier.verify(token)
    } catch (error) {
      const refusal = challenged(error)
      if (refusal instanceof OAuthError && refusal.code === 'invalid_token') {
        options.audit?.(
          'mcp.denied',
          { error: 'invalid_token', reason: refusal.description },
          requestIdOf(c),
        )
      }
      throw refusal
    }
    const verdict = await verifyDpopAtResource(
      dpop,
      {
        ...presented,
        method: c.req.method,
        url: `${config.issuer}${c.req.path}`,
        proof: c.req.header('dpop'),
      },
      verified,
    )
    if (!verdict.ok) {
      options.audit?.(
        'mcp.denied',
        { error: verdict.error, reason: verdict.description },
        requestIdOf(c),
      )
      throw refuseDpop(verdict)
    }

    let parsedBody: unknown
    if (c.req.method === 'POST' && hasMediaType(c, 'application/json')) {
      try {
        parsedBody = JSON.parse(await readBody(c, maxBodyBytes))
      } catch (error) {
        if (error instanceof OAuthError) throw error
        // The transport's answer to a body that is not JSON (JSON-RPC 2.0 §5.1).
        return jsonRpcError(400, -32700, 'Parse error: Invalid JSON')
      }
      const needed = scopesNeeded(parsedBody, options.toolScopes, verified.scopes)
      if (needed.length) {
        options.audit?.(
          'mcp.denied',
          {
            client_id: verified.clientId,
            sub: verified.sub,
            org: verified.orgCode ?? verified.orgId,
            actor: verified.actor,
            error: 'insufficient_scope',
            scopes: needed,
          },
          requestIdOf(c),
        )
        throw refuse(
          403,
          'insufficient_scope',
          describeNeededScopes(config, needed, 'call'),
          needed,
        )
      }
    }

    // Only POSTs carry messages that run handlers; GET and DELETE need no upstream token.
    let upstreamAccessToken = verified.upstream.at
    if (c.req.method === 'POST') {
      try {
        upstreamAccessToken = await options.upstreamTokens.accessToken(verified, requestIdOf(c))
      } catch (error) {
        throw challenged(error)
      }
    }
    const caller = callerOf(verified, upstreamAccessToken)
    const authInfo: AuthInfo = {
      token,
      clientId: verified.clientId,
      scopes: [...verified.scopes],
      expiresAt: verified.expiresAt,
      resource,
      extra: { ...caller },
    }
    c.set('mcp', { authInfo, caller, parsedBody })
    await next()
  }
}

/** The token of an `Authorization: Bearer` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return BEARER.exec(authorization ?? '')?.[1]
}

/**
 * The refusals of a bearer gate in front of the MCP resource's tokens (RFC 6750 §3, RFC 9728
 * §5.1): `refuse` builds a 401/403 carrying the exact challenge; `challenged` turns what the
 * verifier or the upstream-token source threw into one (a silent store into 503).
 */
export function bearerRefusals(config: Pick<Config, 'issuer' | 'scopes'>) {
  const resourceMetadata = `${config.issuer}/.well-known/oauth-protected-resource/mcp`

  const refuse = (
    status: 401 | 403,
    code: string | undefined,
    description: string,
    scopes: readonly string[] = config.scopes,
  ) =>
    new OAuthError(code ?? 'invalid_token', description, {
      status,
      headers: {
        'www-authenticate': bearerChallenge({
          error: code,
          description,
          resourceMetadata,
          scopes,
        }),
      },
    })

  // RFC 9449 §7.1: the DPoP challenge says what is wrong, next to the Bearer one.
  const refuseDpop = (verdict: Exclude<DpopVerdict, { ok: true }>) =>
    new OAuthError(verdict.error, verdict.description, {
      status: 401,
      headers: {
        'www-authenticate': `${bearerChallenge({ resourceMetadata, scopes: config.scopes })}, ${verdict.challenge}`,
      },
    })

  const challenged = (error: unknown): unknown => {
    if (error instanceof OAuthError && error.code === 'invalid_token') {
      return refuse(401, 'invalid_token', error.description ?? 'the access token is not valid')
    }
    if (error instanceof StoreUnavailableError) return unavailable(error)
    return error
  }

  return { refuse, challenged, refuseDpop }
}

/** The `Caller` tools (and `requireAuth` routes) see for a verified token. */
export function callerOf(verified: VerifiedAccessToken, upstreamAccessToken: string): Caller {
  return {
    sub: verified.sub,
    email: verified.email,
    orgCode: verified.orgCode,
    orgId: verified.orgId,
    permissions: verified.permissions ?? [],
    actor: verified.actor,
    upstreamAccessToken,
  }
}

/**
 * The scopes that `tools/call` requests in `body` (one message or a batch) need and `granted`
 * lacks: every scope of each such tool, so the client asks for what the operation needs
 * (MCP scope challenge handling; the client unions it with what it already holds).
 */
export function scopesNeeded(
  body: unknown,
  toolScopes: ReadonlyMap<string, readonly string[]>,
  granted: readonly string[],
): string[] {
  const needed = new Set<string>()
  for (const message of Array.isArray(body) ? body : [body]) {
    const name = toolCallName(message)
    const required = name === undefined ? undefined : toolScopes.get(name)
    if (required?.some((scope) => !granted.includes(scope))) {
      for (const scope of required) needed.add(scope)
    }
  }
  return [...needed]
}

function toolCallName(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined
  const { method, params } = message as { method?: unknown; params?: unknown }
  if (method !== 'tools/call' || typeof params !== 'object' || params === null) return undefined
  const { name } = params as { name?: unknown }
  return typeof name === 'string' ? name : undefined
}

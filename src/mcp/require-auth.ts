import type { MiddlewareHandler } from 'hono'
import type { Logger } from 'pino'
import { requestIdOf } from '../audit.js'
import { type Config, ConfigError } from '../config.js'
import { refusalResponse } from '../errors.js'
import type { VerifiedAccessToken } from '../tokens/access-token.js'
import {
  createDpopKeyCache,
  type DpopDeps,
  presentedToken,
  verifyDpopAtResource,
} from '../tokens/dpop.js'
import { describeNeededScopes } from '../tokens/policy.js'
import type { AccessTokenVerifier } from '../tokens/verifier.js'
import { bearerRefusals, callerOf } from './auth.js'
import type { Caller } from './tools.js'
import type { UpstreamTokenSource } from './upstream-token.js'

/**
 * Who is calling a route behind `requireAuth`: the same `Caller` MCP tools receive, plus the
 * token's client and scopes. `upstreamAccessToken` is for calling upstream APIs as the caller
 * and must never be returned.
 */
export interface RequestAuth extends Caller {
  readonly clientId: string
  readonly scopes: readonly string[]
  /** When the proxy access token expires, in seconds since the epoch. */
  readonly expiresAt: number
}

/** Hono environment of routes behind `requireAuth`: `c.get('auth')`. */
export type AuthEnv = { Variables: { auth: RequestAuth } }

export interface RequireAuthOptions {
  /** Scopes the token must carry; each must be one the proxy offers (`SCOPES`). */
  readonly scopes?: readonly string[]
}

/** What the gate shares with the MCP endpoint's: the configuration, the verifier, the upstream tokens. */
export interface RequireAuthDeps extends DpopDeps {
  readonly config: Pick<
    Config,
    'issuer' | 'scopes' | 'openScopes' | 'scopePermissions' | 'dpopRequired'
  >
  readonly verifier: AccessTokenVerifier
  readonly upstreamTokens: UpstreamTokenSource
  readonly logger: Logger
}

/**
 * A bearer gate for an embedding application's own routes, accepting the proxy's access
 * tokens for the MCP resource (audience `PUBLIC_URL/mcp`) exactly as `/mcp` does: the same
 * verifier (signature, claims, revocation), the same challenges naming the protected-resource
 * metadata (RFC 6750 §3, RFC 9728 §5.1) — 401 without a valid token, 403
 * `insufficient_scope` naming `scopes` when the token lacks one — and 503 when the store does
 * not answer. The caller's upstream token is resolved (refreshed when expired) before the
 * route runs. Refusals are answered here, whatever the host app's error handler; a CORS
 * preflight never carries a token, so put `cors()` in front.
 */
export function requireBearer(
  deps: RequireAuthDeps,
  options: RequireAuthOptions = {},
): MiddlewareHandler<AuthEnv> {
  const required = [...new Set(options.scopes ?? [])]
  const unoffered = required.filter((scope) => !deps.config.scopes.includes(scope))
  if (unoffered.length) {
    // Fail at start-up: no client could obtain such a scope, so the route would refuse everyone.
    throw new ConfigError([
      `SCOPES: requireAuth needs ${unoffered.join(', ')}, which SCOPES does not list`,
    ])
  }
  const { refuse, challenged, refuseDpop } = bearerRefusals(deps.config)
  const dpopDeps = { ...deps, keyCache: createDpopKeyCache() }

  const authenticate = async (
    request: { authorization?: string; dpop?: string; method: string; path: string },
    requestId: string | undefined,
  ): Promise<RequestAuth> => {
    const presented = presentedToken(request.authorization)
    const token = presented?.token
    // No error code in the header when no token was sent (RFC 6750 §3.1).
    if (!presented || !token) throw refuse(401, undefined, 'an access token is required')
    let verified: VerifiedAccessToken
    let upstreamAccessToken: string
    try {
      verified = await deps.verifier.verify(token)
    } catch (error) {
      throw challenged(error)
    }
    const dpop = await verifyDpopAtResource(
      dpopDeps,
      {
        ...presented,
        method: request.method,
        url: `${deps.config.issuer}${request.path}`,
        proof: request.dpop,
      },
      verified,
    )
    if (!dpop.ok) throw refuseDpop(dpop)
    if (required.some((scope) => !verified.scopes.includes(scope))) {
      throw refuse(
        403,
        'insufficient_scope',
        describeNeededScopes(deps.config, required, 'request'),
        required,
      )
    }
    try {
      upstreamAccessToken = await deps.upstreamTokens.accessToken(verified, requestId)
    } catch (error) {
      throw challenged(error)
    }
    return {
      ...callerOf(verified, upstreamAccessToken),
      clientId: verified.clientId,
      scopes: verified.scopes,
      expiresAt: verified.expiresAt,
    }
  }

  return async function requireAuth(c, next) {
    let auth: RequestAuth
    try {
      auth = await authenticate(
        {
          authorization: c.req.header('authorization'),
          dpop: c.req.header('dpop'),
          method: c.req.method,
          path: c.req.path,
        },
        requestIdOf(c),
      )
    } catch (error) {
      const response = refusalResponse(error, deps.logger, c.req.path)
      if (!response) throw error
      return response
    }
    c.set('auth', auth)
    await next()
  }
}

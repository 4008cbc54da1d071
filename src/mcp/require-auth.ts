import type { MiddlewareHandler } from 'hono'
import type { Logger } from 'pino'
import { requestIdOf } from '../audit.js'
import { ConfigError } from '../config.js'
import { refusalResponse } from '../errors.js'
import { type BearerGateDeps, createBearerGate, credentialsOf } from './gate.js'
import type { Caller } from './tools.js'

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

/** What the middleware needs: the services `/mcp`'s bearer gate is built from, a logger. */
export interface RequireAuthDeps extends BearerGateDeps {
  readonly logger: Logger
}

/**
 * A bearer gate for an embedding application's own routes: an adapter over the gate `/mcp`
 * uses, so the same tokens pass with the same verification (signature, claims, revocation)
 * and are refused with the same bytes (RFC 6750 §3, RFC 9728 §5.1) — 401 without a valid
 * token, 403 `insufficient_scope` naming `scopes` when the token lacks one — and 503 when the
 * store does not answer. The caller's upstream token is resolved (refreshed when expired)
 * before the route runs. Refusals are answered here, whatever the host app's error handler; a
 * CORS preflight never carries a token, so put `cors()` in front.
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
  const gate = createBearerGate(deps)

  return async function requireAuth(c, next) {
    let auth: RequestAuth
    try {
      const { caller, verified } = await gate.authenticate(credentialsOf(c), {
        scopes: required,
        requestId: requestIdOf(c),
      })
      auth = {
        ...caller,
        clientId: verified.clientId,
        scopes: verified.scopes,
        expiresAt: verified.expiresAt,
      }
    } catch (error) {
      const response = refusalResponse(error, deps.logger, c.req.path)
      if (!response) throw error
      return response
    }
    c.set('auth', auth)
    await next()
  }
}

import type { Context, MiddlewareHandler } from 'hono'
import { requestIdOf } from '../audit.js'
import { randomToken, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { clientIp } from '../http.js'
import { consumeRate } from '../rate-limit.js'
import { UpstreamError } from '../upstream/upstream.js'
import { pageHeaders, renderErrorPage, renderTooManyRequestsPage } from './pages.js'
import { transactionKey } from './transaction.js'

/** A validated authorization request (after both phases), waiting for consent or the upstream. */
export interface AuthorizationRequest {
  /** Correlates this sign-in's audit events, from /authorize to every refresh of its grant. */
  readonly flowId: string
  readonly clientId: string
  readonly redirectUri: string
  readonly redirectUriProvided: boolean
  readonly state: string | undefined
  readonly codeChallenge: string
  readonly scopes: readonly string[]
  readonly resource: string
  /** SHA-256 of the browser binding cookie of the browser that made the request. */
  readonly browser: string
}

/** The upstream leg of an MCP authorization, found again by `/callback`. */
export interface UpstreamTransaction extends AuthorizationRequest {
  readonly nonce: string
  readonly codeVerifier: string
}

export const UPSTREAM_NAMES = {
  kinde: 'Kinde',
  auth0: 'Auth0',
  oidc: 'your identity provider',
} as const

/**
 * Per client IP, before anything else: each sign-in (`/authorize`, `/account/sign-in`) may fetch
 * a client metadata document and writes a transaction. Over `AUTHORIZE_RATE_LIMIT` a person gets
 * a page saying when to come back.
 */
export function signInRateLimit(deps: Deps): MiddlewareHandler {
  return async function authorizeRateLimit(c, next) {
    try {
      await consumeRate(
        deps,
        'authorize',
        sha256(clientIp(c, deps.config.trustProxy)),
        deps.config.authorizeRateLimit,
      )
    } catch (error) {
      if (!(error instanceof OAuthError) || error.status !== 429) throw error
      const retryAfter = error.headers['retry-after'] ?? '60'
      deps.audit(
        'authorization.refused',
        { error: error.code, reason: 'AUTHORIZE_RATE_LIMIT' },
        requestIdOf(c),
      )
      return c.html(renderTooManyRequestsPage(Number(retryAfter)), 429, {
        ...pageHeaders(),
        'retry-after': retryAfter,
      })
    }
    return next()
  }
}

/** A page, not a redirect: used until the client and redirect URI are trusted. */
export function errorPage(
  deps: Deps,
  c: Context,
  error: string,
  description: string,
  status: 400 | 403 = 400,
): Response {
  deps.audit('authorization.refused', { error, reason: description }, requestIdOf(c))
  return c.html(renderErrorPage(error, description), status, pageHeaders())
}

/** Sends the browser back to the client (RFC 6749 §4.1.2, with `iss` per RFC 9207). */
export function toClient(
  deps: Deps,
  c: Context,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
  params: Record<string, string>,
  status: 302 | 303 = 302,
): Response {
  const url = new URL(request.redirectUri)
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value)
  if (request.state !== undefined) url.searchParams.set('state', request.state)
  url.searchParams.set('iss', deps.config.issuer)
  return c.redirect(url.href, status)
}

export function errorToClient(
  deps: Deps,
  c: Context,
  request: Pick<AuthorizationRequest, 'redirectUri' | 'state'> &
    Partial<Pick<AuthorizationRequest, 'clientId' | 'flowId'>>,
  error: OAuthError,
  status: 302 | 303 = 302,
): Response {
  deps.audit(
    'authorization.refused',
    {
      client_id: request.clientId,
      flow_id: request.flowId,
      error: error.code,
      reason: error.description,
    },
    requestIdOf(c),
  )
  return toClient(
    deps,
    c,
    request,
    { error: error.code, ...(error.description ? { error_description: error.description } : {}) },
    status,
  )
}

/** Opens the upstream leg: fresh state, nonce and PKCE verifier, kept for one use. */
export async function toUpstream(
  deps: Deps,
  c: Context,
  request: AuthorizationRequest,
  status: 302 | 303,
): Promise<Response> {
  const { config } = deps
  const transaction: UpstreamTransaction = {
    ...request,
    nonce: randomToken(),
    codeVerifier: randomToken(),
  }
  const state = randomToken()
  try {
    const url = await deps.upstream.authorizationUrl(
      { state, nonce: transaction.nonce, codeVerifier: transaction.codeVerifier },
      // ALLOWED_EMAIL_DOMAINS needs the email whatever scopes the client asked for.
      config.allowedEmailDomains.length ? [...request.scopes, 'email'] : request.scopes,
    )
    await deps.store.put(transactionKey(state), transaction, config.transactionTtlSeconds)
    return c.redirect(url.href, status)
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error
    deps.logger.warn({ err: error }, 'upstream authorization endpoint unavailable')
    return errorToClient(deps, c, request, upstreamFailure(error), status)
  }
}

/**
 * What the user is told when the upstream cannot be used: an outage passes (try again), a
 * misconfiguration does not, so the user is not sent round in circles. The cause itself
 * (host, certificate) stays in the server log and `/readyz`.
 */
export function upstreamFailure(error: UpstreamError): OAuthError {
  return error.misconfigured
    ? new OAuthError(
        'server_error',
        'the sign-in service is misconfigured: it cannot reach its identity provider; tell the administrator of this server',
      )
    : new OAuthError(
        'temporarily_unavailable',
        'the identity provider is unavailable; try again shortly',
      )
}

import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { type AuditEventName, type AuditFields, requestIdOf } from '../audit.js'
import { randomToken, safeEqual, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { clientIp, hasMediaType, methodNotAllowed, readBody } from '../http.js'
import { consumeRate } from '../rate-limit.js'
import { storeKey } from '../store/keys.js'
import { createGrant, issueCode } from '../tokens/grants.js'
import { type Admission, admitUser } from '../tokens/policy.js'
import { seal, unseal } from '../tokens/seal.js'
import { UpstreamError } from '../upstream/upstream.js'
import { completeAccountSignIn } from './account.js'
import { checkAuthorizationRequest, requestedClientId } from './authorization-request.js'
import type { Client } from './client.js'
import type { Clients } from './clients.js'
import {
  browserId,
  consentCovers,
  ensureBrowserId,
  rememberConsent,
  rememberedConsents,
} from './cookies.js'
import {
  pageHeaders,
  renderConsentPage,
  renderErrorPage,
  renderTooManyRequestsPage,
} from './pages.js'
import { describeRedirect, isLoopbackRedirect, isPrivateUseScheme } from './redirect-uri.js'
import { type AccountTransaction, isAccountTransaction, transactionKey } from './transaction.js'

/** A validated authorization request (after both phases), waiting for consent or the upstream. */
interface AuthorizationRequest {
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

/**
 * An authorization request on the consent page. It travels sealed (JWE, the encryption key) in
 * the form itself rather than in the store: a `GET /authorize` that is never answered leaves
 * nothing behind, however many are sent.
 */
interface PendingConsent extends AuthorizationRequest {
  /** Tells a sealed consent from every other value sealed under the same key. */
  readonly kind: 'consent'
  readonly csrfToken: string
  /** Unix seconds after which the form is refused (`TRANSACTION_TTL_SECONDS`). */
  readonly exp: number
}

interface UpstreamTransaction extends AuthorizationRequest {
  readonly nonce: string
  readonly codeVerifier: string
}

const answeredKey = (csrfToken: string) => storeKey.consentAnswered(sha256(csrfToken))
// The sealed request (with a state of up to 2 KiB) rides in the form.
const MAX_CONSENT_BYTES = 16 * 1024

type RouteDeps = Deps

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

/**
 * `GET /authorize`, its consent form and `GET /callback`: the authorization-code flow with the
 * upstream login in the middle (OAuth 2.1 §4.1, RFC 7636, RFC 8707, RFC 9207).
 */
export function authorizeRoutes(deps: RouteDeps, clients: Clients) {
  const { config, store, clock, logger } = deps
  const audit = (c: Context, event: AuditEventName, fields: AuditFields) =>
    deps.audit(event, fields, requestIdOf(c))
  const app = new Hono()

  const limitPerAddress = signInRateLimit(deps)

  /** A page, not a redirect: used until the client and redirect URI are trusted. */
  const errorPage = (c: Context, error: string, description: string, status: 400 | 403 = 400) => {
    audit(c, 'authorization.refused', { error, reason: description })
    return c.html(renderErrorPage(error, description), status, pageHeaders())
  }

  /** Sends the browser back to the client (RFC 6749 §4.1.2, with `iss` per RFC 9207). */
  const toClient = (
    c: Context,
    request: Pick<AuthorizationRequest, 'redirectUri' | 'state'>,
    params: Record<string, string>,
    status: 302 | 303 = 302,
  ) => {
    const url = new URL(request.redirectUri)
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value)
    if (request.state !== undefined) url.searchParams.set('state', request.state)
    url.searchParams.set('iss', config.issuer)
    return c.redirect(url.href, status)
  }

  const errorToClient = (
    c: Context,
    request: Pick<AuthorizationRequest, 'redirectUri' | 'state'> &
      Partial<Pick<AuthorizationRequest, 'clientId' | 'flowId'>>,
    error: OAuthError,
    status: 302 | 303 = 302,
  ) => {
    audit(c, 'authorization.refused', {
      client_id: request.clientId,
      flow_id: request.flowId,
      error: error.code,
      reason: error.description,
    })
    return toClient(
      c,
      request,
      { error: error.code, ...(error.description ? { error_description: error.description } : {}) },
      status,
    )
  }

  /** Opens the upstream leg: fresh state, nonce and PKCE verifier, kept for one use. */
  const toUpstream = async (c: Context, request: AuthorizationRequest, status: 302 | 303) => {
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
      await store.put(transactionKey(state), transaction, config.transactionTtlSeconds)
      return c.redirect(url.href, status)
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error
      logger.warn({ err: error }, 'upstream authorization endpoint unavailable')
      return errorToClient(c, request, upstreamFailure(error), status)
    }
  }

  app.get('/authorize', limitPerAddress, async (c) => {
    const query = new URL(c.req.url).searchParams

    // Phase one: nothing may redirect until client_id and redirect_uri are trusted.
    const clientId = requestedClientId(query)
    if (clientId instanceof OAuthError)
      return errorPage(c, clientId.code, clientId.description ?? '')
    let client: Client | undefined
    try {
      client = await clients.find(clientId)
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_client') {
        return errorPage(c, 'invalid_client', error.description ?? 'the client cannot be used')
      }
      throw error
    }
    if (!client)
      return errorPage(
        c,
        'invalid_client',
        'unknown client_id: the application must register first',
      )
    const checked = checkAuthorizationRequest(config, query, client)
    if (checked.refusal) {
      const { refusal } = checked
      return checked.redirectTo
        ? errorToClient(c, checked.redirectTo, refusal)
        : errorPage(c, refusal.code, refusal.description ?? '')
    }
    const { redirectUri, redirectUriProvided, state, codeChallenge, scopes, prompt } =
      checked.request

    const request: AuthorizationRequest = {
      clientId: client.clientId,
      redirectUri,
      redirectUriProvided,
      state,
      codeChallenge,
      scopes,
      resource: config.resource,
      browser: sha256(ensureBrowserId(c, config)),
      flowId: randomToken(12),
    }
    // No clients.touch here: only a completed sign-in or a token request is use of a client, or
    // anyone could keep an abandoned registration alive with links nobody follows.

    const skip =
      (config.consent === 'skip' && client.source === 'static') ||
      (!prompt.includes('consent') &&
        consentCovers(
          await rememberedConsents(c, config, deps.keys, clock.now()),
          client.clientId,
          redirectUri,
          scopes,
        ))
    if (skip) return toUpstream(c, request, 302)

    const pending: PendingConsent = {
      ...request,
      kind: 'consent',
      csrfToken: randomToken(),
      exp: Math.floor(clock.now()) + config.transactionTtlSeconds,
    }
    const requestId = await seal(deps.keys, pending)
    const html = renderConsentPage({
      clientName: client.clientName ?? client.clientId,
      verifiedDomain:
        client.source === 'metadata-document' ? new URL(client.clientId).host : undefined,
      selfRegistered: client.source === 'dynamic',
      redirectTarget: describeRedirect(redirectUri),
      scopes: scopes.filter((scope) => scope !== 'openid'),
      upstreamName: config.upstream.displayName ?? UPSTREAM_NAMES[config.upstream.kind],
      requestId,
      csrfToken: pending.csrfToken,
    })
    return c.html(html, 200, pageHeaders([config.upstream.issuer.origin, formTarget(redirectUri)]))
  })
  app.all('/authorize', methodNotAllowed(['GET']))

  app.post('/authorize/consent', limitPerAddress, async (c) => {
    if (!hasMediaType(c, 'application/x-www-form-urlencoded')) {
      return errorPage(c, 'invalid_request', 'the consent form was not submitted as a form')
    }
    const form = new URLSearchParams(await readBody(c, MAX_CONSENT_BYTES))
    const requestId = form.get('request_id') ?? ''
    // A cross-site POST is a forgery whatever it carries (Fetch Metadata, then Origin).
    const site = c.req.header('sec-fetch-site')
    const origin = c.req.header('origin')
    if ((site && site !== 'same-origin') || (origin && origin !== config.publicUrl.origin)) {
      return errorPage(c, 'access_denied', 'the consent form was submitted from another site', 403)
    }
    const pending = await openConsent(requestId)
    const expired = () =>
      errorPage(c, 'invalid_request', 'this consent request expired or was already answered')
    if (!pending) return expired()
    // Spent by the first answer that carries it, whichever instance sees it, before the forgery
    // checks: a forged attempt burns the request, so the real form cannot be replayed after it.
    // Remembered only while the request could still be used.
    const ttl = Math.max(1, pending.exp - Math.floor(clock.now()))
    if (!(await store.add(answeredKey(pending.csrfToken), true, ttl))) return expired()
    const browser = browserId(c, config)
    const csrf = form.get('csrf_token') ?? ''
    if (!browser || sha256(browser) !== pending.browser || !safeEqual(csrf, pending.csrfToken)) {
      return errorPage(
        c,
        'access_denied',
        'the consent form failed its forgery check; start again from the application',
        403,
      )
    }
    const { csrfToken: _csrf, kind: _kind, exp: _exp, ...request } = pending
    if (form.get('decision') !== 'allow') {
      audit(c, 'consent.denied', { client_id: request.clientId, flow_id: request.flowId })
      return errorToClient(
        c,
        request,
        new OAuthError('access_denied', 'the user denied the request'),
        303,
      )
    }
    audit(c, 'consent.granted', {
      client_id: request.clientId,
      flow_id: request.flowId,
      scopes: request.scopes,
    })
    await rememberConsent(c, config, deps.keys, clock.now(), {
      c: request.clientId,
      r: request.redirectUri,
      s: request.scopes,
    })
    return toUpstream(c, request, 303)
  })
  app.all('/authorize/consent', methodNotAllowed(['POST']))

  /** The pending consent a form carries, when it is ours, intact and not expired. */
  const openConsent = async (requestId: string): Promise<PendingConsent | undefined> => {
    if (!requestId) return undefined
    let pending: PendingConsent
    try {
      pending = await unseal<PendingConsent>(deps.keys, requestId)
    } catch {
      return undefined
    }
    if (pending?.kind !== 'consent' || !(pending.exp > clock.now())) return undefined
    return pending
  }

  app.get('/callback', async (c) => {
    const query = new URL(c.req.url).searchParams
    const state = query.get('state')
    if (!state) return errorPage(c, 'invalid_request', 'the identity provider returned no state')
    const transaction = await store.take<UpstreamTransaction | AccountTransaction>(
      transactionKey(state),
    )
    if (!transaction)
      return errorPage(c, 'invalid_request', 'this sign-in expired or was already completed')
    // The same fixed callback serves the account page's own sign-in, which grants nothing.
    if (isAccountTransaction(transaction))
      return completeAccountSignIn(deps, c, transaction, { state, query })
    const browser = browserId(c, config)
    if (!browser || sha256(browser) !== transaction.browser) {
      audit(c, 'authorization.refused', {
        client_id: transaction.clientId,
        flow_id: transaction.flowId,
        error: 'access_denied',
        reason: 'the sign-in was completed in another browser',
      })
      return errorPage(
        c,
        'access_denied',
        'this sign-in was started in another browser; start again from the application',
        403,
      )
    }
    const upstreamError = query.get('error')
    if (upstreamError) {
      const code = FORWARDED_UPSTREAM_ERRORS.has(upstreamError) ? upstreamError : 'access_denied'
      return errorToClient(
        c,
        transaction,
        new OAuthError(code, `the identity provider answered ${code}`),
      )
    }
    // The upstream compares the redirect_uri of the token request with PUBLIC_URL/callback,
    // whatever address this request reached us on.
    const callbackUrl = new URL(`/callback?${query}`, config.publicUrl)
    let result: Awaited<ReturnType<typeof deps.upstream.exchangeCode>>
    let admission: Admission
    try {
      result = await deps.upstream.exchangeCode(callbackUrl, {
        state,
        nonce: transaction.nonce,
        codeVerifier: transaction.codeVerifier,
      })
      // Decided here, where the identity is known, so the code exchange asks nothing upstream.
      admission = await admitUser(deps, {
        identity: result.identity,
        upstreamAccessToken: result.tokens.accessToken,
        clientId: transaction.clientId,
        requested: transaction.scopes.filter((scope) => scope !== 'offline_access'),
      })
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error
      logger.warn(
        { event: 'upstream.exchange_failed', kind: error.kind, code: error.code, err: error },
        'upstream code exchange failed',
      )
      return errorToClient(
        c,
        transaction,
        error.kind === 'unavailable'
          ? upstreamFailure(error)
          : new OAuthError('server_error', 'the identity provider did not confirm the sign-in'),
      )
    }
    if (admission.refusal !== undefined) {
      audit(c, 'policy.refused', {
        client_id: transaction.clientId,
        flow_id: transaction.flowId,
        sub: result.identity.sub,
        org: result.identity.orgCode ?? result.identity.orgId,
        actor: 'user',
        reason: admission.refusal,
      })
      return errorToClient(c, transaction, new OAuthError('access_denied', admission.refusal))
    }
    const grant = await createGrant(deps, {
      clientId: transaction.clientId,
      identity: admission.identity,
      scopes: admission.scopes,
      upstream: result.tokens,
      flowId: transaction.flowId,
      redirectUri: transaction.redirectUri,
    })
    // A completed sign-in is use: an unused registration now lives its full idle TTL.
    const client = await clients.find(transaction.clientId).catch(() => undefined)
    if (client) await clients.touch(client)
    const code = await issueCode(deps, {
      grantId: grant.id,
      clientId: transaction.clientId,
      redirectUri: transaction.redirectUri,
      redirectUriProvided: transaction.redirectUriProvided,
      codeChallenge: transaction.codeChallenge,
      resource: transaction.resource,
    })
    audit(c, 'authorization.granted', {
      client_id: transaction.clientId,
      flow_id: transaction.flowId,
      sub: grant.sub,
      org: grant.identity.orgCode ?? grant.identity.orgId,
      actor: 'user',
      scopes: grant.scopes,
    })
    return toClient(c, transaction, { code })
  })
  app.all('/callback', methodNotAllowed(['GET']))

  return app
}

const UPSTREAM_NAMES = { kinde: 'Kinde', auth0: 'Auth0', oidc: 'your identity provider' } as const

/**
 * What the user is told when the upstream cannot be used: an outage passes (try again), a
 * misconfiguration does not, so the user is not sent round in circles. The cause itself
 * (host, certificate) stays in the server log and `/readyz`.
 */
function upstreamFailure(error: UpstreamError): OAuthError {
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

// Errors a client can act on; anything else the upstream says becomes access_denied.
const FORWARDED_UPSTREAM_ERRORS = new Set([
  'access_denied',
  'temporarily_unavailable',
  'server_error',
  'login_required',
  'consent_required',
  'interaction_required',
])

/** The CSP source that lets the consent form's redirect reach the client. */
function formTarget(redirectUri: string): string {
  const url = new URL(redirectUri)
  if (isPrivateUseScheme(url)) return url.protocol
  // Loopback redirects may use any port (RFC 8252 §7.3).
  return isLoopbackRedirect(url) ? `http://${url.hostname}:*` : url.origin
}

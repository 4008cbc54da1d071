import { type Context, Hono } from 'hono'
import { requestIdOf } from '../audit.js'
import { randomToken, safeEqual, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { hasMediaType, methodNotAllowed, readBody } from '../http.js'
import { storeKey } from '../store/keys.js'
import { seal, unseal } from '../tokens/seal.js'
import {
  type AuthorizationRequest,
  errorPage,
  errorToClient,
  signInRateLimit,
  toUpstream,
  UPSTREAM_NAMES,
} from './authorization-flow.js'
import type { Client } from './client.js'
import { browserId, rememberConsent } from './cookies.js'
import { pageHeaders, renderConsentPage } from './pages.js'
import { describeRedirect, isLoopbackRedirect, isPrivateUseScheme } from './redirect-uri.js'

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

const answeredKey = (csrfToken: string) => storeKey.consentAnswered(sha256(csrfToken))
// The sealed request (with a state of up to 2 KiB) rides in the form.
const MAX_CONSENT_BYTES = 16 * 1024

/** `GET /authorize`'s answer when the user must approve: the consent page, request sealed in it. */
export async function consentPage(
  deps: Deps,
  c: Context,
  client: Client,
  request: AuthorizationRequest,
): Promise<Response> {
  const { config, clock } = deps
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
    redirectTarget: describeRedirect(request.redirectUri),
    scopes: request.scopes.filter((scope) => scope !== 'openid'),
    upstreamName: config.upstream.displayName ?? UPSTREAM_NAMES[config.upstream.kind],
    requestId,
    csrfToken: pending.csrfToken,
  })
  return c.html(
    html,
    200,
    pageHeaders([config.upstream.issuer.origin, formTarget(request.redirectUri)]),
  )
}

/** `POST /authorize/consent`: the user's answer, then the upstream leg or an error to the client. */
export function consentRoutes(deps: Deps) {
  const { config, store, clock } = deps
  const app = new Hono()

  app.post('/authorize/consent', signInRateLimit(deps), async (c) => {
    if (!hasMediaType(c, 'application/x-www-form-urlencoded')) {
      return errorPage(deps, c, 'invalid_request', 'the consent form was not submitted as a form')
    }
    const form = new URLSearchParams(await readBody(c, MAX_CONSENT_BYTES))
    const requestId = form.get('request_id') ?? ''
    // A cross-site POST is a forgery whatever it carries (Fetch Metadata, then Origin).
    const site = c.req.header('sec-fetch-site')
    const origin = c.req.header('origin')
    if ((site && site !== 'same-origin') || (origin && origin !== config.publicUrl.origin)) {
      return errorPage(
        deps,
        c,
        'access_denied',
        'the consent form was submitted from another site',
        403,
      )
    }
    const pending = await openConsent(deps, requestId)
    const expired = () =>
      errorPage(deps, c, 'invalid_request', 'this consent request expired or was already answered')
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
        deps,
        c,
        'access_denied',
        'the consent form failed its forgery check; start again from the application',
        403,
      )
    }
    const { csrfToken: _csrf, kind: _kind, exp: _exp, ...request } = pending
    if (form.get('decision') !== 'allow') {
      deps.audit(
        'consent.denied',
        { client_id: request.clientId, flow_id: request.flowId },
        requestIdOf(c),
      )
      return errorToClient(
        deps,
        c,
        request,
        new OAuthError('access_denied', 'the user denied the request'),
        303,
      )
    }
    deps.audit(
      'consent.granted',
      { client_id: request.clientId, flow_id: request.flowId, scopes: request.scopes },
      requestIdOf(c),
    )
    await rememberConsent(c, config, deps.keys, clock.now(), {
      c: request.clientId,
      r: request.redirectUri,
      s: request.scopes,
    })
    return toUpstream(deps, c, request, 303)
  })
  app.all('/authorize/consent', methodNotAllowed(['POST']))

  return app
}

/** The pending consent a form carries, when it is ours, intact and not expired. */
async function openConsent(deps: Deps, requestId: string): Promise<PendingConsent | undefined> {
  if (!requestId) return undefined
  let pending: PendingConsent
  try {
    pending = await unseal<PendingConsent>(deps.keys, requestId)
  } catch {
    return undefined
  }
  if (pending?.kind !== 'consent' || !(pending.exp > deps.clock.now())) return undefined
  return pending
}

/** The CSP source that lets the consent form's redirect reach the client. */
function formTarget(redirectUri: string): string {
  const url = new URL(redirectUri)
  if (isPrivateUseScheme(url)) return url.protocol
  // Loopback redirects may use any port (RFC 8252 §7.3).
  return isLoopbackRedirect(url) ? `http://${url.hostname}:*` : url.origin
}

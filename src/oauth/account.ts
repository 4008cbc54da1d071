import { type Context, Hono } from 'hono'
import { forRequest } from '../audit.js'
import { randomToken, safeEqual, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { hasMediaType, methodNotAllowed, readBody } from '../http.js'
import { KEY_TTL_SECONDS } from '../store/keys.js'
import { endGrant, listUserGrants } from '../tokens/end-grants.js'
import { findGrant, type Grant } from '../tokens/grants.js'
import { accountSessionKey } from '../tokens/user-grants.js'
import { UpstreamError } from '../upstream/upstream.js'
import { signInRateLimit } from './authorize.js'
import type { Client } from './client.js'
import type { Clients } from './clients.js'
import {
  accountSessionId,
  browserId,
  clearAccountSession,
  ensureBrowserId,
  forgetConsent,
  setAccountSession,
} from './cookies.js'
import {
  type GrantView,
  pageHeaders,
  renderAccountPage,
  renderAccountSignInPage,
  renderErrorPage,
} from './pages.js'
import { describeRedirect } from './redirect-uri.js'
import { type AccountTransaction, transactionKey } from './transaction.js'

/** An account page session lives at most this long, however active: it can end grants. */
export const ACCOUNT_SESSION_SECONDS = KEY_TTL_SECONDS.accountSession
const MAX_FORM_BYTES = 2048
const ACCOUNT_SCOPES = ['openid', 'profile', 'email']
const UPSTREAM_NAMES = { kinde: 'Kinde', auth0: 'Auth0', oidc: 'your identity provider' } as const

/** A signed-in account page, stored under the hash of its cookie's value. */
interface AccountSession {
  readonly sub: string
  readonly who: string
  readonly csrfToken: string
  /** Seconds since the epoch; the session never outlives it. */
  readonly expiresAt: number
}

type RouteDeps = Deps & Required<Pick<Deps, 'upstream' | 'audit'>>

/**
 * `/account`: a person signs in through the upstream (the fixed `/callback`, an account
 * transaction rather than an MCP authorization) and sees every MCP client they approved, each
 * revocable. Forms with a CSRF token, refused when cross-site (Fetch Metadata, then Origin);
 * the session is a `__Host-` cookie (on https) that lives at most `ACCOUNT_SESSION_SECONDS`.
 */
export function accountRoutes(deps: RouteDeps, clients: Clients) {
  const { config, store, clock } = deps
  const app = new Hono()
  const upstreamName = UPSTREAM_NAMES[config.upstream.kind]

  const page = (c: Context, html: string, status: 200 | 400 | 403 | 503 = 200) =>
    c.html(html, status, pageHeaders())
  const refuse = (c: Context, error: string, description: string, status: 400 | 403 | 503) =>
    page(c, renderErrorPage(error, description, 'Open /account to start again.'), status)

  const currentSession = async (
    c: Context,
  ): Promise<{ id: string; session: AccountSession } | undefined> => {
    const id = accountSessionId(c, config)
    if (!id) return undefined
    const session = await store.get<AccountSession>(accountSessionKey(id))
    if (!session || session.expiresAt <= clock.now()) return undefined
    return { id, session }
  }

  /** Every POST: a same-origin form with this session's CSRF token, or a refusal page. */
  const guardedForm = async (
    c: Context,
  ): Promise<{ form: URLSearchParams; id: string; session: AccountSession } | Response> => {
    if (!hasMediaType(c, 'application/x-www-form-urlencoded'))
      return refuse(c, 'invalid_request', 'the form was not submitted as a form', 400)
    const form = new URLSearchParams(await readBody(c, MAX_FORM_BYTES))
    const site = c.req.header('sec-fetch-site')
    const origin = c.req.header('origin')
    if ((site && site !== 'same-origin') || (origin && origin !== config.publicUrl.origin))
      return refuse(c, 'access_denied', 'the form was submitted from another site', 403)
    const current = await currentSession(c)
    if (!current) return refuse(c, 'access_denied', 'your account session has ended', 403)
    const csrf = form.getAll('csrf_token')
    if (csrf.length !== 1 || !safeEqual(csrf[0] ?? '', current.session.csrfToken))
      return refuse(c, 'access_denied', 'the form failed its forgery check', 403)
    return { form, ...current }
  }

  app.get('/account', async (c) => {
    const current = await currentSession(c)
    if (!current) {
      const signedOut = c.req.query('signed_out') !== undefined
      return page(c, renderAccountSignInPage({ upstreamName, signedOut }))
    }
    const grants = await listUserGrants(deps, current.session.sub)
    const views = await Promise.all(grants.map((grant) => grantView(grant)))
    return page(
      c,
      renderAccountPage({
        who: current.session.who,
        grants: views,
        csrfToken: current.session.csrfToken,
      }),
    )
  })
  app.all('/account', methodNotAllowed(['GET']))

  app.get('/account/sign-in', signInRateLimit(deps), async (c) => {
    const transaction: AccountTransaction = {
      kind: 'account',
      nonce: randomToken(),
      codeVerifier: randomToken(),
      browser: sha256(ensureBrowserId(c, config)),
      flowId: randomToken(12),
    }
    const state = randomToken()
    try {
      const url = await deps.upstream.authorizationUrl(
        { state, nonce: transaction.nonce, codeVerifier: transaction.codeVerifier },
        ACCOUNT_SCOPES,
      )
      await store.put(transactionKey(state), transaction, config.transactionTtlSeconds)
      return c.redirect(url.href, 302)
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error
      return refuse(c, 'temporarily_unavailable', `${upstreamName} is unavailable`, 503)
    }
  })
  app.all('/account/sign-in', methodNotAllowed(['GET']))

  app.post('/account/revoke', async (c) => {
    const guarded = await guardedForm(c)
    if (guarded instanceof Response) return guarded
    const grantId = guarded.form.get('grant_id') ?? ''
    // Another person's grant, or one already gone, is "nothing to revoke": the same answer.
    const grant = grantId.length <= 64 ? await findGrant(deps, grantId) : undefined
    if (grant && grant.sub === guarded.session.sub) {
      await endGrant(forRequest(deps, c), grant.id, 'user')
      await forgetConsent(c, config, deps.keys, clock.now(), grant.clientId)
    }
    return c.redirect('/account', 303)
  })
  app.all('/account/revoke', methodNotAllowed(['POST']))

  app.post('/account/sign-out', async (c) => {
    const guarded = await guardedForm(c)
    if (guarded instanceof Response) return guarded
    await store.delete(accountSessionKey(guarded.id))
    clearAccountSession(c, config)
    return c.redirect('/account?signed_out', 303)
  })
  app.all('/account/sign-out', methodNotAllowed(['POST']))

  /** What the page shows of a grant; the client's registration may be gone by now. */
  async function grantView(grant: Grant): Promise<GrantView> {
    const client: Client | undefined = await clients.find(grant.clientId).catch(() => undefined)
    const isDocument = /^https:\/\//.test(grant.clientId)
    return {
      grantId: grant.id,
      clientName: client?.clientName ?? grant.clientId,
      verifiedDomain: isDocument ? new URL(grant.clientId).host : undefined,
      redirectTarget: grant.redirectUri ? describeRedirect(grant.redirectUri) : undefined,
      scopes: grant.scopes,
      approvedAt: grant.createdAt,
      lastUsedAt: grant.lastUsedAt,
    }
  }

  return app
}

/**
 * `/callback` for an account transaction: the upstream's answer becomes an account session
 * (no grant, no code). The upstream refresh token this sign-in obtained is revoked at once:
 * the page needs nothing from the upstream but who signed in.
 */
export async function completeAccountSignIn(
  deps: RouteDeps,
  c: Context,
  transaction: AccountTransaction,
  params: { state: string; query: URLSearchParams },
): Promise<Response> {
  const { config, store, clock, logger } = deps
  const refuse = (error: string, description: string, status: 400 | 403 | 503) =>
    c.html(
      renderErrorPage(error, description, 'Open /account to start again.'),
      status,
      pageHeaders(),
    )
  const browser = browserId(c, config)
  if (!browser || sha256(browser) !== transaction.browser)
    return refuse('access_denied', 'this sign-in was started in another browser', 403)
  const upstreamError = params.query.get('error')
  if (upstreamError)
    return refuse('access_denied', 'the identity provider refused the sign-in', 403)
  let result: Awaited<ReturnType<RouteDeps['upstream']['exchangeCode']>>
  try {
    result = await deps.upstream.exchangeCode(
      new URL(`/callback?${params.query}`, config.publicUrl),
      { state: params.state, nonce: transaction.nonce, codeVerifier: transaction.codeVerifier },
    )
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error
    logger.warn({ kind: error.kind, code: error.code, err: error }, 'account sign-in failed')
    return error.kind === 'unavailable'
      ? refuse('temporarily_unavailable', 'the identity provider is unavailable', 503)
      : refuse('access_denied', 'the identity provider did not confirm the sign-in', 403)
  }
  if (result.tokens.refreshToken)
    void deps.upstream.revoke(result.tokens.refreshToken, 'refresh_token')
  const id = randomToken(32)
  const { identity } = result
  const session: AccountSession = {
    sub: identity.sub,
    who: identity.email ?? identity.name ?? identity.sub,
    csrfToken: randomToken(),
    expiresAt: Math.floor(clock.now()) + ACCOUNT_SESSION_SECONDS,
  }
  await store.put(accountSessionKey(id), session, ACCOUNT_SESSION_SECONDS)
  setAccountSession(c, config, id, ACCOUNT_SESSION_SECONDS)
  return c.redirect('/account', 303)
}

import { Hono } from 'hono'
import { requestIdOf } from '../audit.js'
import { sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { methodNotAllowed } from '../http.js'
import { createGrant, issueCode } from '../tokens/grants.js'
import { type Admission, admitUser } from '../tokens/policy.js'
import { UpstreamError } from '../upstream/upstream.js'
import { completeAccountSignIn } from './account.js'
import {
  errorPage,
  errorToClient,
  toClient,
  type UpstreamTransaction,
  upstreamFailure,
} from './authorization-flow.js'
import type { Clients } from './clients.js'
import { browserId } from './cookies.js'
import { type AccountTransaction, isAccountTransaction, transactionKey } from './transaction.js'

// Errors a client can act on; anything else the upstream says becomes access_denied.
const FORWARDED_UPSTREAM_ERRORS = new Set([
  'access_denied',
  'temporarily_unavailable',
  'server_error',
  'login_required',
  'consent_required',
  'interaction_required',
])

/**
 * `GET /callback`: the upstream's answer to a sign-in. An MCP authorization becomes a grant and
 * a code for the client; an `/account` sign-in (the transaction's `kind`) goes to the account page.
 */
export function callbackRoutes(deps: Deps, clients: Clients) {
  const { config, store, logger } = deps
  const app = new Hono()

  app.get('/callback', async (c) => {
    const audit: typeof deps.audit = (event, fields) => deps.audit(event, fields, requestIdOf(c))
    const query = new URL(c.req.url).searchParams
    const state = query.get('state')
    if (!state)
      return errorPage(deps, c, 'invalid_request', 'the identity provider returned no state')
    const transaction = await store.take<UpstreamTransaction | AccountTransaction>(
      transactionKey(state),
    )
    if (!transaction)
      return errorPage(deps, c, 'invalid_request', 'this sign-in expired or was already completed')
    // The same fixed callback serves the account page's own sign-in, which grants nothing.
    if (isAccountTransaction(transaction))
      return completeAccountSignIn(deps, c, transaction, { state, query })
    const browser = browserId(c, config)
    if (!browser || sha256(browser) !== transaction.browser) {
      audit('authorization.refused', {
        client_id: transaction.clientId,
        flow_id: transaction.flowId,
        error: 'access_denied',
        reason: 'the sign-in was completed in another browser',
      })
      return errorPage(
        deps,
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
        deps,
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
        deps,
        c,
        transaction,
        error.kind === 'unavailable'
          ? upstreamFailure(error)
          : new OAuthError('server_error', 'the identity provider did not confirm the sign-in'),
      )
    }
    if (admission.refusal !== undefined) {
      audit('policy.refused', {
        client_id: transaction.clientId,
        flow_id: transaction.flowId,
        sub: result.identity.sub,
        org: result.identity.orgCode ?? result.identity.orgId,
        actor: 'user',
        reason: admission.refusal,
      })
      return errorToClient(deps, c, transaction, new OAuthError('access_denied', admission.refusal))
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
    audit('authorization.granted', {
      client_id: transaction.clientId,
      flow_id: transaction.flowId,
      sub: grant.sub,
      org: grant.identity.orgCode ?? grant.identity.orgId,
      actor: 'user',
      scopes: grant.scopes,
    })
    return toClient(deps, c, transaction, { code })
  })
  app.all('/callback', methodNotAllowed(['GET']))

  return app
}

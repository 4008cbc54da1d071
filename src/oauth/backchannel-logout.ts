import { Hono } from 'hono'
import { forRequest } from '../audit.js'
import type { Deps } from '../deps.js'
import { NO_STORE, OAuthError, upstreamUnavailable } from '../errors.js'
import { methodNotAllowed } from '../http.js'
import { KEY_TTL_SECONDS } from '../store/keys.js'
import { endSessionGrants, endUserGrants } from '../tokens/end-grants.js'
import { logoutTokenKey } from '../tokens/user-grants.js'
import { LOGOUT_TOKEN_MAX_AGE_SECONDS } from '../upstream/logout-token.js'
import { UpstreamError } from '../upstream/upstream.js'
import { readForm } from './form.js'

type RouteDeps = Deps & Required<Pick<Deps, 'upstream' | 'audit'>>

// Long enough that a token accepted once is refused as a replay until it is too old anyway.
const SEEN_TOKEN_SECONDS = Math.max(KEY_TTL_SECONDS.logoutToken, 2 * LOGOUT_TOKEN_MAX_AGE_SECONDS)

/**
 * `POST /backchannel-logout` (OpenID Connect Back-Channel Logout 1.0 §2.5–2.8): the upstream
 * posts a `logout_token`; once it verifies (`Upstream.verifyLogoutToken`) and its `jti` is new,
 * every grant of its `sub` ends — or, when it names only a `sid`, every grant signed in through
 * that upstream session. `200` with `Cache-Control: no-store`; any fault is `400
 * invalid_request` and ends nothing.
 */
export function backchannelLogoutRoutes(deps: RouteDeps) {
  const app = new Hono()
  app.post('/backchannel-logout', async (c) => {
    const form = await readForm(c)
    const token = form.logout_token
    if (!token) throw new OAuthError('invalid_request', 'logout_token is missing')
    let claims: Awaited<ReturnType<RouteDeps['upstream']['verifyLogoutToken']>>
    try {
      claims = await deps.upstream.verifyLogoutToken(token)
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error
      if (error.kind === 'unavailable') throw upstreamUnavailable(error)
      deps.logger.warn({ reason: error.message }, 'back-channel logout refused')
      throw new OAuthError('invalid_request', error.message)
    }
    const seenKey = logoutTokenKey(claims.issuer, claims.jti)
    if (!(await deps.store.add(seenKey, true, SEEN_TOKEN_SECONDS))) {
      deps.logger.warn({ reason: 'replayed jti' }, 'back-channel logout refused')
      throw new OAuthError('invalid_request', 'the logout token was already used')
    }
    const scoped = forRequest(deps, c)
    try {
      if (claims.sub) await endUserGrants(scoped, claims.sub, { by: 'logout' })
      else if (claims.sid) await endSessionGrants(scoped, claims.sid, { by: 'logout' })
    } catch (error) {
      // Not acted on: the upstream's retry of this token must not count as a replay.
      await deps.store.delete(seenKey).catch(() => {})
      throw error
    }
    return c.body(null, 200, NO_STORE)
  })
  app.all('/backchannel-logout', methodNotAllowed(['POST']))
  return app
}

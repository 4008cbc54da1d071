import { Hono } from 'hono'
import { forRequest } from '../audit.js'
import type { Deps } from '../deps.js'
import { NO_STORE, OAuthError } from '../errors.js'
import { methodNotAllowed, publicCors } from '../http.js'
import { verifyAccessToken } from '../tokens/access-token.js'
import {
  denyAccessToken,
  findRefreshGrantId,
  revokeGrant,
  upstreamTokens,
  withGrantLock,
} from '../tokens/grants.js'
import { authenticateClient } from './client-auth.js'
import type { Clients } from './clients.js'
import { readForm } from './form.js'

type RouteDeps = Deps

/**
 * `POST /revoke` (RFC 7009). A refresh token ends its whole family (and the access tokens it
 * issued), with best-effort revocation upstream; an access token goes on the deny-list until
 * it expires. Unknown tokens, and tokens of other clients, get the same 200 (§2.2), so the
 * endpoint tells nobody which tokens exist.
 */
export function revokeRoutes(deps: RouteDeps, clients: Clients) {
  const app = new Hono()
  app.use('/revoke', publicCors(['POST']))
  app.post('/revoke', async (c) => {
    const form = await readForm(c)
    const client = await authenticateClient(clients, c.req.header('authorization'), form)
    const token = form.token
    if (!token) throw new OAuthError('invalid_request', 'token is missing')
    const tryAccessFirst = form.token_type_hint === 'access_token' || token.split('.').length === 3
    const attempts = tryAccessFirst ? [revokeAccess, revokeRefresh] : [revokeRefresh, revokeAccess]
    const scoped = forRequest(deps, c)
    for (const attempt of attempts) if (await attempt(scoped, token, client.clientId)) break
    return c.body(null, 200, NO_STORE)
  })
  app.all('/revoke', methodNotAllowed(['POST']))
  return app
}

async function revokeRefresh(deps: RouteDeps, token: string, clientId: string): Promise<boolean> {
  const found = await findRefreshGrantId(deps, token)
  if (!found || found.clientId !== clientId) return false
  // Under the family's lock, so a refresh in flight cannot save the grant back to life.
  const grant = await withGrantLock(deps, found.grantId, () => revokeGrant(deps, found.grantId))
  if (grant) {
    deps.audit('token.revoked', {
      kind: 'refresh_token',
      client_id: clientId,
      sub: grant.sub,
      flow_id: grant.flowId,
    })
    const upstream = await upstreamTokens(deps, grant).catch(() => undefined)
    if (upstream?.refreshToken)
      await deps.upstream.revoke(upstream.refreshToken, 'refresh_token').catch(() => {})
  }
  return true
}

async function revokeAccess(deps: RouteDeps, token: string, clientId: string): Promise<boolean> {
  const verified = await verifyAccessToken(deps, token).catch(() => undefined)
  if (!verified || verified.clientId !== clientId) return false
  await denyAccessToken(deps, verified.jti, verified.expiresAt)
  deps.audit('token.revoked', {
    kind: 'access_token',
    client_id: clientId,
    sub: verified.sub,
    actor: verified.actor,
    jti: verified.jti,
  })
  return true
}

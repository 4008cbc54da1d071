import { createHash } from 'node:crypto'
import { Hono } from 'hono'
import { forRequest } from '../audit.js'
import { safeEqual, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { NO_STORE, OAuthError, StoreUnavailableError, upstreamUnavailable } from '../errors.js'
import { clientIp, methodNotAllowed, publicCors } from '../http.js'
import { consumeRate, createFailureLimit } from '../rate-limit.js'
import type { StoreEntry } from '../store/store.js'
import { type Actor, mintAccessToken } from '../tokens/access-token.js'
import { createDpopKeyCache, type DpopProof, dpopAtTokenEndpoint } from '../tokens/dpop.js'
import {
  codeGrantId,
  findGrant,
  type Grant,
  identityClaims,
  issueRefreshToken,
  lookupRefreshToken,
  redeemCode,
  refreshGrantUpstream,
  revokeGrant,
  rotateRefreshToken,
  saveGrant,
  upstreamTokens,
  withGrantLock,
} from '../tokens/grants.js'
import { checkUserPolicy, grantScopes } from '../tokens/policy.js'
import { UpstreamError } from '../upstream/upstream.js'
import type { Client } from './client.js'
import { authenticateClient, basicCredentials } from './client-auth.js'
import type { Clients } from './clients.js'
import { readForm } from './form.js'
import { isThisResource } from './resource.js'
import { bindRefreshFamily, requireRefreshBinding, tokenType } from './token-dpop.js'

type RouteDeps = Deps
type Form = Record<string, string>

/** The successful token response (RFC 6749 §5.1). */
interface TokenResponse {
  access_token: string
  token_type: 'Bearer' | 'DPoP'
  expires_in: number
  scope: string
  refresh_token?: string
}

const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/

/** `POST /token` (OAuth 2.1 §3.2): authorization_code, refresh_token, client_credentials. */
export function tokenRoutes(deps: RouteDeps, clients: Clients) {
  const app = new Hono()
  const dpopKeys = createDpopKeyCache()
  // A client_id is public (identical registrations share one, CIMD ids are URLs), so counting
  // every request per client_id let anyone lock a client's users out. Failures are counted per
  // address instead, and a client's own count moves only once the request proved itself.
  const failures = createFailureLimit(deps, {
    name: 'token-failed',
    perMinute: deps.config.tokenRateLimit,
  })
  // Counted per client id, never per credential: a Basic header would put a secret in a key.
  const countClient: CountClient = (clientId) =>
    consumeRate(deps, 'token', sha256(clientId), deps.config.tokenRateLimit)
  app.use('/token', publicCors(['POST']))
  app.post('/token', async (c) => {
    // Hashed: with TRUST_PROXY the address is whatever the proxy in front passed on.
    const address = sha256(clientIp(c, deps.config.trustProxy))
    failures.check(address)
    try {
      const form = await readForm(c)
      const grantType = form.grant_type
      if (!grantType) throw new OAuthError('invalid_request', 'grant_type is missing')
      // Own properties only: `grant_type=constructor` must not reach Object's prototype.
      const handler = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined
      if (!handler)
        throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported`)
      const proof = await dpopAtTokenEndpoint({ ...deps, keyCache: dpopKeys }, c.req.header('dpop'))
      const body = await handler(
        forRequest(deps, c),
        clients,
        c.req.header('authorization'),
        form,
        countClient,
        proof,
      )
      return c.json(body, 200, NO_STORE)
    } catch (error) {
      // The client's mistakes (4xx) count; our own limits and outages (429, 5xx) do not.
      if (error instanceof OAuthError && error.status < 500 && error.status !== 429) {
        await failures.count(address).catch((countError: unknown) => {
          if (!(countError instanceof StoreUnavailableError)) throw countError
        })
      }
      throw error
    }
  })
  app.all('/token', methodNotAllowed(['POST']))
  return app
}

/**
 * Counts one request against the client's own limit; called by a grant once the request has
 * proved itself (a live code or refresh token, or credentials the upstream accepted), so that
 * junk naming a client never counts against it.
 */
type CountClient = (clientId: string) => Promise<void>

type GrantHandler = (
  deps: RouteDeps,
  clients: Clients,
  authorization: string | undefined,
  form: Form,
  countClient: CountClient,
  proof: DpopProof | undefined,
) => Promise<TokenResponse>

const GRANTS: Record<string, GrantHandler> = {
  authorization_code: exchangeCode,
  refresh_token: refreshTokens,
  client_credentials: clientCredentials,
}

function requireGrantType(client: Client, grantType: 'authorization_code' | 'refresh_token') {
  if (!client.grantTypes.includes(grantType)) {
    throw new OAuthError(
      'unauthorized_client',
      `the client is not registered for the ${grantType} grant`,
    )
  }
}

function checkResource(deps: RouteDeps, resource: string | undefined) {
  if (resource !== undefined && !isThisResource(resource, deps.config.resource)) {
    throw new OAuthError('invalid_target', `resource must be ${deps.config.resource}`)
  }
}

/** RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) equals the stored challenge. */
function verifyPkce(verifier: string | undefined, challenge: string) {
  if (!verifier) throw new OAuthError('invalid_request', 'code_verifier is missing')
  if (!CODE_VERIFIER.test(verifier))
    throw new OAuthError('invalid_request', 'code_verifier is not a valid PKCE verifier')
  const computed = createHash('sha256').update(verifier).digest('base64url')
  if (!safeEqual(computed, challenge))
    throw new OAuthError('invalid_grant', 'code_verifier does not match the code_challenge')
}

/** The authorization_code grant (OAuth 2.1 §4.1.3). */
async function exchangeCode(
  deps: RouteDeps,
  clients: Clients,
  authorization: string | undefined,
  form: Form,
  countClient: CountClient,
  proof: DpopProof | undefined,
): Promise<TokenResponse> {
  const client = await authenticateClient(clients, authorization, form)
  requireGrantType(client, 'authorization_code')
  if (!form.code) throw new OAuthError('invalid_request', 'code is missing')
  const code = form.code
  const grantId = await codeGrantId(deps, code)
  if (!grantId)
    throw new OAuthError('invalid_grant', 'the authorization code is invalid or has expired')
  await countClient(client.clientId)
  // Redeemed under the grant's lock, like a replay's revocation: of concurrent redemptions the
  // first to hold the lock redeems and records its tokens on the grant, and every later one is
  // a replay that then revokes them. Redeeming outside the lock let a replay revoke the grant
  // before the winner read it, so that nobody got tokens.
  return withGrantLock(deps, grantId, async () => {
    const redeemed = await redeemCode(deps, code, grantId)
    if (!redeemed)
      throw new OAuthError('invalid_grant', 'the authorization code is invalid or has expired')
    if ('replayedGrantId' in redeemed) {
      await revokeGrant(deps, redeemed.replayedGrantId)
      deps.audit('code.replayed', { client_id: client.clientId, reason: 'its grant is revoked' })
      throw new OAuthError(
        'invalid_grant',
        'the authorization code was already used; the tokens it issued are revoked',
      )
    }
    const { record } = redeemed
    if (record.clientId !== client.clientId)
      throw new OAuthError('invalid_grant', 'the authorization code was issued to another client')
    if (
      (record.redirectUriProvided || form.redirect_uri !== undefined) &&
      form.redirect_uri !== record.redirectUri
    ) {
      throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request')
    }
    verifyPkce(form.code_verifier, record.codeChallenge)
    checkResource(deps, form.resource)
    const grant = await findGrant(deps, record.grantId)
    if (!grant)
      throw new OAuthError('invalid_grant', 'the authorization behind this code was revoked')
    const refresh = client.grantTypes.includes('refresh_token')
      ? issueRefreshToken(deps, grant)
      : undefined
    const issued = await issueTokens(
      deps,
      bindRefreshFamily(refresh?.grant ?? grant, client, Boolean(refresh), proof),
      'authorization_code',
      refresh,
      undefined,
      proof,
    )
    await clients.touch(client)
    return issued
  })
}

/**
 * Mints the access token for a grant, records its jti on the grant and answers, with the
 * refresh token and the records it needs (`writes`) stored in the same step as the grant.
 */
async function issueTokens(
  deps: RouteDeps,
  grant: Grant,
  grantType: string,
  refresh: { readonly token: string; readonly writes?: readonly StoreEntry[] } | undefined,
  scopes: readonly string[] = grant.scopes,
  proof?: DpopProof,
): Promise<TokenResponse> {
  const upstream = await upstreamTokens(deps, grant)
  const access = await mintAccessToken(deps, {
    sub: grant.sub,
    clientId: grant.clientId,
    scopes,
    actor: 'user',
    ...grant.identity,
    upstream: { at: upstream.accessToken, exp: upstream.expiresAt, gid: grant.id },
    upstreamRefreshable: Boolean(upstream.refreshToken),
    jkt: proof?.jkt,
  })
  await saveGrant(
    deps,
    { ...grant, accessTokens: [...grant.accessTokens, { jti: access.jti, exp: access.expiresAt }] },
    refresh?.writes,
  )
  deps.audit('token.issued', {
    grant_type: grantType,
    client_id: grant.clientId,
    sub: grant.sub,
    org: grant.identity.orgCode ?? grant.identity.orgId,
    actor: 'user',
    scopes,
    jti: access.jti,
    flow_id: grant.flowId,
  })
  return {
    access_token: access.token,
    token_type: tokenType(proof),
    expires_in: access.expiresIn,
    scope: scopes.join(' '),
    ...(refresh ? { refresh_token: refresh.token } : {}),
  }
}

/**
 * The refresh_token grant with rotation (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2): the current
 * token rotates, refreshing the upstream token under a lock shared through the store; the token
 * rotated last answers with its successor within the grace period while that successor is
 * unused (a lost response); any other reuse ends the family.
 */
async function refreshTokens(
  deps: RouteDeps,
  clients: Clients,
  authorization: string | undefined,
  form: Form,
  countClient: CountClient,
  proof: DpopProof | undefined,
): Promise<TokenResponse> {
  const client = await authenticateClient(clients, authorization, form)
  requireGrantType(client, 'refresh_token')
  const token = form.refresh_token
  if (!token) throw new OAuthError('invalid_request', 'refresh_token is missing')
  checkResource(deps, form.resource)

  const answer = async (): Promise<TokenResponse> => {
    const found = await lookupRefreshToken(deps, token, client.clientId)
    switch (found.kind) {
      case 'unknown':
        throw new OAuthError('invalid_grant', 'the refresh token is invalid, expired or revoked')
      case 'reused':
        {
          const revoked = await revokeGrant(deps, found.grantId)
          deps.audit('refresh.reuse_detected', {
            client_id: client.clientId,
            sub: revoked?.sub,
            flow_id: revoked?.flowId,
            reason: 'the refresh token family is revoked',
          })
        }
        throw new OAuthError(
          'invalid_grant',
          'the refresh token was already used; the session is revoked',
        )
      case 'grace':
        requireRefreshBinding(found.grant, proof)
        return issueTokens(
          deps,
          found.grant,
          'refresh_token',
          { token: found.successor },
          narrow(found.grant, form.scope),
          proof,
        )
      case 'current': {
        // Checked before anything rotates, so a bad scope costs the client nothing.
        requireRefreshBinding(found.grant, proof)
        const requested = narrow(found.grant, form.scope)
        const refreshed = await refreshGrantUpstream(deps, found.grant)
        // The upstream may back fewer scopes now than at sign-in.
        const scopes = requested.filter((scope) => refreshed.grant.scopes.includes(scope))
        const rotated = await rotateRefreshToken(deps, refreshed.grant, found.hash)
        return issueTokens(deps, rotated.grant, 'refresh_token', rotated, scopes, proof)
      }
    }
  }
  // Concurrent refreshes of one family queue here, on every instance: the first rotates, the
  // rest then find the token rotated and get the grace answer.
  // Every answer that touches a family runs under its lock, so a revocation (reuse, replay,
  // /revoke) and a rotation or grace answer never interleave and resurrect a family.
  const lookup = await lookupRefreshToken(deps, token, client.clientId)
  if (lookup.kind === 'unknown') return answer()
  await countClient(client.clientId)
  const issued = await withGrantLock(
    deps,
    lookup.kind === 'reused' ? lookup.grantId : lookup.grant.id,
    answer,
  )
  await clients.touch(client)
  return issued
}

/** The scopes of a refreshed access token: narrowed on request (RFC 6749 §6), never widened. */
function narrow(grant: Grant, scope: string | undefined): readonly string[] {
  if (scope === undefined) return grant.scopes
  const requested = scope.split(' ').filter(Boolean)
  const extra = requested.find((s) => !grant.scopes.includes(s) && s !== 'offline_access')
  if (extra) throw new OAuthError('invalid_scope', `scope ${extra} was not granted`)
  return requested.filter((s) => s !== 'offline_access')
}

/**
 * The client_credentials grant for agents: the agent's own upstream M2M credentials go to the
 * upstream token endpoint; its token is wrapped like a user's, with `actor: "agent"` and no
 * refresh token. The proxy stores no M2M secret.
 */
async function clientCredentials(
  deps: RouteDeps,
  _clients: Clients,
  authorization: string | undefined,
  form: Form,
  countClient: CountClient,
  proof: DpopProof | undefined,
): Promise<TokenResponse> {
  const credentials = m2mCredentials(authorization, form)
  const allowed = deps.config.m2mAllowedClients
  if (allowed.length && !allowed.includes(credentials.clientId)) {
    deps.audit('token.refused', {
      grant_type: 'client_credentials',
      client_id: credentials.clientId,
      actor: 'agent',
      reason: 'not on M2M_ALLOWED_CLIENTS',
    })
    throw new OAuthError(
      'unauthorized_client',
      'this client may not use the client_credentials grant here',
    )
  }
  checkResource(deps, form.resource)
  let result: Awaited<ReturnType<RouteDeps['upstream']['clientCredentials']>>
  try {
    result = await deps.upstream.clientCredentials({ ...credentials, scope: form.scope })
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error
    if (error.kind === 'unavailable') {
      throw upstreamUnavailable(error, error.retryAfterSeconds)
    }
    deps.audit('token.refused', {
      grant_type: 'client_credentials',
      client_id: credentials.clientId,
      actor: 'agent',
      error: error.code,
      reason: 'the identity provider refused the client credentials',
    })
    if (error.code === 'invalid_client') {
      throw new OAuthError(
        'invalid_client',
        'the identity provider rejected the client credentials',
        {
          status: 401,
          headers: authorization
            ? { 'www-authenticate': 'Basic realm="token", charset="UTF-8"' }
            : {},
        },
      )
    }
    const passed = ['unauthorized_client', 'invalid_scope', 'invalid_target', 'invalid_request']
    throw new OAuthError(
      passed.includes(error.code) ? error.code : 'invalid_request',
      'the identity provider refused the request',
    )
  }
  // Only now is this the agent itself: the upstream accepted its credentials.
  await countClient(credentials.clientId)
  const { identity, tokens } = result
  const refusal = await checkUserPolicy(
    {
      allowedEmailDomains: [],
      allowedOrgCodes: deps.config.allowedOrgCodes,
      requiredPermissions: [],
    },
    identity,
    credentials.clientId,
  )
  // RFC 6749 §5.2: an authenticated client that may not use this grant is unauthorized_client.
  if (refusal) {
    deps.audit('policy.refused', {
      client_id: credentials.clientId,
      sub: identity.sub,
      org: identity.orgCode ?? identity.orgId,
      actor: 'agent',
      reason: refusal,
    })
    throw new OAuthError('unauthorized_client', refusal)
  }
  // The same rule as for users, over what the M2M token carries.
  const requested = (form.scope?.split(' ') ?? deps.config.scopes).filter((scope) =>
    deps.config.scopes.includes(scope),
  )
  const scopes = grantScopes(deps.config, requested, {
    permissions: identity.permissions,
    scopes: identity.scopes ?? tokens.scope?.split(' ').filter(Boolean),
  })
  const actor: Actor = 'agent'
  const access = await mintAccessToken(deps, {
    sub: identity.sub,
    clientId: credentials.clientId,
    scopes,
    actor,
    ...identityClaims(identity),
    upstream: { at: tokens.accessToken, exp: tokens.expiresAt },
    upstreamRefreshable: false,
    jkt: proof?.jkt,
  })
  deps.audit('token.issued', {
    grant_type: 'client_credentials',
    client_id: credentials.clientId,
    sub: identity.sub,
    org: identity.orgCode ?? identity.orgId,
    actor,
    scopes,
    jti: access.jti,
  })
  return {
    access_token: access.token,
    token_type: tokenType(proof),
    expires_in: access.expiresIn,
    scope: scopes.join(' '),
  }
}

/** The agent's M2M credentials, by Basic or in the body (never both). */
function m2mCredentials(
  authorization: string | undefined,
  form: Form,
): { clientId: string; clientSecret: string } {
  if (authorization && /^Basic\b/i.test(authorization)) {
    const basic = basicCredentials(authorization)
    if (!basic)
      throw new OAuthError('invalid_request', 'the Basic authorization header is malformed')
    if (form.client_secret !== undefined)
      throw new OAuthError('invalid_request', 'use one client authentication method')
    return { clientId: basic.id, clientSecret: basic.secret }
  }
  if (form.client_id && form.client_secret)
    return { clientId: form.client_id, clientSecret: form.client_secret }
  throw new OAuthError(
    'invalid_client',
    'client_credentials needs the M2M application’s client_id and client_secret',
    { status: 401 },
  )
}

/**
 * Proves that test/support/upstream.ts behaves like Kinde and like Auth0 for a confidential
 * OIDC client driven exactly as the proxy drives its upstream (openid-client v6).
 */

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRemoteJWKSet, decodeJwt, type JWTPayload, jwtVerify } from 'jose'
import {
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  ClientSecretBasic,
  type Configuration,
  calculatePKCECodeChallenge,
  clientCredentialsGrant,
  discovery,
  fetchUserInfo,
  randomNonce,
  randomPKCECodeVerifier,
  randomState,
  refreshTokenGrant,
} from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from './support/browser.js'
import {
  startUpstream,
  type Upstream,
  type UpstreamFlavor,
  type UpstreamUser,
} from './support/upstream.js'

const CLIENT = { client_id: 'proxy-client', client_secret: 'proxy-secret' }
const M2M = { client_id: 'm2m-client', client_secret: 'm2m-secret' }
const AUDIENCE = 'https://mcp.example.test/api'

interface FlavorCase {
  flavor: UpstreamFlavor
  issuerSuffix: string
  endpoints: Record<string, string>
  refreshScope: string
  users: UpstreamUser[]
  m2m: { org_code?: string; org_id?: string; scope?: string }
}

const CASES: FlavorCase[] = [
  {
    flavor: 'kinde',
    issuerSuffix: '',
    endpoints: {
      authorization_endpoint: '/oauth2/auth',
      token_endpoint: '/oauth2/token',
      jwks_uri: '/.well-known/jwks',
      userinfo_endpoint: '/oauth2/v2/user_profile',
      revocation_endpoint: '/oauth2/revoke',
      end_session_endpoint: '/logout',
    },
    refreshScope: 'offline',
    users: [
      {
        sub: 'kp_alice',
        email: 'alice@example.test',
        name: 'Alice',
        org_code: 'org_alpha',
        permissions: ['read:tools', 'call:tools'],
      },
      {
        sub: 'kp_bob',
        email: 'bob@example.test',
        name: 'Bob',
        org_code: 'org_beta',
        permissions: [],
      },
    ],
    m2m: { org_code: 'org_alpha', scope: 'read:tools' },
  },
  {
    flavor: 'auth0',
    issuerSuffix: '/',
    endpoints: {
      authorization_endpoint: '/authorize',
      token_endpoint: '/oauth/token',
      jwks_uri: '/.well-known/jwks.json',
      userinfo_endpoint: '/userinfo',
      revocation_endpoint: '/oauth/revoke',
    },
    refreshScope: 'offline_access',
    users: [
      {
        sub: 'auth0|alice',
        email: 'alice@example.test',
        name: 'Alice',
        org_id: 'org_Alpha123',
        permissions: ['read:tools'],
      },
      { sub: 'auth0|bob', email: 'bob@example.test', name: 'Bob' },
    ],
    m2m: { org_id: 'org_Alpha123', scope: 'read:tools write:tools' },
  },
]

/** A tiny redirect_uri endpoint that records the callbacks it receives. */
async function startCallbackServer(): Promise<{
  url: string
  next(): Promise<URL>
  close(): Promise<void>
}> {
  const waiting: Array<(url: URL) => void> = []
  const received: URL[] = []
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const resolve = waiting.shift()
    if (resolve) resolve(url)
    else received.push(url)
    res.setHeader('Content-Type', 'text/plain')
    res.end('callback received')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/callback`,
    next: () => {
      const url = received.shift()
      return url ? Promise.resolve(url) : new Promise((resolve) => waiting.push(resolve))
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

describe.each(CASES)('upstream harness: $flavor', (c) => {
  let upstream: Upstream
  let callback: Awaited<ReturnType<typeof startCallbackServer>>
  let config: Configuration

  beforeAll(async () => {
    callback = await startCallbackServer()
    upstream = await startUpstream({
      flavor: c.flavor,
      audience: AUDIENCE,
      client: { ...CLIENT, redirect_uris: [callback.url] },
      m2mClients: [{ ...M2M, ...c.m2m }],
      users: c.users,
    })
    config = await discovery(
      new URL(upstream.issuer),
      CLIENT.client_id,
      CLIENT.client_secret,
      undefined,
      {
        execute: [allowInsecureRequests],
      },
    )
  })

  afterAll(async () => {
    await upstream?.close()
    await callback?.close()
  })

  /** The proxy's login: authorization code + PKCE + `audience`, completed by loginWith. */
  async function login(scope: string, user?: string) {
    const codeVerifier = randomPKCECodeVerifier()
    const state = randomState()
    const nonce = randomNonce()
    const authorizationUrl = buildAuthorizationUrl(config, {
      redirect_uri: callback.url,
      scope,
      audience: AUDIENCE,
      code_challenge: await calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    })
    const redirect = await upstream.loginWith(authorizationUrl.href, user)
    expect(redirect.searchParams.get('error')).toBeNull()
    expect(redirect.searchParams.get('code')).toBeTruthy()
    return authorizationCodeGrant(config, redirect, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
    })
  }

  function m2mConfig(secret: string) {
    return discovery(new URL(upstream.issuer), M2M.client_id, secret, ClientSecretBasic(secret), {
      execute: [allowInsecureRequests],
    })
  }

  it('discovery advertises the flavor issuer and endpoints', () => {
    const metadata = config.serverMetadata()
    expect(upstream.issuer).toBe(`${upstream.url}${c.issuerSuffix}`)
    expect(metadata.issuer).toBe(upstream.issuer)
    for (const [key, path] of Object.entries(c.endpoints)) {
      expect(metadata[key], key).toBe(`${upstream.url}${path}`)
    }
    expect(metadata.scopes_supported).toContain(c.refreshScope)
    expect(metadata.grant_types_supported).toEqual(
      expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials']),
    )
  })

  it('authorization code + PKCE with `audience` yields a validated id_token, a JWT access token and a refresh token', async () => {
    const [alice] = c.users
    const tokens = await login(`openid profile email ${c.refreshScope}`)
    const idClaims = tokens.claims()
    expect(idClaims?.sub).toBe(alice?.sub)
    expect(idClaims?.email).toBe(alice?.email)
    expect(tokens.refresh_token).toBeTruthy()

    const at = decodeJwt(tokens.access_token)
    expect(at.iss).toBe(upstream.issuer)
    expect(at.sub).toBe(alice?.sub)
    expect(at.azp).toBe(CLIENT.client_id)
    expect([at.aud].flat()).toContain(AUDIENCE)
    if (c.flavor === 'kinde') {
      expect(at.aud).toEqual([AUDIENCE])
      expect(at.scp).toEqual(['openid', 'profile', 'email', 'offline'])
      expect(at.scope).toBeUndefined()
      expect(at.org_code).toBe('org_alpha')
      expect(at.permissions).toEqual(['read:tools', 'call:tools'])
      expect(idClaims?.org_codes).toEqual(['org_alpha'])
    } else {
      expect(at.aud).toEqual([AUDIENCE, `${upstream.issuer}userinfo`])
      expect(at.scope).toBe('openid profile email offline_access')
      expect(at.permissions).toEqual(['read:tools'])
      expect(at.org_id).toBe('org_Alpha123')
      expect(idClaims?.org_id).toBe('org_Alpha123')
    }
  })

  it('logs in the user chosen by email', async () => {
    const bob = c.users[1]
    const tokens = await login('openid email', bob?.email)
    expect(tokens.claims()?.sub).toBe(bob?.sub)
    expect(decodeJwt(tokens.access_token).sub).toBe(bob?.sub)
    expect(tokens.refresh_token).toBeUndefined()
  })

  if (c.flavor === 'kinde') {
    it('kinde: `offline_access` (instead of `offline`) yields no refresh token', async () => {
      const tokens = await login('openid profile email offline_access')
      expect(tokens.refresh_token).toBeUndefined()
      expect(decodeJwt(tokens.access_token).scp).toEqual(['openid', 'profile', 'email'])
    })
  }

  it('the refresh grant returns a new JWT access token for the audience', async () => {
    const first = await login(`openid profile email ${c.refreshScope}`)
    const refreshed = await refreshTokenGrant(config, first.refresh_token as string)
    expect(refreshed.access_token).not.toBe(first.access_token)
    const at = decodeJwt(refreshed.access_token)
    expect([at.aud].flat()).toContain(AUDIENCE)
    expect(at.sub).toBe(c.users[0]?.sub)
    expect(refreshed.claims()?.sub).toBe(c.users[0]?.sub)
    if (c.flavor === 'kinde') {
      // Kinde rotates refresh tokens; the old one is then spent.
      expect(refreshed.refresh_token).toBeTruthy()
      expect(refreshed.refresh_token).not.toBe(first.refresh_token)
      expect(at.scp).toEqual(['openid', 'profile', 'email', 'offline'])
      const again = await refreshTokenGrant(config, refreshed.refresh_token as string)
      expect(decodeJwt(again.access_token).org_code).toBe('org_alpha')
    } else {
      expect(at.scope).toBe('openid profile email offline_access')
    }
  })

  it('the userinfo endpoint accepts the JWT access token', async () => {
    const [alice] = c.users
    const tokens = await login(`openid profile email ${c.refreshScope}`)
    const userinfo = await fetchUserInfo(config, tokens.access_token, alice?.sub as string)
    expect(userinfo).toMatchObject({ sub: alice?.sub, email: alice?.email, name: alice?.name })
  })

  it('client_credentials with `audience` yields the flavor M2M token', async () => {
    const tokens = await clientCredentialsGrant(await m2mConfig(M2M.client_secret), {
      audience: AUDIENCE,
    })
    const at = decodeJwt(tokens.access_token)
    expect(at.iss).toBe(upstream.issuer)
    expect(at.azp).toBe(M2M.client_id)
    expect([at.aud].flat()).toEqual([AUDIENCE])
    if (c.flavor === 'kinde') {
      expect(at).not.toHaveProperty('sub')
      expect(at.org_code).toBe('org_alpha')
      expect(at.scp).toEqual(['read:tools'])
    } else {
      expect(at.sub).toBe(`${M2M.client_id}@clients`)
      expect(at.gty).toBe('client-credentials')
      expect(at.scope).toBe('read:tools write:tools')
      expect(at.org_id).toBe('org_Alpha123')
    }
  })

  it('client_credentials with a wrong secret fails with invalid_client (post and basic)', async () => {
    const post = await discovery(
      new URL(upstream.issuer),
      M2M.client_id,
      'wrong-secret',
      undefined,
      {
        execute: [allowInsecureRequests],
      },
    )
    await expect(clientCredentialsGrant(post, { audience: AUDIENCE })).rejects.toMatchObject({
      status: 401,
      error: 'invalid_client',
    })
    // With HTTP Basic the 401 carries a WWW-Authenticate challenge, which openid-client
    // surfaces as WWWAuthenticateChallengeError.
    await expect(
      clientCredentialsGrant(await m2mConfig('wrong-secret'), { audience: AUDIENCE }),
    ).rejects.toMatchObject({
      status: 401,
      cause: [{ scheme: 'basic', parameters: { error: 'invalid_client' } }],
    })
  })

  it('an unknown audience is refused', async () => {
    await expect(
      clientCredentialsGrant(await m2mConfig(M2M.client_secret), {
        audience: 'https://other.example.test',
      }),
    ).rejects.toMatchObject({ error: 'invalid_target' })
  })

  it('access tokens verify against the upstream JWKS', async () => {
    const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri as string))
    const verify = async (token: string): Promise<JWTPayload> =>
      (
        await jwtVerify(token, jwks, {
          issuer: upstream.issuer,
          audience: AUDIENCE,
          algorithms: ['RS256'],
        })
      ).payload
    const user = await login(`openid profile email ${c.refreshScope}`)
    expect((await verify(user.access_token)).sub).toBe(c.users[0]?.sub)
    const m2m = await clientCredentialsGrant(await m2mConfig(M2M.client_secret), {
      audience: AUDIENCE,
    })
    expect((await verify(m2m.access_token)).azp).toBe(M2M.client_id)
  })

  it('short-lived access tokens expire per accessTokenTtlSeconds', async () => {
    const shortLived = await startUpstream({
      flavor: c.flavor,
      audience: AUDIENCE,
      client: { ...CLIENT, redirect_uris: [callback.url] },
      m2mClients: [{ ...M2M, ...c.m2m }],
      accessTokenTtlSeconds: 5,
    })
    try {
      const m2m = await discovery(
        new URL(shortLived.issuer),
        M2M.client_id,
        M2M.client_secret,
        undefined,
        {
          execute: [allowInsecureRequests],
        },
      )
      const tokens = await clientCredentialsGrant(m2m, { audience: AUDIENCE })
      expect(tokens.expires_in).toBe(5)
      const at = decodeJwt(tokens.access_token)
      expect((at.exp ?? 0) - (at.iat ?? 0)).toBe(5)
    } finally {
      await shortLived.close()
    }
  })

  it('the login page works in headless Chromium', async () => {
    const browser = await launchChromium()
    try {
      const state = randomState()
      const authorizationUrl = buildAuthorizationUrl(config, {
        redirect_uri: callback.url,
        scope: `openid profile email ${c.refreshScope}`,
        audience: AUDIENCE,
        code_challenge: await calculatePKCECodeChallenge(randomPKCECodeVerifier()),
        code_challenge_method: 'S256',
        state,
      })
      const page = await browser.newPage()
      await page.goto(authorizationUrl.href)
      const received = callback.next()
      await expect(
        page.getByRole('button', { name: `Sign in as ${c.users[1]?.email}` }).count(),
      ).resolves.toBe(1)
      await page.getByRole('button', { name: 'Sign in as demo user' }).click()
      const redirect = await received
      expect(redirect.pathname).toBe('/callback')
      expect(redirect.searchParams.get('code')).toBeTruthy()
      expect(redirect.searchParams.get('state')).toBe(state)
      await page.waitForURL((url) => url.href.startsWith(callback.url))
    } finally {
      await browser.close()
    }
  })
})

describe('upstream harness: oidc (plain oidc-provider defaults)', () => {
  let upstream: Upstream
  let config: Configuration
  const redirectUri = 'http://127.0.0.1:9/callback' // never contacted: loginWith stops at it

  beforeAll(async () => {
    upstream = await startUpstream({
      flavor: 'oidc',
      client: { ...CLIENT, redirect_uris: [redirectUri] },
      m2mClients: [{ ...M2M, scope: 'read:tools' }],
    })
    config = await discovery(
      new URL(upstream.issuer),
      CLIENT.client_id,
      CLIENT.client_secret,
      undefined,
      {
        execute: [allowInsecureRequests],
      },
    )
  })

  afterAll(async () => {
    await upstream?.close()
  })

  it('serves oidc-provider default routes, offline_access refresh tokens and `scope` strings', async () => {
    expect(upstream.issuer).toBe(upstream.url)
    expect(upstream.audience).toBe('https://api.example.test')
    expect(config.serverMetadata().authorization_endpoint).toBe(`${upstream.url}/auth`)
    expect(config.serverMetadata().token_endpoint).toBe(`${upstream.url}/token`)

    const codeVerifier = randomPKCECodeVerifier()
    const state = randomState()
    const authorizationUrl = buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email offline_access',
      code_challenge: await calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
    })
    const redirect = await upstream.loginWith(authorizationUrl.href)
    const tokens = await authorizationCodeGrant(config, redirect, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
    })
    expect(tokens.claims()?.email).toBe('demo@example.test')
    const at = decodeJwt(tokens.access_token)
    expect(at).toMatchObject({
      aud: upstream.audience,
      client_id: CLIENT.client_id,
      scope: 'openid email offline_access',
    })
    const refreshed = await refreshTokenGrant(config, tokens.refresh_token as string)
    expect(decodeJwt(refreshed.access_token).aud).toBe(upstream.audience)

    const m2m = await discovery(
      new URL(upstream.issuer),
      M2M.client_id,
      M2M.client_secret,
      undefined,
      {
        execute: [allowInsecureRequests],
      },
    )
    const cc = decodeJwt((await clientCredentialsGrant(m2m)).access_token)
    expect(cc).toMatchObject({ sub: M2M.client_id, client_id: M2M.client_id, scope: 'read:tools' })
  })

  it('loginWith returns the error redirect when the request is refused', async () => {
    const authorizationUrl = buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid',
      audience: 'https://unknown.example.test',
      state: 'xyz',
    })
    const redirect = await upstream.loginWith(authorizationUrl.href)
    expect(redirect.searchParams.get('error')).toBe('invalid_target')
    expect(redirect.searchParams.get('state')).toBe('xyz')
  })
})

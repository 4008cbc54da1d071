/**
 * The one upstream client (src/upstream/oidc.ts) against a real OpenID Connect server on
 * loopback that looks like Kinde, Auth0 or a plain OIDC provider, plus real sockets that are
 * closed, silent or answer garbage.
 */
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  calculatePKCECodeChallenge,
  randomNonce,
  randomPKCECodeVerifier,
  randomState,
} from 'openid-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { UpstreamKind, UpstreamSettings } from '../src/config.js'
import { createOidcUpstream } from '../src/upstream/oidc.js'
import { kinde, oidc, upstreamScope } from '../src/upstream/presets.js'
import {
  type Upstream,
  type UpstreamAuthorizationRequest,
  UpstreamError,
} from '../src/upstream/upstream.js'
import { createTestClock } from './support/clock.js'
import { noHang } from './support/hang.js'
import {
  startUpstream,
  type Upstream as TestUpstream,
  type UpstreamUser,
} from './support/upstream.js'

const CLIENT = { client_id: 'proxy-client', client_secret: 'proxy-secret' }
const M2M = { client_id: 'm2m-client', client_secret: 'm2m-secret' }
const AUDIENCE = 'https://mcp.example.test/api'
// Never contacted: loginWith stops at the redirect to the proxy's callback.
const PUBLIC_URL = new URL('http://127.0.0.1:9')
const CALLBACK = 'http://127.0.0.1:9/callback'

interface FlavorCase {
  flavor: 'kinde' | 'auth0'
  authorizationPath: string
  offlineScope: string
  users: UpstreamUser[]
  m2m: { org_code?: string; org_id?: string; scope?: string }
}

const CASES: FlavorCase[] = [
  {
    flavor: 'kinde',
    authorizationPath: '/oauth2/auth',
    offlineScope: 'offline',
    users: [
      {
        sub: 'kp_alice',
        email: 'alice@example.test',
        name: 'Alice',
        org_code: 'org_alpha',
        permissions: ['read:tools', 'call:tools'],
      },
    ],
    m2m: { org_code: 'org_alpha', scope: 'read:tools' },
  },
  {
    flavor: 'auth0',
    authorizationPath: '/authorize',
    offlineScope: 'offline_access',
    users: [
      {
        sub: 'auth0|alice',
        email: 'alice@example.test',
        name: 'Alice',
        org_id: 'org_Alpha123',
        permissions: ['read:tools'],
      },
    ],
    m2m: { org_id: 'org_Alpha123', scope: 'read:tools write:tools' },
  },
]

function newRequest(): UpstreamAuthorizationRequest {
  return { state: randomState(), nonce: randomNonce(), codeVerifier: randomPKCECodeVerifier() }
}

function settingsFor(kind: UpstreamKind, issuer: string): UpstreamSettings {
  return {
    kind,
    issuer: new URL(issuer),
    clientId: CLIENT.client_id,
    clientSecret: CLIENT.client_secret,
    audience: AUDIENCE,
  }
}

/** The user's sign-in at the upstream, as the browser would complete it. */
async function signIn(upstream: Upstream, idp: TestUpstream, scopes = ['profile', 'email']) {
  const request = newRequest()
  const url = await upstream.authorizationUrl(request, scopes)
  const callbackUrl = await idp.loginWith(url.href)
  expect(callbackUrl.searchParams.get('error')).toBeNull()
  return { request, callbackUrl }
}

async function expectUpstreamError(
  promise: Promise<unknown>,
  kind: UpstreamError['kind'],
  code?: string,
): Promise<UpstreamError> {
  const error = await promise.then(
    () => expect.unreachable('the upstream call should have failed'),
    (error: unknown) => error,
  )
  expect(error).toBeInstanceOf(UpstreamError)
  const failure = error as UpstreamError
  expect(failure.kind, failure.message).toBe(kind)
  if (code) expect(failure.code).toBe(code)
  return failure
}

describe.each(CASES)('oidc upstream as $flavor', (c) => {
  let idp: TestUpstream
  let upstream: Upstream
  const clock = createTestClock(Math.floor(Date.now() / 1000))

  beforeAll(async () => {
    idp = await startUpstream({
      flavor: c.flavor,
      audience: AUDIENCE,
      client: { ...CLIENT, redirect_uris: [CALLBACK] },
      m2mClients: [{ ...M2M, ...c.m2m }],
      users: c.users,
    })
    upstream = createOidcUpstream({
      settings: settingsFor(c.flavor, idp.issuer),
      publicUrl: PUBLIC_URL,
      timeoutSeconds: 5,
      clock,
    })
  })

  afterAll(async () => {
    await idp?.close()
  })

  it('builds the authorization URL with audience, PKCE S256, state, nonce and the callback', async () => {
    const request = newRequest()
    const url = await upstream.authorizationUrl(request, ['profile', 'email', 'offline_access'])
    expect(url.origin).toBe(idp.url)
    expect(url.pathname).toBe(c.authorizationPath)
    const params = Object.fromEntries(url.searchParams)
    expect(params).toMatchObject({
      client_id: CLIENT.client_id,
      response_type: 'code',
      redirect_uri: CALLBACK,
      audience: AUDIENCE,
      code_challenge: await calculatePKCECodeChallenge(request.codeVerifier),
      code_challenge_method: 'S256',
      state: request.state,
      nonce: request.nonce,
      // Kinde only issues refresh tokens for `offline`.
      scope: `openid profile email ${c.offlineScope}`,
    })
  })

  it('always asks for openid and offline access', async () => {
    const url = await upstream.authorizationUrl(newRequest(), ['email'])
    expect(url.searchParams.get('scope')).toBe(`openid email ${c.offlineScope}`)
  })

  it('exchanges the code for tokens, a refresh token and the user identity', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    const { tokens, identity } = await upstream.exchangeCode(callbackUrl, request)
    expect(tokens.accessToken).toBeTruthy()
    expect(tokens.refreshToken).toBeTruthy()
    expect(tokens.idToken).toBeTruthy()
    // expires_in (3600 s) counted from the moment the proxy got the answer.
    expect(tokens.expiresAt).toBe(clock.now() + 3600)
    if (c.flavor === 'kinde') {
      // Kinde's ID token names the email without saying whether it is verified.
      expect(identity).toEqual({
        sub: 'kp_alice',
        email: 'alice@example.test',
        name: 'Alice',
        orgCode: 'org_alpha',
        orgCodes: ['org_alpha'],
        permissions: ['read:tools', 'call:tools'],
        scopes: ['openid', 'profile', 'email', 'offline'],
      })
    } else {
      expect(identity).toEqual({
        sub: 'auth0|alice',
        email: 'alice@example.test',
        emailVerified: true,
        name: 'Alice',
        orgId: 'org_Alpha123',
        permissions: ['read:tools'],
        scopes: ['openid', 'profile', 'email', 'offline_access'],
      })
    }
  })

  it('rejects a callback whose state does not match with invalid_grant', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    await expectUpstreamError(
      upstream.exchangeCode(callbackUrl, { ...request, state: randomState() }),
      'rejected',
      'invalid_grant',
    )
  })

  it('rejects an ID token with the wrong nonce with invalid_grant', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    const failure = await expectUpstreamError(
      upstream.exchangeCode(callbackUrl, { ...request, nonce: randomNonce() }),
      'rejected',
      'invalid_grant',
    )
    expect(failure.message).toMatch(/nonce/)
  })

  it('rejects the wrong PKCE verifier with invalid_grant', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    await expectUpstreamError(
      upstream.exchangeCode(callbackUrl, { ...request, codeVerifier: randomPKCECodeVerifier() }),
      'rejected',
      'invalid_grant',
    )
  })

  it('passes on an error the upstream redirected with', async () => {
    const callbackUrl = new URL(CALLBACK)
    const request = newRequest()
    callbackUrl.search = new URLSearchParams({
      error: 'access_denied',
      state: request.state,
      iss: idp.issuer,
    }).toString()
    await expectUpstreamError(
      upstream.exchangeCode(callbackUrl, request),
      'rejected',
      'access_denied',
    )
  })

  it('refreshes, keeping or rotating the refresh token as the upstream does', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    const first = await upstream.exchangeCode(callbackUrl, request)
    const refreshToken = first.tokens.refreshToken as string
    const { tokens, identity } = await upstream.refresh(refreshToken)
    expect(tokens.accessToken).not.toBe(first.tokens.accessToken)
    expect(identity.sub).toBe(first.identity.sub)
    if (c.flavor === 'kinde') {
      // Kinde rotates refresh tokens.
      expect(tokens.refreshToken).toBeTruthy()
      expect(tokens.refreshToken).not.toBe(refreshToken)
      expect(identity.orgCode).toBe('org_alpha')
      const again = await upstream.refresh(tokens.refreshToken as string)
      expect(again.identity.permissions).toEqual(['read:tools', 'call:tools'])
    } else {
      // Auth0 does not (by default): the old one stays valid and is kept.
      expect(tokens.refreshToken).toBe(refreshToken)
      expect(identity.orgId).toBe('org_Alpha123')
      await expect(upstream.refresh(refreshToken)).resolves.toBeTruthy()
    }
  })

  it('rejects a garbage refresh token with invalid_grant', async () => {
    await expectUpstreamError(upstream.refresh('not-a-refresh-token'), 'rejected', 'invalid_grant')
  })

  it("uses an M2M application's own credentials for client_credentials", async () => {
    const { tokens, identity } = await upstream.clientCredentials({
      clientId: M2M.client_id,
      clientSecret: M2M.client_secret,
    })
    expect(tokens.accessToken).toBeTruthy()
    expect(tokens.refreshToken).toBeUndefined()
    if (c.flavor === 'kinde') {
      // Kinde M2M tokens have no `sub`; the application (`azp`) is the subject.
      expect(identity).toEqual({ sub: M2M.client_id, orgCode: 'org_alpha', scopes: ['read:tools'] })
    } else {
      expect(identity).toEqual({
        sub: `${M2M.client_id}@clients`,
        orgId: 'org_Alpha123',
        scopes: ['read:tools', 'write:tools'],
      })
    }
  })

  it('rejects client_credentials with a wrong secret with invalid_client', async () => {
    await expectUpstreamError(
      upstream.clientCredentials({ clientId: M2M.client_id, clientSecret: 'wrong-secret' }),
      'rejected',
      'invalid_client',
    )
  })

  it('reads the userinfo endpoint with the access token', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    const { tokens, identity } = await upstream.exchangeCode(callbackUrl, request)
    const userinfo = await upstream.userinfo(tokens.accessToken)
    expect(userinfo).toMatchObject({ sub: identity.sub, email: 'alice@example.test' })
  })

  it('revokes a refresh token so that it no longer works', async () => {
    const { request, callbackUrl } = await signIn(upstream, idp)
    const { tokens } = await upstream.exchangeCode(callbackUrl, request)
    await expect(upstream.revoke(tokens.accessToken, 'access_token')).resolves.toBeUndefined()
    await expect(
      upstream.revoke(tokens.refreshToken as string, 'refresh_token'),
    ).resolves.toBeUndefined()
    await expectUpstreamError(
      upstream.refresh(tokens.refreshToken as string),
      'rejected',
      'invalid_grant',
    )
  })
})

describe('oidc upstream as a plain OIDC provider', () => {
  let idp: TestUpstream
  let upstream: Upstream

  beforeAll(async () => {
    idp = await startUpstream({
      flavor: 'oidc',
      client: { ...CLIENT, redirect_uris: [CALLBACK] },
      m2mClients: [{ ...M2M, scope: 'read:tools' }],
    })
    upstream = createOidcUpstream({
      settings: { ...settingsFor('oidc', idp.issuer), audience: undefined },
      publicUrl: PUBLIC_URL,
      timeoutSeconds: 5,
    })
  })

  afterAll(async () => {
    await idp?.close()
  })

  it('signs in, refreshes and runs client credentials with standard claims', async () => {
    const request = newRequest()
    const url = await upstream.authorizationUrl(request, ['email'])
    expect(url.pathname).toBe('/auth')
    expect(url.searchParams.has('audience')).toBe(false)
    expect(url.searchParams.get('scope')).toBe('openid email offline_access')
    const { tokens, identity } = await upstream.exchangeCode(await idp.loginWith(url.href), request)
    expect(identity).toEqual({
      sub: 'kp_demo_user',
      email: 'demo@example.test',
      emailVerified: true,
      scopes: ['openid', 'email', 'offline_access'],
    })
    const refreshed = await upstream.refresh(tokens.refreshToken as string)
    expect(refreshed.identity.sub).toBe('kp_demo_user')
    const m2m = await upstream.clientCredentials({
      clientId: M2M.client_id,
      clientSecret: M2M.client_secret,
    })
    expect(m2m.identity).toEqual({ sub: M2M.client_id, scopes: ['read:tools'] })
  })
})

describe('oidc upstream when the upstream misbehaves', () => {
  const servers: Server[] = []

  afterEach(async () => {
    await Promise.all(servers.splice(0).map(closeServer))
  })

  async function serve(listener: RequestListener): Promise<string> {
    const server = createServer(listener)
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  function upstreamAt(
    issuer: string,
    options: { timeoutSeconds?: number; fetch?: typeof fetch } = {},
  ) {
    return createOidcUpstream({
      settings: settingsFor('kinde', issuer),
      publicUrl: PUBLIC_URL,
      timeoutSeconds: options.timeoutSeconds ?? 5,
      fetch: options.fetch,
    })
  }

  it('is unavailable quickly when nothing listens at the issuer', async () => {
    const upstream = upstreamAt(`http://127.0.0.1:${await closedPort()}`)
    const failure = await expectUpstreamError(
      noHang(upstream.authorizationUrl(newRequest(), []), 'discovery'),
      'unavailable',
    )
    // Refused, not timed out: the failure says so, and came without waiting for the timeout.
    expect(failure.message).toMatch(/discovery failed: network error \(ECONNREFUSED\)/)
  })

  it('is unavailable within the timeout when the issuer accepts and never answers', async () => {
    const upstream = upstreamAt(await serve(() => {}), { timeoutSeconds: 0.5 })
    const failure = await expectUpstreamError(
      noHang(upstream.authorizationUrl(newRequest(), []), 'discovery'),
      'unavailable',
    )
    // Ended by the proxy's own deadline, which the failure names.
    expect(failure.message).toMatch(/no answer within 0.5s/)
  })

  it('is unavailable when discovery answers garbage', async () => {
    const issuer = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('not json')
    })
    await expectUpstreamError(upstreamAt(issuer).authorizationUrl(newRequest(), []), 'unavailable')
  })

  it('is unavailable when discovery names another issuer', async () => {
    const issuer = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ issuer: 'https://elsewhere.example.test' }))
    })
    const failure = await expectUpstreamError(
      upstreamAt(issuer).authorizationUrl(newRequest(), []),
      'unavailable',
    )
    expect(failure.message).toMatch(/issuer/)
  })

  describe('behind a real upstream with faults injected into fetch', () => {
    let idp: TestUpstream

    beforeAll(async () => {
      idp = await startUpstream({
        flavor: 'kinde',
        audience: AUDIENCE,
        client: { ...CLIENT, redirect_uris: [CALLBACK] },
        m2mClients: [M2M],
      })
    })

    afterAll(async () => {
      await idp?.close()
    })

    /** Fetch that answers token requests with `fault` and passes everything else through. */
    function tokenFault(fault: (signal: AbortSignal) => Promise<Response>): typeof fetch {
      return (input, init) =>
        String(input).endsWith('/oauth2/token') && init?.signal
          ? fault(init.signal)
          : fetch(input, init)
    }

    it('times out a token request that never completes', async () => {
      const hang = (signal: AbortSignal) =>
        new Promise<Response>((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason), { once: true })
        })
      const upstream = upstreamAt(idp.issuer, { timeoutSeconds: 0.5, fetch: tokenFault(hang) })
      await upstream.authorizationUrl(newRequest(), []) // discovery itself is fine
      const failure = await expectUpstreamError(
        noHang(
          upstream.clientCredentials({ clientId: M2M.client_id, clientSecret: M2M.client_secret }),
          'client credentials',
        ),
        'unavailable',
      )
      // Ended by the proxy's own deadline, which the failure names.
      expect(failure.message).toMatch(/no answer within 0.5s/)
    })

    it('treats 429 as unavailable with its Retry-After', async () => {
      const tooMany = async () =>
        new Response('<html>slow down</html>', {
          status: 429,
          headers: { 'content-type': 'text/html', 'retry-after': '7' },
        })
      const upstream = upstreamAt(idp.issuer, { fetch: tokenFault(tooMany) })
      const failure = await expectUpstreamError(upstream.refresh('any'), 'unavailable')
      expect(failure.retryAfterSeconds).toBe(7)
    })

    it('treats a 503 OAuth error body as unavailable', async () => {
      const down = async () => Response.json({ error: 'temporarily_unavailable' }, { status: 503 })
      const upstream = upstreamAt(idp.issuer, { fetch: tokenFault(down) })
      await expectUpstreamError(upstream.refresh('any'), 'unavailable', 'temporarily_unavailable')
    })
  })

  it('starts without the upstream, fails while it is down, and works once it is up', async () => {
    const port = await closedPort()
    const upstream = upstreamAt(`http://127.0.0.1:${port}`)
    await expectUpstreamError(upstream.authorizationUrl(newRequest(), []), 'unavailable')

    const idp = await startUpstream({
      flavor: 'kinde',
      port,
      audience: AUDIENCE,
      client: { ...CLIENT, redirect_uris: [CALLBACK] },
    })
    try {
      const url = await upstream.authorizationUrl(newRequest(), [])
      expect(url.href.startsWith(`${idp.url}/oauth2/auth?`)).toBe(true)
    } finally {
      await idp.close()
    }
  })

  it('resolves revocation even when the upstream is down', async () => {
    const upstream = upstreamAt(`http://127.0.0.1:${await closedPort()}`)
    await expect(upstream.revoke('token', 'refresh_token')).resolves.toBeUndefined()
  })
})

describe('upstream presets', () => {
  it('translate offline_access and deduplicate scopes', () => {
    expect(upstreamScope(kinde(undefined), ['openid', 'offline_access', 'email', 'email'])).toBe(
      'openid offline email',
    )
    expect(upstreamScope(oidc(undefined), ['offline_access', 'profile'])).toBe(
      'openid offline_access profile',
    )
  })

  it('kinde: name from given and family name, scopes from a scope string', () => {
    expect(
      kinde(undefined).identity(
        { sub: 'kp_1', given_name: 'Ada', family_name: 'Lovelace' },
        { scope: 'openid email' },
      ),
    ).toEqual({ sub: 'kp_1', name: 'Ada Lovelace', scopes: ['openid', 'email'] })
  })

  it.each([
    ['kinde', kinde(undefined)],
    ['oidc', oidc(undefined)],
  ])('%s: reads email_verified only from the token that names the email', (_name, preset) => {
    // A verified ID token without an email does not vouch for the access token's address.
    expect(
      preset.identity({ sub: 'u1', email_verified: true }, { email: 'eve@acme.test' }),
    ).toEqual({ sub: 'u1', email: 'eve@acme.test' })
    expect(
      preset.identity(
        { sub: 'u1', email: 'ada@acme.test', email_verified: false },
        { email: 'other@acme.test', email_verified: true },
      ),
    ).toEqual({ sub: 'u1', email: 'ada@acme.test', emailVerified: false })
  })

  it('has no identity without a subject', () => {
    expect(kinde(undefined).identity(undefined, undefined)).toBeUndefined()
  })
})

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await closeServer(server)
  return port
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

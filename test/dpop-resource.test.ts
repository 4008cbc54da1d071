import { DpopSession } from '@modelcontextprotocol/client'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { type AuthEnv, requireBearer } from '../src/mcp/require-auth.js'
import { createUpstreamTokenSource } from '../src/mcp/upstream-token.js'
import { type AccessTokenParams, mintAccessToken } from '../src/tokens/access-token.js'
import { createAccessTokenVerifier } from '../src/tokens/verifier.js'
import { createTestApp, type TestApp } from './support/app.js'
import { createTestClock } from './support/clock.js'
import { initializeMessage, serveApp } from './support/mcp.js'

const ISSUER = 'https://mcp.example.test'
const MCP = `${ISSUER}/mcp`
const DPOP_ALGS = 'ES256 ES384 RS256 PS256 EdDSA'
const BEARER = `Bearer resource_metadata="${ISSUER}/.well-known/oauth-protected-resource/mcp", scope="openid profile email"`
const challenge = (error: string, description: string) =>
  `${BEARER}, DPoP algs="${DPOP_ALGS}", error="${error}", error_description="${description}"`

/** An app on a clock that starts at the wall clock's second, as the SDK's proofs do. */
async function appAtNow(env: Record<string, string> = {}): Promise<TestApp> {
  return createTestApp({ env, clock: createTestClock(Math.floor(Date.now() / 1000)) })
}

async function mint(t: TestApp, params: Partial<AccessTokenParams> = {}): Promise<string> {
  const { token } = await mintAccessToken(t.deps, {
    sub: 'user-alice',
    clientId: 'client-alice',
    scopes: ['openid'],
    actor: 'user',
    upstream: { at: 'upstream-access-token', exp: t.clock.now() + 3600 },
    upstreamRefreshable: false,
    ...params,
  })
  return token
}

function post(t: TestApp, headers: Record<string, string>, url = MCP) {
  return t.app.request(url, {
    method: 'POST',
    headers: {
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      'mcp-protocol-version': '2025-11-25',
      ...headers,
    },
    body: JSON.stringify(initializeMessage()),
  })
}

describe('DPoP at /mcp, on an injected clock', () => {
  it('accepts a fresh proof and refuses one whose iat left the window, either way', async () => {
    const t = await appAtNow()
    const session = await DpopSession.create()
    const token = await mint(t, { jkt: session.thumbprint })
    const proof = () => session.buildProof({ htm: 'POST', htu: MCP, accessToken: token })

    const fresh = await post(t, { authorization: `DPoP ${token}`, dpop: await proof() })
    expect(fresh.status).toBe(200)

    t.clock.advance(90)
    const stale = await post(t, { authorization: `DPoP ${token}`, dpop: await proof() })
    expect(stale.status).toBe(401)
    expect(stale.headers.get('www-authenticate')).toBe(
      challenge('invalid_dpop_proof', 'the DPoP proof iat is not recent; sign a new proof'),
    )

    t.clock.advance(-180)
    const early = await post(t, { authorization: `DPoP ${token}`, dpop: await proof() })
    expect(early.status).toBe(401)
    expect(await early.json()).toMatchObject({ error: 'invalid_dpop_proof' })
  })

  it('checks the proof on every request, also when the token verification is cached', async () => {
    const t = await appAtNow()
    const session = await DpopSession.create()
    const token = await mint(t, { jkt: session.thumbprint })
    const proof = await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token })
    expect((await post(t, { authorization: `DPoP ${token}`, dpop: proof })).status).toBe(200)
    // Within the verifier's cache TTL: the token is not re-verified, the proof still is.
    const replayed = await post(t, { authorization: `DPoP ${token}`, dpop: proof })
    expect(replayed.status).toBe(401)
    const bare = await post(t, { authorization: `DPoP ${token}` })
    expect(bare.status).toBe(401)
  })

  it('compares htu with PUBLIC_URL, not with the Host the request arrived on', async () => {
    const t = await appAtNow()
    const session = await DpopSession.create()
    const token = await mint(t, { jkt: session.thumbprint })
    // The request reaches the app as http://internal:8080/mcp (behind a reverse proxy).
    const internal = 'http://internal:8080/mcp'
    const forInternal = await session.buildProof({
      htm: 'POST',
      htu: internal,
      accessToken: token,
    })
    const refused = await post(t, { authorization: `DPoP ${token}`, dpop: forInternal }, internal)
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toBe(
      challenge('invalid_dpop_proof', `the DPoP proof htu must be ${MCP}`),
    )
    const forPublic = await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token })
    const accepted = await post(t, { authorization: `DPoP ${token}`, dpop: forPublic }, internal)
    expect(accepted.status).toBe(200)
  })

  it('refuses two DPoP headers', async () => {
    const t = await appAtNow()
    const session = await DpopSession.create()
    const token = await mint(t, { jkt: session.thumbprint })
    const headers = new Headers({
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      authorization: `DPoP ${token}`,
    })
    headers.append('dpop', await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token }))
    headers.append('dpop', await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token }))
    const response = await t.app.request(MCP, {
      method: 'POST',
      headers,
      body: JSON.stringify(initializeMessage()),
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      challenge('invalid_dpop_proof', 'send exactly one DPoP header'),
    )
  })

  it('refuses an unbound token presented with the DPoP scheme', async () => {
    const t = await appAtNow()
    const session = await DpopSession.create()
    const token = await mint(t)
    const response = await post(t, {
      authorization: `DPoP ${token}`,
      dpop: await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token }),
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      challenge('invalid_token', 'this access token is not DPoP-bound; present it as Bearer'),
    )
  })

  it('keeps accepting unbound Bearer tokens, unless DPOP_REQUIRED', async () => {
    const lenient = await appAtNow()
    expect((await post(lenient, { authorization: `Bearer ${await mint(lenient)}` })).status).toBe(
      200,
    )
    const strict = await appAtNow({ DPOP_REQUIRED: 'true' })
    const refused = await post(strict, { authorization: `Bearer ${await mint(strict)}` })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toBe(
      challenge('invalid_token', 'this resource accepts DPoP-bound access tokens only'),
    )
  })
})

describe('DPoP at requireAuth()', () => {
  async function guarded() {
    const t = await appAtNow()
    const deps = { ...t.deps, verifier: createAccessTokenVerifier(t.deps) }
    const app = new Hono<AuthEnv>()
    app.get(
      '/api/me',
      requireBearer({ ...deps, upstreamTokens: createUpstreamTokenSource(deps) }),
      (c) => c.json({ sub: c.get('auth').sub }),
    )
    return { t, app }
  }

  it('lets a bound token through with a proof for GET of this route, and nothing else', async () => {
    const { t, app } = await guarded()
    const session = await DpopSession.create()
    const token = await mint(t, { jkt: session.thumbprint })
    const url = `${ISSUER}/api/me`
    const ok = await app.request(url, {
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await session.buildProof({ htm: 'GET', htu: url, accessToken: token }),
      },
    })
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ sub: 'user-alice' })

    const asBearer = await app.request(url, { headers: { authorization: `Bearer ${token}` } })
    expect(asBearer.status).toBe(401)
    expect(asBearer.headers.get('www-authenticate')).toBe(
      challenge(
        'invalid_token',
        'this access token is DPoP-bound; present it with the DPoP scheme and a proof',
      ),
    )
    const otherRoute = await app.request(url, {
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await session.buildProof({ htm: 'GET', htu: MCP, accessToken: token }),
      },
    })
    expect(otherRoute.status).toBe(401)
    expect(otherRoute.headers.get('www-authenticate')).toBe(
      challenge('invalid_dpop_proof', `the DPoP proof htu must be ${url}`),
    )
  })
})

describe('DPoP in forward mode', () => {
  it('checks the proof, then sends the backend the upstream token as Bearer and no proof', async () => {
    const seen: { authorization?: string; dpop?: string }[] = []
    const backendApp = new Hono()
    backendApp.post('/mcp', (c) => {
      seen.push({ authorization: c.req.header('authorization'), dpop: c.req.header('dpop') })
      return c.json({ jsonrpc: '2.0', id: 1, result: { tools: [] } })
    })
    const backend = await serveApp(backendApp)
    try {
      const t = await createTestApp({
        env: { MCP_UPSTREAM_URL: `${backend.url}/mcp` },
        clock: createTestClock(Math.floor(Date.now() / 1000)),
      })
      const session = await DpopSession.create()
      const token = await mint(t, { jkt: session.thumbprint })
      const proof = await session.buildProof({ htm: 'POST', htu: MCP, accessToken: token })
      const forwarded = await post(t, { authorization: `DPoP ${token}`, dpop: proof })
      expect(forwarded.status).toBe(200)
      expect(seen).toEqual([{ authorization: 'Bearer upstream-access-token', dpop: undefined }])

      const replayed = await post(t, { authorization: `DPoP ${token}`, dpop: proof })
      expect(replayed.status).toBe(401)
      expect(seen).toHaveLength(1)
    } finally {
      await backend.close()
    }
  })
})

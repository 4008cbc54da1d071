import fc from 'fast-check'
import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  SignJWT,
} from 'jose'
import { pino } from 'pino'
import { beforeAll, describe, expect, it } from 'vitest'
import { sha256 } from '../../src/crypto.js'
import { OAuthError } from '../../src/errors.js'
import { authenticateClient } from '../../src/oauth/client-auth.js'
import { type Clients, createClients } from '../../src/oauth/clients.js'
import { mintAccessToken } from '../../src/tokens/access-token.js'
import { dpopAtTokenEndpoint } from '../../src/tokens/dpop.js'
import { createTestApp, type TestApp } from '../support/app.js'
import { createTestClock } from '../support/clock.js'
import { initializeMessage } from '../support/mcp.js'
import { assertWellBehaved, type Exchange, nastyString, runs, sameJws, timed } from './support.js'

// DPoP proofs (RFC 9449 §4.3) and private_key_jwt assertions (RFC 7523 §3) against hostile
// input: byte-level mutations of genuine ones, and claims and headers re-signed by the right
// key but out of bounds. Nothing but the genuine article may pass, and nothing may fail with
// anything but the protocol's own error.

const MCP = 'https://mcp.example.test/mcp'
const TOKEN = 'https://mcp.example.test/token'
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

let t: TestApp
let token: string
let key: { privateKey: CryptoKey; jwk: JWK }
let genuineHeader: Record<string, unknown>

beforeAll(async () => {
  t = await createTestApp({ clock: createTestClock(Math.floor(Date.now() / 1000)) })
  const pair = await generateKeyPair('ES256', { extractable: true })
  key = { privateKey: pair.privateKey, jwk: await exportJWK(pair.publicKey) }
  const { calculateJwkThumbprint } = await import('jose')
  ;({ token } = await mintAccessToken(t.deps, {
    sub: 'user-property',
    clientId: 'client-property',
    scopes: ['openid'],
    actor: 'user',
    upstream: { at: 'upstream-secret-token-never-leaks', exp: t.clock.now() + 3600 },
    upstreamRefreshable: false,
    jkt: await calculateJwkThumbprint(key.jwk),
  }))
  genuineHeader = { alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk }
})

/** A proof by the token's key, with `claims` and `header` replacing the genuine ones. */
function proof(
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT({
    jti: crypto.randomUUID(),
    htm: 'POST',
    htu: MCP,
    iat: Math.floor(t.clock.now()),
    ath: sha256(token),
    ...claims,
  })
    .setProtectedHeader({ ...genuineHeader, ...header } as never)
    .sign(key.privateKey)
}

function mcp(dpop: string | undefined, authorization = `DPoP ${token}`): Promise<Exchange> {
  return timed(() =>
    t.app.request(MCP, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        authorization,
        ...(dpop === undefined ? {} : { dpop }),
      },
      body: JSON.stringify(initializeMessage()),
    }),
  )
}

function assertRefused(ex: Exchange, what: string): void {
  assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets: [token] })
  expect(ex.res.status, `${what}: ${ex.text}`).toBe(401)
  expect(ex.res.headers.get('www-authenticate'), what).toMatch(
    /, DPoP algs="ES256 ES384 RS256 PS256 EdDSA", error="(invalid_token|invalid_dpop_proof)"/,
  )
}

describe('DPoP proofs at /mcp against hostile input', () => {
  it('accepts the genuine proof (the properties below would be vacuous otherwise)', async () => {
    const ex = await mcp(await proof())
    expect(ex.res.status).toBe(200)
  })

  it('refuses every byte-level change of a genuine proof, and any string at all', async () => {
    const genuine = await proof()
    const mutation = fc.oneof(
      fc
        .tuple(fc.constantFrom(0, 1, 2), fc.nat(), fc.constantFrom(...'AQgw_-0z.!*~+/= '))
        .map(([s, at, c]) => {
          const parts = genuine.split('.')
          const part = parts[s] ?? ''
          const i = at % Math.max(1, part.length)
          parts[s] = part.slice(0, i) + c + part.slice(i + 1)
          return parts.join('.')
        }),
      fc.integer({ min: 0, max: genuine.length - 1 }).map((n) => genuine.slice(0, n)),
      nastyString,
    )
    await fc.assert(
      fc.asyncProperty(
        mutation.filter((candidate) => !sameJws(candidate, genuine)),
        async (candidate) => {
          // Headers cannot carry every string; what the platform refuses never arrives.
          if (!/^[\t\x20-\x7e]*$/.test(candidate)) return
          assertRefused(await mcp(candidate), candidate.slice(0, 60))
        },
      ),
      runs(150),
    )
  })

  it('refuses proofs signed by the right key whose claims or header are out of bounds', async () => {
    const now = Math.floor(t.clock.now())
    const claim = fc.oneof(
      fc.record({ htm: fc.constantFrom('GET', 'post', 'DELETE', '', 1, null, ['POST']) }),
      fc.record({
        htu: fc.constantFrom(
          'https://mcp.example.test/mcp/',
          'https://mcp.example.test/MCP',
          'https://mcp.example.test:8443/mcp',
          'http://mcp.example.test/mcp',
          'https://evil.example/mcp',
          'https://mcp.example.test.evil.example/mcp',
          'https://user@evil.example/mcp',
          '/mcp',
          'mcp.example.test/mcp',
          '',
          'not a url',
          42,
          null,
        ),
      }),
      fc.record({
        iat: fc.oneof(
          fc.constantFrom(now - 61, now + 61, 0, -1, 1e300, Number.NaN, `${now}`, null),
          fc.integer().filter((n) => Math.abs(n - now) > 60),
        ),
      }),
      fc.record({ jti: fc.constantFrom('', 1, null, {}, 'x'.repeat(300)) }),
      fc.record({ ath: fc.constantFrom('', sha256('another token'), 1, null, token) }),
      fc.constantFrom(
        { jti: undefined },
        { htm: undefined },
        { htu: undefined },
        { iat: undefined },
      ),
    )
    const header = fc.oneof(
      fc.constant({}),
      fc.record({
        typ: fc.constantFrom('JWT', 'at+jwt', 'DPoP+JWT ', 'dpop+jwt;', '', undefined),
      }),
      fc.record({ jwk: fc.constantFrom(undefined, null, 'jwk', {}, { kty: 'oct', k: 'AAAA' }) }),
    )
    await fc.assert(
      fc.asyncProperty(claim, header, async (claims, extra) => {
        const candidate = await proof(claims, extra).catch(() => undefined)
        if (candidate === undefined) return // jose refuses to sign it: nobody could send it
        const typ = decodeProtectedHeader(candidate).typ
        const c = decodeJwt(candidate)
        // Re-signing may land on something valid (e.g. typ in another case): skip those.
        if (
          JSON.stringify(extra) === '{}' &&
          c.htm === 'POST' &&
          c.htu === MCP &&
          typeof c.iat === 'number' &&
          Math.abs(c.iat - now) <= 60 &&
          typeof c.jti === 'string' &&
          c.jti.length > 0 &&
          c.jti.length <= 256 &&
          c.ath === sha256(token) &&
          typeof typ === 'string' &&
          typ.toLowerCase() === 'dpop+jwt'
        ) {
          return
        }
        assertRefused(await mcp(candidate), JSON.stringify({ claims, extra }).slice(0, 120))
      }),
      runs(120),
    )
  })

  it('takes the DPoP scheme in any case, and refuses the token in any other form', async () => {
    const cases: [string, number][] = [
      [`dpop ${token}`, 200],
      [`DPOP ${token}`, 200],
      [`Bearer ${token}`, 401],
      [`DPoP ${token}x`, 401],
      [`DPoP ${token.slice(0, -2)}`, 401],
      [`DPoP  ${token}`, 200],
      [`DPoP,${token}`, 401],
    ]
    for (const [authorization, status] of cases) {
      const ex = await mcp(await proof(), authorization)
      expect(ex.res.status, authorization.slice(0, 12)).toBe(status)
    }
  })
})

describe('DPoP proofs at /token against hostile input', () => {
  it('fails only with invalid_dpop_proof, whatever the header holds', async () => {
    await fc.assert(
      fc.asyncProperty(nastyString, async (header) => {
        const error = await dpopAtTokenEndpoint(t.deps, header).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(OAuthError)
        expect((error as OAuthError).code).toBe('invalid_dpop_proof')
        expect((error as OAuthError).status).toBe(400)
      }),
      runs(200),
    )
    const genuine = await new SignJWT({
      jti: crypto.randomUUID(),
      htm: 'POST',
      htu: TOKEN,
      iat: Math.floor(t.clock.now()),
    })
      .setProtectedHeader(genuineHeader as never)
      .sign(key.privateKey)
    expect(await dpopAtTokenEndpoint(t.deps, genuine)).toEqual({ jkt: expect.any(String) })
  })
})

describe('private_key_jwt assertions against hostile input', () => {
  let clients: Clients
  let signer: CryptoKey
  const CLIENT = 'static-pkj'

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true })
    signer = pair.privateKey
    const { config } = await createTestApp({
      env: {
        STATIC_CLIENTS: JSON.stringify([
          {
            client_id: CLIENT,
            redirect_uris: ['https://app.example.test/cb'],
            jwks: { keys: [await exportJWK(pair.publicKey)] },
          },
        ]),
      },
    })
    clients = createClients({ ...t.deps, config, logger: pino({ level: 'silent' }) })
  })

  const assertion = (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(t.clock.now())
    return new SignJWT({
      iss: CLIENT,
      sub: CLIENT,
      aud: 'https://mcp.example.test',
      jti: crypto.randomUUID(),
      exp: now + 60,
      ...claims,
    })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(signer)
  }

  const authenticate = (client_assertion: string, client_id?: string) =>
    authenticateClient(clients, undefined, {
      client_id,
      client_assertion,
      client_assertion_type: JWT_BEARER,
    }).then(
      () => 'authenticated' as const,
      (error: unknown) => error,
    )

  it('authenticates the genuine assertion once', async () => {
    const genuine = await assertion()
    expect(await authenticate(genuine)).toBe('authenticated')
    expect(await authenticate(genuine)).toMatchObject({ code: 'invalid_client', status: 401 })
  })

  it('refuses every mutation and every stray string with invalid_client or invalid_request', async () => {
    const genuine = await assertion()
    const mutation = fc.oneof(
      fc
        .tuple(fc.constantFrom(0, 1, 2), fc.nat(), fc.constantFrom(...'AQgw_-0z.!'))
        .map(([s, at, c]) => {
          const parts = genuine.split('.')
          const part = parts[s] ?? ''
          const i = at % Math.max(1, part.length)
          parts[s] = part.slice(0, i) + c + part.slice(i + 1)
          return parts.join('.')
        }),
      nastyString,
    )
    await fc.assert(
      fc.asyncProperty(
        mutation.filter((candidate) => !sameJws(candidate, genuine)),
        fc.constantFrom(undefined, CLIENT, 'other'),
        async (candidate, clientId) => {
          const error = await authenticate(candidate, clientId)
          expect(error).toBeInstanceOf(OAuthError)
          expect(['invalid_client', 'invalid_request']).toContain((error as OAuthError).code)
        },
      ),
      runs(150),
    )
  })

  it('refuses assertions by the right key with claims out of bounds', async () => {
    const now = Math.floor(t.clock.now())
    const claims = fc.oneof(
      fc.record({ iss: fc.constantFrom('other', '', 1, null) }),
      fc.record({ sub: fc.constantFrom('other', '', 1, null) }),
      fc.record({
        aud: fc.constantFrom(
          'https://mcp.example.test/mcp',
          'https://evil.example',
          'https://mcp.example.test/',
          [],
          null,
        ),
      }),
      fc.record({
        exp: fc.oneof(
          fc.constantFrom(now - 100, now + 601, 1e300, '9999999999', null),
          fc.integer({ min: now + 700 }),
        ),
      }),
      fc.record({ jti: fc.constantFrom('', 1, null, 'x'.repeat(300)) }),
      fc.constantFrom({ exp: undefined }, { jti: undefined }, { aud: undefined }),
    )
    await fc.assert(
      fc.asyncProperty(claims, async (extra) => {
        const candidate = await assertion(extra).catch(() => undefined)
        if (candidate === undefined) return
        const error = await authenticate(candidate)
        expect(error, JSON.stringify(extra)).toBeInstanceOf(OAuthError)
        expect((error as OAuthError).code).toBe('invalid_client')
      }),
      runs(100),
    )
  })
})

import { createHmac, generateKeyPairSync, KeyObject, sign } from 'node:crypto'
import fc from 'fast-check'
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { mintAccessToken } from '../../src/tokens/access-token.js'
import type { KeySet } from '../../src/tokens/keys.js'
import { seal } from '../../src/tokens/seal.js'
import { createTestApp, type TestApp } from '../support/app.js'
import { initializeMessage, serveApp, toolCallMessage } from '../support/mcp.js'
import {
  assertWellBehaved,
  contentType,
  type Exchange,
  headerValue,
  method,
  nastyString,
  runs,
  sameJws,
  timed,
} from './support.js'

// The bearer gate of /mcp (RFC 6750, RFC 9068, RFC 8725) against forged and tampered access
// tokens, and the MCP endpoint behind it against hostile bodies, in-process. Tokens are built
// from a genuine one: tampered bytes, forged headers (none, HS256 with the public key, foreign
// keys, injected kid/jwk), claims re-signed with the proxy's own key but out of bounds.

const UPSTREAM_SECRET = 'upstream-access-token-that-must-never-leak'

let t: TestApp
/** The same proxy (store, keys, clock) with stateless MCP sessions. */
let stateless: TestApp
let keys: KeySet
let valid: string
let validHeader: Record<string, unknown>
let validClaims: Record<string, unknown>
let attacker: { privateKey: KeyObject; jwk: Record<string, unknown> }
let rsaPrivatePem: string
let secrets: string[]
/** An upstream token sealed with the proxy's key, expired, of a grant that does not exist. */
let expiredUpstream: string

beforeAll(async () => {
  t = await createTestApp()
  stateless = await createTestApp({
    store: t.store,
    clock: t.clock,
    env: { MCP_SESSIONS: 'stateless' },
  })
  keys = await t.deps.keys.current()
  ;({ token: valid } = await mintAccessToken(t.deps, {
    sub: 'user-property',
    clientId: 'client-property',
    scopes: ['openid', 'profile'],
    actor: 'user',
    email: 'property@example.test',
    upstream: { at: UPSTREAM_SECRET, exp: t.clock.now() + 3600 },
    upstreamRefreshable: false,
  }))
  validHeader = decodeProtectedHeader(valid) as Record<string, unknown>
  validClaims = decodeJwt(valid) as Record<string, unknown>
  const pair = await generateKeyPair('ES256', { extractable: true })
  attacker = {
    privateKey: KeyObject.from(pair.privateKey),
    jwk: { ...(await exportJWK(pair.publicKey)) },
  }
  rsaPrivatePem = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString()
  secrets = [UPSTREAM_SECRET, valid]
  expiredUpstream = await seal(t.deps.keys, {
    at: UPSTREAM_SECRET,
    exp: t.clock.now() - 10,
    gid: 'no-such-grant',
  })
})

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/** ES256 over `header.payload` with a WebCrypto key (the JWS r||s form). */
function es256(input: string, key: KeyObject): string {
  return sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString(
    'base64url',
  )
}

function mcp(
  token: string | undefined,
  init: Omit<RequestInit, 'headers'> & { headers?: Record<string, string> } = {},
  target: TestApp = t,
) {
  const headers: Record<string, string> = {
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    ...init.headers,
  }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  return timed(() =>
    target.app.request('https://mcp.example.test/mcp', {
      method: 'POST',
      body: JSON.stringify(initializeMessage()),
      ...init,
      headers,
    }),
  )
}

/** A refusal of the gate: 401 `invalid_token`. */
function assertRefused(ex: Exchange, description: string): void {
  assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets })
  expect(ex.res.status, `${description}: ${ex.text}`).toBe(401)
  expect(JSON.parse(ex.text).error).toBe('invalid_token')
}

/** Claims of odd types or values a token signed by the proxy could carry; none is a defect. */
const WEIRD: Record<string, (c: Record<string, unknown>) => void> = {
  subObject: (c) => {
    c.sub = { id: 1 }
  },
  clientIdNumber: (c) => {
    c.client_id = 7
  },
  scopeArray: (c) => {
    c.scope = ['openid', 'admin']
  },
  actorAgent: (c) => {
    c.actor = 'agent'
  },
  permissionsString: (c) => {
    c.permissions = 'admin'
  },
  orgCodes: (c) => {
    c.org_codes = [1, null, 'org']
  },
  hugeExp: (c) => {
    c.exp = 1e300
  },
  uptExpired: (c) => {
    c.upt = expiredUpstream
  },
  emailControl: (c) => {
    c.email = 'a\u0000b\r\nc'
  },
}

describe('the bearer gate against tampered tokens', () => {
  it('lets the genuine token through (the properties below would be vacuous otherwise)', async () => {
    const ex = await mcp(valid)
    assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets })
    expect(ex.res.status).toBe(200)
  })

  it('refuses every byte-level change of a genuine token', async () => {
    const segment = fc.constantFrom(0, 1, 2)
    const mutation = fc.oneof(
      fc.tuple(segment, fc.nat(), fc.constantFrom(...'AQgw_-0z.!$*~+/= ')).map(([s, at, c]) => {
        const parts = valid.split('.')
        const part = parts[s] ?? ''
        const i = at % Math.max(1, part.length)
        parts[s] = part.slice(0, i) + c + part.slice(i + 1)
        return parts.join('.')
      }),
      fc.tuple(segment, fc.nat()).map(([s, at]) => {
        const parts = valid.split('.')
        const part = parts[s] ?? ''
        parts[s] = part.slice(0, at % Math.max(1, part.length))
        return parts.join('.')
      }),
      fc.integer({ min: 1, max: valid.length - 1 }).map((n) => valid.slice(0, n)),
      fc.constantFrom(
        `${valid}.`,
        `${valid}.e30`,
        `${valid}..`,
        `e30.${valid}`,
        valid.split('.').reverse().join('.'),
        valid.split('.').slice(0, 2).join('.'),
        `${valid.split('.').slice(0, 2).join('.')}.`,
        valid.replaceAll('.', '..'),
        valid.toUpperCase(),
        valid.replace(/-/g, '+').replace(/_/g, '/'),
        `${valid}==`,
        `${valid}${'A'.repeat(9000)}`,
        `${valid.split('.')[0]}.${b64({ ...validClaims, pad: 'x'.repeat(9000) })}.${valid.split('.')[2]}`,
      ),
    )
    await fc.assert(
      fc.asyncProperty(
        mutation.filter((token) => !sameJws(token, valid)),
        async (token) => assertRefused(await mcp(token), token.slice(0, 80)),
      ),
      runs(250),
    )
  })

  it('refuses forged headers: none, HS256 keyed with the public key, foreign and embedded keys', async () => {
    const forgery = fc.record({
      alg: fc.constantFrom('none', 'None', 'NONE', 'HS256', 'RS256', 'ES256', 'ES384', 'EdDSA', ''),
      signer: fc.constantFrom('none', 'hs256-jwk', 'hs256-x', 'rs256', 'attacker', 'copied'),
      kid: fc.constantFrom<unknown>(
        'ours',
        undefined,
        '../../../../dev/null',
        "' OR '1'='1",
        'x'.repeat(5000),
        42,
        { kid: 'ours' },
        ['ours'],
        null,
      ),
      typ: fc.constantFrom<unknown>(
        'at+jwt',
        'JWT',
        'at+JWT',
        'application/at+jwt',
        undefined,
        'jwe',
      ),
      extra: fc.constantFrom<Record<string, unknown>>(
        {},
        { jwk: 'attacker' },
        { jku: 'https://evil.example/jwks.json' },
        { x5u: 'https://evil.example/cert.pem' },
        { crit: ['exp'], exp: 0 },
        { b64: false, crit: ['b64'] },
        { zip: 'DEF' },
      ),
      claims: fc.constantFrom<Record<string, unknown>>(
        {},
        { sub: 'admin', scope: 'openid profile admin' },
      ),
    })
    await fc.assert(
      fc.asyncProperty(forgery, async (f) => {
        const header: Record<string, unknown> = { alg: f.alg, typ: f.typ }
        header.kid = f.kid === 'ours' ? validHeader.kid : f.kid
        for (const [k, v] of Object.entries(f.extra))
          header[k] = v === 'attacker' ? attacker.jwk : v
        const input = `${b64(header)}.${b64({ ...validClaims, ...f.claims })}`
        const signature =
          f.signer === 'none'
            ? ''
            : f.signer === 'hs256-jwk'
              ? createHmac('sha256', JSON.stringify(keys.signing.publicJwk))
                  .update(input)
                  .digest('base64url')
              : f.signer === 'hs256-x'
                ? createHmac('sha256', String(keys.signing.publicJwk.x))
                    .update(input)
                    .digest('base64url')
                : f.signer === 'rs256'
                  ? (await import('node:crypto'))
                      .sign('sha256', Buffer.from(input), rsaPrivatePem)
                      .toString('base64url')
                  : f.signer === 'attacker'
                    ? es256(input, attacker.privateKey)
                    : (valid.split('.')[2] ?? '')
        assertRefused(await mcp(`${input}.${signature}`), JSON.stringify(header).slice(0, 200))
      }),
      runs(250),
    )
  })

  it('refuses tokens signed with the proxy’s own key whose claims are out of bounds', async () => {
    const now = t.clock.now()
    // Each defect alone makes the token invalid here; a token carries one or more.
    const defects: Record<
      string,
      (h: Record<string, unknown>, c: Record<string, unknown>) => void
    > = {
      audOther: (_, c) => {
        c.aud = 'https://evil.example/mcp'
      },
      audArray: (_, c) => {
        c.aud = ['https://evil.example/mcp', 'https://other.example']
      },
      audMissing: (_, c) => {
        delete c.aud
      },
      issOther: (_, c) => {
        c.iss = 'https://evil.example'
      },
      issMissing: (_, c) => {
        delete c.iss
      },
      issSlash: (_, c) => {
        c.iss = `${String(c.iss)}/`
      },
      expPast: (_, c) => {
        c.exp = now - 1
      },
      expNow: (_, c) => {
        c.exp = now
      },
      expMissing: (_, c) => {
        delete c.exp
      },
      expString: (_, c) => {
        c.exp = String(now + 3600)
      },
      nbfFuture: (_, c) => {
        c.nbf = now + 600
      },
      iatString: (_, c) => {
        c.iat = 'yesterday'
      },
      subMissing: (_, c) => {
        delete c.sub
      },
      jtiMissing: (_, c) => {
        delete c.jti
      },
      clientIdMissing: (_, c) => {
        delete c.client_id
      },
      iatMissing: (_, c) => {
        delete c.iat
      },
      uptMissing: (_, c) => {
        delete c.upt
      },
      uptGarbage: (_, c) => {
        c.upt = 'e30.e30.e30.e30.e30'
      },
      uptNumber: (_, c) => {
        c.upt = 42
      },
      typJwt: (h) => {
        h.typ = 'JWT'
      },
      typMissing: (h) => {
        delete h.typ
      },
      kidMissing: (h) => {
        delete h.kid
      },
      kidUnknown: (h) => {
        h.kid = 'not-a-kid-of-ours'
      },
    }
    await fc.assert(
      fc.asyncProperty(
        fc.subarray(Object.keys(defects), { minLength: 1, maxLength: 3 }),
        fc.subarray(Object.keys(WEIRD), { maxLength: 3 }),
        async (chosen, oddities) => {
          const header: Record<string, unknown> = { ...validHeader }
          const claims: Record<string, unknown> = { ...validClaims }
          for (const name of oddities) WEIRD[name]?.(claims)
          for (const name of chosen) defects[name]?.(header, claims)
          const input = `${b64(header)}.${b64(claims)}`
          const token = `${input}.${es256(input, keys.signing.privateKey)}`
          assertRefused(await mcp(token), chosen.join(', '))
        },
      ),
      runs(200),
    )
  })

  it('never fails on odd but well-signed claims, and keeps the upstream token to itself', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom(
            'sub',
            'client_id',
            'scope',
            'actor',
            'email',
            'org_code',
            'org_codes',
            'org_id',
            'permissions',
            'jti',
          ),
          fc.oneof(nastyString, fc.jsonValue({ maxDepth: 2 })),
          { maxKeys: 4 },
        ),
        fc.subarray(Object.keys(WEIRD), { maxLength: 3 }),
        fc.constantFrom('initialize', 'whoami'),
        async (changes, oddities, call) => {
          const claims: Record<string, unknown> = { ...validClaims, ...changes }
          for (const name of oddities) WEIRD[name]?.(claims)
          const input = `${b64(validHeader)}.${b64(claims)}`
          const token = `${input}.${es256(input, keys.signing.privateKey)}`
          const body = call === 'initialize' ? initializeMessage() : toolCallMessage('whoami')
          // Stateless, so that whoami runs without an initialize first.
          const ex = await mcp(token, { body: JSON.stringify(body) }, stateless)
          assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets: [UPSTREAM_SECRET] })
        },
      ),
      runs(150),
    )
  })
})

describe('regressions the properties found', () => {
  it.each([
    ['sub', { toString: {} }],
    ['client_id', { valueOf: 1, toString: 'x' }],
    ['jti', ['a', 'b']],
  ])(
    'refuses a well-signed token whose %s is not a string with invalid_token, not a 500',
    async (claim, value) => {
      const input = `${b64(validHeader)}.${b64({ ...validClaims, [claim]: value })}`
      const token = `${input}.${es256(input, keys.signing.privateKey)}`
      const ex = await mcp(token)
      assertRefused(ex, claim)
      expect(JSON.parse(ex.text).error_description).toBe(
        `the access token's ${claim} claim is not valid here`,
      )
    },
  )
})

describe('/mcp with hostile requests', () => {
  it('answers a missing or malformed Authorization header with a bare challenge', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          headerValue,
          headerValue.map((v) => `Bearer ${v}`),
          fc.constantFrom(
            'Bearer',
            'Bearer ',
            'bearer  ',
            'Basic x',
            `Bearer ${valid} ${valid}`,
            `Bearer  ${valid},`,
            `Token ${valid}`,
          ),
        ),
        method,
        async (authorization, verb) => {
          const ex = await timed(() =>
            t.app.request('https://mcp.example.test/mcp', {
              method: verb,
              headers: { authorization },
              body: verb === 'GET' || verb === 'HEAD' ? undefined : '{}',
            }),
          )
          assertWellBehaved(ex, { endpoint: 'mcp', method: verb, secrets })
          if (verb !== 'OPTIONS') expect(ex.res.status).toBe(401)
        },
      ),
      runs(200),
    )
  })

  it('never fails on any body, content type, method or MCP header behind a valid token', async () => {
    const rpc = fc.record(
      {
        jsonrpc: fc.constantFrom('2.0', '1.0', 2),
        id: fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.jsonValue({ maxDepth: 1 })),
        method: fc.oneof(
          fc.constantFrom(
            'initialize',
            'tools/list',
            'tools/call',
            'ping',
            'notifications/initialized',
            'resources/list',
            '__proto__',
          ),
          nastyString,
        ),
        params: fc.oneof(
          fc.record({
            name: fc.constantFrom('whoami', 'upstream_userinfo', 'nope', '__proto__'),
            arguments: fc.jsonValue({ maxDepth: 2 }),
          }),
          fc.jsonValue({ maxDepth: 2 }),
        ),
      },
      { requiredKeys: [] },
    )
    const body = fc.oneof(
      rpc.map((m) => JSON.stringify(m)),
      fc.array(rpc, { maxLength: 4 }).map((m) => JSON.stringify(m)),
      fc.json({ maxDepth: 3 }),
      nastyString,
      fc.constantFrom('', '[', '{"jsonrpc":"2.0"', '[]', `[${'['.repeat(5000)}`),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ weight: 4, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: method }),
        fc.oneof(
          { weight: 3, arbitrary: fc.constant('application/json') },
          { weight: 1, arbitrary: contentType },
        ),
        body,
        fc.record(
          {
            accept: fc.oneof(
              fc.constantFrom(
                'application/json, text/event-stream',
                'text/event-stream',
                'application/json',
                '*/*',
              ),
              headerValue,
            ),
            'mcp-session-id': fc.oneof(fc.uuid(), headerValue),
            'mcp-protocol-version': fc.oneof(
              fc.constantFrom('2025-11-25', '2025-06-18', '1999-01-01'),
              headerValue,
            ),
            'last-event-id': headerValue,
            origin: fc.oneof(
              fc.constantFrom(
                'https://mcp.example.test',
                'http://localhost:6274',
                'https://evil.example',
                'null',
              ),
              headerValue,
            ),
          },
          { requiredKeys: [] },
        ),
        async (verb, type, payload, headers) => {
          const all: Record<string, string> = { ...headers, authorization: `Bearer ${valid}` }
          if (type !== undefined) all['content-type'] = type
          const ex = await timed(() =>
            t.app.request('https://mcp.example.test/mcp', {
              method: verb,
              headers: all,
              body: verb === 'GET' || verb === 'HEAD' ? undefined : payload,
            }),
          )
          // GET opens an event stream that stays open: its headers are the answer.
          assertWellBehaved(ex, { endpoint: 'mcp', method: verb, secrets: [UPSTREAM_SECRET] })
        },
      ),
      runs(200),
    )
  })
})

describe('the /mcp body limit (1 MiB)', () => {
  const big = JSON.stringify({ ...initializeMessage(), pad: 'x'.repeat(1024 * 1024) })

  it('answers 413 to a JSON body over 1 MiB, declared or not', async () => {
    for (const headers of [{}, { 'content-length': '100' }] as Record<string, string>[]) {
      const ex = await mcp(valid, { body: big, headers })
      assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets })
      expect(ex.res.status).toBe(413)
      expect(JSON.parse(ex.text)).toEqual({
        error: 'invalid_request',
        error_description: 'the request body exceeds 1048576 bytes',
      })
    }
  })

  it('refuses an oversized body without a token before reading it', async () => {
    const ex = await mcp(undefined, { body: big })
    assertWellBehaved(ex, { endpoint: 'mcp', method: 'POST', secrets })
    expect(ex.res.status).toBe(401)
  })

  it('lets a client over a real socket read the 413', async () => {
    const server = await serveApp(t.app)
    try {
      const res = await fetch(`${server.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${valid}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: `${big}${'x'.repeat(3 * 1024 * 1024)}`,
      })
      expect(res.status).toBe(413)
      expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
    } finally {
      await server.close()
    }
  })
})

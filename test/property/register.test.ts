import { connect } from 'node:net'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { createTestApp, type TestApp } from '../support/app.js'
import { HANG_MS } from '../support/hang.js'
import { serveApp } from '../support/mcp.js'
import {
  assertWellBehaved,
  binaryBody,
  chunks,
  contentType,
  type Exchange,
  headerValue,
  isSafeRegisteredRedirect,
  method,
  nastyString,
  redirectCandidate,
  runs,
  timed,
} from './support.js'

// POST /register (RFC 7591) under hostile input, in-process. The rate limit is off so the
// properties explore registration itself rather than the 429 after 120 requests.

let t: TestApp
beforeAll(async () => {
  t = await createTestApp({ env: { REGISTER_RATE_LIMIT: '0' } })
})

function send(init: {
  method?: string
  body?: string | Uint8Array
  headers?: Record<string, string | undefined>
}): Promise<Exchange> {
  const headers = new Headers()
  for (const [name, value] of Object.entries(init.headers ?? {}))
    if (value !== undefined) headers.set(name, value)
  const verb = init.method ?? 'POST'
  return timed(() =>
    t.app.request('/register', {
      method: verb,
      headers,
      body: verb === 'GET' || verb === 'HEAD' ? undefined : init.body,
    }),
  )
}

/** Every client secret issued so far: no later answer may carry one. */
const issued = new Set<string>()

/** Checks a 201 answer against RFC 7591 §3.2.1 and the safety of what was registered. */
function assertRegistration(ex: Exchange): void {
  const body = JSON.parse(ex.text) as Record<string, unknown>
  if (typeof body.client_secret === 'string') issued.add(body.client_secret)
  expect(body.client_id).toMatch(/^[\w-]{22}$/)
  expect(['native', 'web']).toContain(body.application_type)
  const uris = body.redirect_uris as string[]
  expect(uris.length).toBeGreaterThan(0)
  for (const uri of uris) {
    expect(isSafeRegisteredRedirect(uri, body.application_type as string), uri).toBe(true)
  }
  if (body.token_endpoint_auth_method === 'none') expect(body.client_secret).toBeUndefined()
  else expect(body.client_secret).toMatch(/^[\w-]{43}$/)
}

/** A JSON value of a type a field does not expect. */
const wrongTyped = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  nastyString,
  fc.constantFrom(null, true, 0, -1, 1e308, [], {}, [null], [''], ['code', 'token']),
)

const FIELDS = [
  'redirect_uris',
  'token_endpoint_auth_method',
  'grant_types',
  'response_types',
  'application_type',
  'client_name',
  'client_uri',
  'logo_uri',
  'tos_uri',
  'policy_uri',
  'contacts',
  'scope',
  'software_id',
  'software_version',
  'client_id',
  'client_secret',
  'jwks',
  'jwks_uri',
  'software_statement',
  '__proto__',
  'constructor',
]

const VALID = {
  client_name: 'Property client',
  redirect_uris: ['https://app.example.com/cb'],
  token_endpoint_auth_method: 'none',
}

/** Metadata close to valid: a valid document with fields replaced, removed or added. */
const metadata = fc
  .tuple(
    fc.dictionary(fc.constantFrom(...FIELDS), wrongTyped, { maxKeys: 6 }),
    fc.subarray(Object.keys(VALID)),
  )
  .map(([changes, removed]) => {
    const doc: Record<string, unknown> = { ...VALID }
    for (const key of removed) delete doc[key]
    // JSON.parse makes `__proto__` an own member, as a request body would.
    return JSON.stringify(doc).slice(0, -1) + stringifyMembers(changes)
  })

function stringifyMembers(members: Record<string, unknown>): string {
  const parts = Object.entries(members).map(
    ([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`,
  )
  return `${parts.join('')}}`
}

describe('POST /register with hostile input', () => {
  it('answers any body, content type and method without a 5xx, in RFC 7591 terms', async () => {
    const body = fc.oneof(
      metadata,
      fc.json({ maxDepth: 3 }),
      nastyString,
      binaryBody,
      fc.constantFrom('[', '{"redirect_uris":', '{}', '[]', 'null', '"x"', '[['.repeat(4000)),
    )
    await fc.assert(
      fc.asyncProperty(
        method,
        contentType,
        body,
        fc.dictionary(fc.constantFrom('authorization', 'origin', 'x-forwarded-for'), headerValue),
        async (verb, type, payload, extra) => {
          const ex = await send({
            method: verb,
            body: payload,
            headers: { ...extra, 'content-type': type },
          })
          // No answer reveals a secret issued to an earlier registration.
          assertWellBehaved(ex, { endpoint: 'register', method: verb, secrets: issued })
          if (ex.res.status === 201) assertRegistration(ex)
        },
      ),
      runs(300),
    )
  })

  it('registers only redirect URIs that cannot escape, whatever they are made of', async () => {
    const registered = fc.constantFrom(
      'https://app.example.com/cb',
      'https://app.example.com/cb?tenant=a',
      'http://127.0.0.1:1234/cb',
      'http://localhost/callback',
      'http://[::1]:8080/cb',
      'cursor://anysphere.cursor-retrieval/oauth/callback',
      'com.example.app:/oauth/cb',
    )
    await fc.assert(
      fc.asyncProperty(
        registered.chain((uri) => fc.array(redirectCandidate(uri), { minLength: 1, maxLength: 3 })),
        fc.constantFrom(undefined, 'native', 'web'),
        fc.constantFrom('none', 'client_secret_basic'),
        async (uris, applicationType, auth) => {
          const ex = await send({
            body: JSON.stringify({
              redirect_uris: uris,
              application_type: applicationType,
              token_endpoint_auth_method: auth,
            }),
            headers: { 'content-type': 'application/json' },
          })
          assertWellBehaved(ex, { endpoint: 'register', method: 'POST', secrets: issued })
          if (ex.res.status === 201) {
            assertRegistration(ex)
            // Stored as sent: the proxy must not "fix" a URI into something else.
            expect((JSON.parse(ex.text) as { redirect_uris: string[] }).redirect_uris).toEqual([
              ...new Set(uris),
            ])
          } else {
            expect(ex.res.status).toBe(400)
          }
        },
      ),
      runs(300),
    )
  })
})

describe('the registration body limit (16 KiB)', () => {
  const big = JSON.stringify({ ...VALID, client_name: 'x'.repeat(20 * 1024) })
  const tooLarge = {
    error: 'invalid_request',
    error_description: 'the request body exceeds 16384 bytes',
  }
  const json = { 'content-type': 'application/json' }

  it('answers 413 with the JSON error to a 20 KiB body', async () => {
    const ex = await send({ body: big, headers: json })
    expect(ex.res.status).toBe(413)
    expect(JSON.parse(ex.text)).toEqual(tooLarge)
    assertWellBehaved(ex, { endpoint: 'register', method: 'POST' })
  })

  it('answers 413 when the Content-Length lies about a 20 KiB body', async () => {
    const ex = await send({ body: big, headers: { ...json, 'content-length': '10' } })
    expect(ex.res.status).toBe(413)
    expect(JSON.parse(ex.text)).toEqual(tooLarge)
  })

  it('answers 413 to a 20 KiB chunked body without a length', async () => {
    const ex = await timed(() =>
      t.app.request('/register', {
        method: 'POST',
        headers: json,
        body: chunks(20, 1024),
        duplex: 'half',
      } as RequestInit),
    )
    expect(ex.res.status).toBe(413)
    expect(JSON.parse(ex.text)).toEqual(tooLarge)
  })

  // A Content-Length smaller than the body over a real socket: Node's parser hands the handler
  // the declared 10 bytes and parses the rest as a next request, which it refuses itself with a
  // bare `400 Bad Request` and `Connection: close` (in practice before the handler's own answer,
  // which is lost). The client sees a 4xx and the end of the connection, never a 5xx or a hang.
  it('answers a body longer than its Content-Length over a raw socket with 4xx and a close', async () => {
    const server = await serveApp(t.app)
    try {
      const { port, hostname } = new URL(server.url)
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname, () => {
          socket.write(
            `POST /register HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n${big}`,
          )
        })
        let received = ''
        socket.setEncoding('latin1')
        socket.on('data', (data) => {
          received += data
        })
        socket.on('close', () => resolve(received))
        socket.on('error', reject)
        socket.setTimeout(HANG_MS, () => reject(new Error(`no close: ${received}`)))
      })
      const statuses = [...answer.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]))
      expect(statuses.length, answer).toBeGreaterThan(0)
      for (const status of statuses) expect(status, answer).toBeGreaterThanOrEqual(400)
      for (const status of statuses) expect(status, answer).toBeLessThan(500)
    } finally {
      await server.close()
    }
  })

  // Over a real socket the client must still read the 413: readBody stops reading and
  // @hono/node-server drains (up to 64 MiB, 500 ms) what the client is still sending, rather
  // than resetting the connection under the client as a bodyLimit that never reads would.
  it('lets a client over a real socket read the 413, with a length or chunked', async () => {
    const server = await serveApp(t.app)
    try {
      const declared = await fetch(`${server.url}/register`, {
        method: 'POST',
        headers: json,
        body: 'x'.repeat(4 * 1024 * 1024),
      })
      expect(declared.status).toBe(413)
      expect(await declared.json()).toEqual(tooLarge)
      const chunked = await fetch(`${server.url}/register`, {
        method: 'POST',
        headers: json,
        body: chunks(4096, 1024),
        duplex: 'half',
      } as RequestInit)
      expect(chunked.status).toBe(413)
      expect(await chunked.json()).toEqual(tooLarge)
    } finally {
      await server.close()
    }
  })
})

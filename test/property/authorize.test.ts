import fc from 'fast-check'
import type { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { redirectUriMatches } from '../../src/oauth/redirect-uri.js'
import { consentFields, pkce } from '../support/flow.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy } from '../support/proxy.js'
import {
  assertWellBehaved,
  contentType,
  type Exchange,
  type Expectations,
  escapesRegistration,
  formBody,
  formParams,
  headerValue,
  mayRedirectTo,
  nastyString,
  redirectCandidate,
  runs,
  timed,
} from './support.js'

// GET /authorize, POST /authorize/consent and GET /callback under hostile input. The requests
// go in-process to an app built on the deps of a real proxy (real oidc-provider upstream on
// loopback), so flows that reach the upstream are real and the rest costs no socket.

let proxy: ProxyUnderTest
let app: Hono
let upstreamOrigin: string

/** The clients the properties aim at, by name: their id and registered redirect URIs. */
const clients = new Map<string, { id: string; uris: string[]; secret?: string }>()
const REGISTRATIONS: Record<string, string[]> = {
  web: ['https://app.example.com/cb'],
  webQuery: ['https://app.example.com/cb?tenant=a'],
  loopbackIp: ['http://127.0.0.1:1234/cb'],
  localhost: ['http://localhost/callback'],
  ipv6: ['http://[::1]:8080/cb'],
  cursor: ['cursor://anysphere.cursor-retrieval/oauth/callback'],
  reverseDns: ['com.example.app:/oauth/cb'],
  two: ['https://app.example.com/cb', 'https://app.example.com/other-cb'],
}
const secrets = new Set<string>([PROXY_CLIENT.client_secret])

beforeAll(async () => {
  proxy = await startProxy({
    flavor: 'kinde',
    env: { REGISTER_RATE_LIMIT: '0', AUTHORIZE_RATE_LIMIT: '0' },
  })
  app = createApp(proxy.server.deps)
  upstreamOrigin = new URL(proxy.upstream.url).origin
  for (const [name, uris] of Object.entries(REGISTRATIONS)) {
    const confidential = name === 'two'
    const res = await app.request(`${proxy.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: name,
        redirect_uris: uris,
        token_endpoint_auth_method: confidential ? 'client_secret_basic' : 'none',
      }),
    })
    expect(res.status).toBe(201)
    const body = (await res.json()) as { client_id: string; client_secret?: string }
    if (body.client_secret) secrets.add(body.client_secret)
    clients.set(name, { id: body.client_id, uris, secret: body.client_secret })
  }
})
afterAll(() => proxy?.close())

const client = (name: string) => {
  const found = clients.get(name)
  if (!found) throw new Error(`no client ${name}`)
  return found
}

function expectations(endpoint: Expectations['endpoint'], uris: readonly string[] = []) {
  return {
    endpoint,
    secrets,
    ownOrigins: [new URL(proxy.url).origin, upstreamOrigin],
    redirectUris: uris,
    issuer: proxy.url,
    proxyUrl: proxy.url,
  } satisfies Expectations
}

/** A valid authorization request of `name`, with `overrides` (undefined removes). */
function authorizeQuery(name: string, overrides: Record<string, string | undefined> = {}) {
  const params: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: client(name).id,
    redirect_uri: client(name).uris[0],
    code_challenge: pkce().challenge,
    code_challenge_method: 'S256',
    scope: 'openid profile',
    resource: `${proxy.url}/mcp`,
    state: 'client-state',
    ...overrides,
  }
  const query = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) if (value !== undefined) query.set(key, value)
  return query
}

function get(path: string, headers: Record<string, string> = {}): Promise<Exchange> {
  return timed(() => app.request(`${proxy.url}${path}`, { headers }))
}

/** The `name=value` of the browser cookie a response sets. */
function browserCookie(res: Response): string {
  const line = res.headers.getSetCookie().find((c) => c.startsWith('mcp-browser='))
  if (!line) throw new Error('no browser cookie')
  return line.split(';')[0] ?? ''
}

/** Opens a consent page for `name` in a fresh browser: its request id, CSRF token and cookie. */
async function pendingConsent(name: string) {
  const ex = await get(`/authorize?${authorizeQuery(name)}`)
  expect(ex.res.status).toBe(200)
  return { ...consentFields(ex.text), cookie: browserCookie(ex.res) }
}

const CLIENT_NAMES = Object.keys(REGISTRATIONS)

describe('GET /authorize with redirect URIs that try to escape', () => {
  it('shows the consent page only for a registered URI, and never redirects anywhere else', async () => {
    const request = fc.constantFrom(...CLIENT_NAMES).chain((name) =>
      fc.tuple(
        fc.constant(name),
        fc.constantFrom(...client(name).uris).chain((uri) => redirectCandidate(uri)),
      ),
    )
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(request, fc.boolean(), async ([name, candidate], validRest) => {
        const { uris } = client(name)
        // With the rest of the request broken, an accepted URI gets the error redirect.
        const rest = validRest ? {} : { response_type: 'token' }
        const ex = await get(
          `/authorize?${authorizeQuery(name, { redirect_uri: candidate, ...rest })}`,
        )
        assertWellBehaved(ex, { ...expectations('authorize', uris), method: 'GET' })
        const { status } = ex.res
        seen.add(status)
        if (escapesRegistration(uris, candidate)) {
          expect(status, `${candidate} for ${uris.join(' ')}`).toBe(400)
          expect(ex.text).toContain('<code id="error-code">invalid_request</code>')
        }
        if (uris.some((uri) => mayRedirectTo(uri, candidate))) {
          expect(status, `${candidate} for ${uris.join(' ')}`).toBe(validRest ? 200 : 302)
        }
        if (status === 302) {
          // To the very URI requested (normalised), never to a registered sibling.
          const to = new URL(ex.res.headers.get('location') ?? '')
          expect(to.origin + to.pathname).toBe(
            new URL(candidate).origin + new URL(candidate).pathname,
          )
          expect(to.searchParams.get('error')).toBe('unsupported_response_type')
        }
      }),
      {
        ...runs(300),
        // Under load the time limit may cut the random runs short: these always run first, so
        // each verdict (page, error redirect, refusal) is met whatever the random part reaches.
        examples: CLIENT_NAMES.flatMap((name) => {
          const uri = client(name).uris[0] ?? ''
          return [
            [[name, uri], true],
            [[name, uri], false],
            [[name, `${uri}#fragment`], true],
          ] satisfies [[string, string], boolean][]
        }),
      },
    )
    // Not vacuous: the candidates were accepted (page or error redirect) as well as refused.
    expect([...seen].sort()).toEqual([200, 302, 400])
  })
})

describe('odd redirect URIs that registration accepted', () => {
  it('are honoured exactly: the consent page for the URI, errors redirected to it alone', async () => {
    const bases = Object.values(REGISTRATIONS).flat()
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...bases).chain(redirectCandidate),
        fc.constantFrom('native', 'web'),
        async (uri, applicationType) => {
          const registration = await app.request(`${proxy.url}/register`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              redirect_uris: [uri],
              application_type: applicationType,
              token_endpoint_auth_method: 'none',
            }),
          })
          seen.add(registration.status)
          if (registration.status !== 201) return
          const { client_id: id } = (await registration.json()) as { client_id: string }
          const query = (extra: Record<string, string>) =>
            new URLSearchParams({
              response_type: 'code',
              client_id: id,
              redirect_uri: uri,
              code_challenge: pkce().challenge,
              code_challenge_method: 'S256',
              state: 'odd',
              ...extra,
            })
          const page = await get(`/authorize?${query({})}`)
          assertWellBehaved(page, { ...expectations('authorize', [uri]), method: 'GET' })
          expect(page.res.status, uri).toBe(200)
          const refused = await get(`/authorize?${query({ response_type: 'token' })}`)
          assertWellBehaved(refused, { ...expectations('authorize', [uri]), method: 'GET' })
          expect(refused.res.status, uri).toBe(302)
        },
      ),
      runs(200),
    )
    expect([...seen].sort()).toEqual([201, 400])
  })
})

describe('regressions the properties found', () => {
  it.each([
    ['a leading NUL', '\u0000http://127.0.0.1:5555/cb'],
    ['a trailing NUL', 'http://127.0.0.1:5555/cb\u0000'],
    ['a leading escape character', '\u001bhttp://127.0.0.1:5555/cb'],
    ['a trailing DEL', 'http://127.0.0.1:5555/cb\u007f'],
  ])(
    'refuses a loopback redirect_uri with %s, which the URL parser would strip',
    async (_, uri) => {
      const ex = await get(`/authorize?${authorizeQuery('loopbackIp', { redirect_uri: uri })}`)
      assertWellBehaved(ex, {
        ...expectations('authorize', client('loopbackIp').uris),
        method: 'GET',
      })
      expect(ex.res.status).toBe(400)
      expect(ex.text).toContain('redirect_uri is not registered for this client')
    },
  )
})

/** A query parameter's values: absent, valid, hostile, or repeated. */
function param(valid: fc.Arbitrary<string>): fc.Arbitrary<string[]> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant<string[]>([]) },
    { weight: 4, arbitrary: valid.map((v) => [v]) },
    { weight: 2, arbitrary: nastyString.map((v) => [v]) },
    { weight: 1, arbitrary: fc.tuple(valid, fc.oneof(valid, nastyString)) },
  )
}

describe('GET /authorize with hostile parameters', () => {
  it('never answers 5xx, and redirects only to the named client’s registered URIs', async () => {
    const request = fc.constantFrom(...CLIENT_NAMES).chain((name) => {
      const { id, uris } = client(name)
      return fc.record({
        params: fc.record({
          client_id: param(
            fc.constantFrom(id, client('web').id, 'unknown', 'https://127.0.0.1/c.json'),
          ),
          redirect_uri: param(fc.constantFrom(...uris).chain(redirectCandidate)),
          response_type: param(fc.constantFrom('code', 'token', 'code id_token', 'CODE', '')),
          code_challenge: param(fc.constantFrom(pkce().challenge, 'short', 'a'.repeat(43), '')),
          code_challenge_method: param(fc.constantFrom('S256', 'plain', 's256', '')),
          scope: param(fc.constantFrom('openid', 'openid profile', 'offline_access', 'admin', ' ')),
          resource: param(
            fc.constantFrom(`${proxy.url}/mcp`, `${proxy.url}/mcp/`, 'https://evil.example/mcp'),
          ),
          state: param(fc.oneof(fc.string(), fc.constant('s'.repeat(3000)))),
          prompt: param(fc.constantFrom('none', 'consent', 'login', 'none consent')),
          nonce: param(fc.string()),
        }),
        extra: formParams([
          'request',
          'request_uri',
          'response_mode',
          'iss',
          'code',
          'client_secret',
        ]),
        cookie: fc.option(headerValue, { nil: undefined }),
      })
    })
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(request, async ({ params, extra, cookie }) => {
        const query = new URLSearchParams(extra)
        for (const [key, values] of Object.entries(params))
          for (const value of values) query.append(key, value)
        const ids = query.getAll('client_id')
        const named = [...clients.values()].find((c) => ids.length === 1 && c.id === ids[0])
        const ex = await get(`/authorize?${query}`, cookie === undefined ? {} : { cookie })
        assertWellBehaved(ex, { ...expectations('authorize', named?.uris), method: 'GET' })
        seen.add(ex.res.status)
      }),
      runs(300),
    )
    // Not vacuous: both error redirects (the client was trusted) and error pages happened.
    expect([...seen]).toContain(302)
    expect([...seen]).toContain(400)
  })
})

describe('POST /authorize/consent', () => {
  it('redirects only when request id, CSRF token and browser all match, and never 5xx', async () => {
    // Each part is usually right, so that every part alone being wrong is explored too.
    const mostly = <T>(right: T, ...wrong: T[]) =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(right) },
        { weight: 1, arbitrary: fc.constantFrom(...wrong) },
      )
    const attempt = fc.record({
      name: fc.constantFrom(...CLIENT_NAMES),
      requestId: mostly('right', 'repeated-right-first', 'missing', 'random', 'other'),
      csrf: mostly('right', 'missing', 'random', 'truncated', 'other'),
      cookie: mostly('right', 'missing', 'other', 'garbage'),
      decision: mostly<string | undefined>('allow', 'deny', undefined, 'ALLOW', ''),
      type: mostly<string | undefined>(
        'application/x-www-form-urlencoded',
        'application/x-www-form-urlencoded; charset=utf-8',
        'text/plain',
        'application/json',
        undefined,
        'multipart/form-data; boundary=x',
      ),
      origin: mostly<string | undefined>(undefined, 'same', 'https://evil.example', 'null', ''),
      site: mostly<string | undefined>(undefined, 'same-origin', 'cross-site', 'same-site', 'none'),
      extra: formParams(['request_id', 'csrf_token', 'decision', 'scope', 'redirect_uri']),
    })
    let redirected = 0
    let refused = 0
    await fc.assert(
      fc.asyncProperty(attempt, async (a) => {
        const mine = await pendingConsent(a.name)
        const other = await pendingConsent('web')
        const pick = (choice: string, right: string, otherValue: string) =>
          ({ right, random: 'x'.repeat(43), other: otherValue, truncated: right.slice(0, -1) })[
            choice
          ]
        const form = new URLSearchParams()
        const requestId = pick(
          a.requestId.replace('repeated-right-first', 'right'),
          mine.requestId,
          other.requestId,
        )
        if (requestId !== undefined) form.append('request_id', requestId)
        if (a.requestId === 'repeated-right-first') form.append('request_id', other.requestId)
        const csrf = pick(a.csrf, mine.csrfToken, other.csrfToken)
        if (csrf !== undefined) form.append('csrf_token', csrf)
        if (a.decision !== undefined) form.append('decision', a.decision)
        // Extra fields come after the real ones: a form's first value is the one read.
        for (const [key, value] of a.extra) form.append(key, value)
        const cookie = { right: mine.cookie, other: other.cookie, garbage: 'mcp-browser=%zz;;=' }[
          a.cookie as 'right'
        ]
        const headers: Record<string, string> = {}
        if (a.type !== undefined) headers['content-type'] = a.type
        if (cookie !== undefined) headers.cookie = cookie
        if (a.origin !== undefined)
          headers.origin = a.origin === 'same' ? new URL(proxy.url).origin : a.origin
        if (a.site !== undefined) headers['sec-fetch-site'] = a.site
        const ex = await timed(() =>
          app.request(`${proxy.url}/authorize/consent`, {
            method: 'POST',
            headers,
            body: form.toString(),
          }),
        )
        // Either pending request may be answered, by whoever holds all three of its parts.
        const uris = [...client(a.name).uris, ...client('web').uris]
        assertWellBehaved(ex, { ...expectations('consent', uris), method: 'POST' })
        const requestOf = (choice: string) =>
          choice === 'right' || choice === 'repeated-right-first' ? 'mine' : choice
        const owner = requestOf(a.requestId)
        const valid =
          (owner === 'mine' || owner === 'other') &&
          // Past 16 KiB the form is not read at all (413).
          form.toString().length <= 16 * 1024 &&
          requestOf(a.csrf) === owner &&
          requestOf(a.cookie) === owner &&
          a.type?.split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded' &&
          // An empty Origin says nothing, like an absent one.
          (a.origin === undefined || a.origin === '' || a.origin === 'same') &&
          (a.site === undefined || a.site === 'same-origin')
        if (valid) {
          redirected++
          expect(ex.res.status).toBe(303)
          const to = new URL(ex.res.headers.get('location') ?? '')
          expect(to.origin).toBe(a.decision === 'allow' ? upstreamOrigin : to.origin)
          if (a.decision !== 'allow') expect(to.searchParams.get('error')).toBe('access_denied')
        } else {
          refused++
          expect(ex.res.status === 303 || ex.res.status === 302, JSON.stringify(a)).toBe(false)
        }
      }),
      runs(120),
    )
    expect(redirected).toBeGreaterThan(0)
    expect(refused).toBeGreaterThan(0)
  })

  it('answers random bodies, content types and cookies with an error page, never a redirect', async () => {
    await fc.assert(
      fc.asyncProperty(
        contentType,
        formBody(formParams(['request_id', 'csrf_token', 'decision'])),
        fc.option(headerValue, { nil: undefined }),
        async (type, body, cookie) => {
          const headers: Record<string, string> = {}
          if (type !== undefined) headers['content-type'] = type
          if (cookie !== undefined) headers.cookie = cookie
          const ex = await timed(() =>
            app.request(`${proxy.url}/authorize/consent`, { method: 'POST', headers, body }),
          )
          assertWellBehaved(ex, { ...expectations('consent'), method: 'POST' })
          expect(ex.res.status).toBeGreaterThanOrEqual(400)
        },
      ),
      runs(200),
    )
  })

  it('answers a consent body over 16 KiB with 413', async () => {
    const ex = await timed(() =>
      app.request(`${proxy.url}/authorize/consent`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `request_id=${'x'.repeat(17_000)}`,
      }),
    )
    assertWellBehaved(ex, { ...expectations('consent'), method: 'POST' })
    expect(ex.res.status).toBe(413)
  })
})

describe('POST /authorize/consent, fixed cases next to the property', () => {
  /** Submits `name`'s pending consent with the CSRF token and cookie `tamper` chooses. */
  async function submit(
    tamper: (
      mine: Awaited<ReturnType<typeof pendingConsent>>,
      other: Awaited<ReturnType<typeof pendingConsent>>,
    ) => { csrf?: string; cookie?: string },
  ) {
    const mine = await pendingConsent('web')
    const other = await pendingConsent('web')
    const { csrf, cookie } = tamper(mine, other)
    const send = (parts: { csrf?: string; cookie?: string }) => {
      const form = new URLSearchParams({ request_id: mine.requestId, decision: 'allow' })
      if (parts.csrf !== undefined) form.set('csrf_token', parts.csrf)
      const headers: Record<string, string> = {
        'content-type': 'application/x-www-form-urlencoded',
      }
      if (parts.cookie !== undefined) headers.cookie = parts.cookie
      return timed(() =>
        app.request(`${proxy.url}/authorize/consent`, {
          method: 'POST',
          headers,
          body: form.toString(),
        }),
      )
    }
    return send({ csrf, cookie })
  }

  const flip = (token: string) => `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`

  it.each([
    ['no CSRF token', (mine) => ({ cookie: mine.cookie })],
    ['an empty CSRF token', (mine) => ({ csrf: '', cookie: mine.cookie })],
    [
      'another request’s CSRF token',
      (mine, other) => ({ csrf: other.csrfToken, cookie: mine.cookie }),
    ],
    [
      'its CSRF token truncated',
      (mine) => ({ csrf: mine.csrfToken.slice(0, -1), cookie: mine.cookie }),
    ],
    [
      'its CSRF token with the last character changed',
      (mine) => ({ csrf: flip(mine.csrfToken), cookie: mine.cookie }),
    ],
    ['no browser-binding cookie', (mine) => ({ csrf: mine.csrfToken })],
    [
      'another browser’s binding cookie',
      (mine, other) => ({ csrf: mine.csrfToken, cookie: other.cookie }),
    ],
    [
      'a binding cookie with the last character changed',
      (mine) => ({ csrf: mine.csrfToken, cookie: flip(mine.cookie) }),
    ],
  ] satisfies [string, Parameters<typeof submit>[0]][])(
    'refuses %s with 403 access_denied',
    async (_case, tamper) => {
      const answer = await submit(tamper)
      assertWellBehaved(answer, { ...expectations('consent'), method: 'POST' })
      expect(answer.res.status).toBe(403)
      expect(answer.text).toContain('<code id="error-code">access_denied</code>')
      expect(answer.text).toContain('the consent form failed its forgery check')
    },
  )

  it('sends the request on to the upstream with its own CSRF token and cookie', async () => {
    const answer = await submit((mine) => ({ csrf: mine.csrfToken, cookie: mine.cookie }))
    expect(answer.res.status).toBe(303)
    expect(new URL(answer.res.headers.get('location') ?? '').origin).toBe(upstreamOrigin)
  })
})

describe('the loopback redirect match, fixed cases next to the properties (RFC 8252 §7.3)', () => {
  it.each([
    ['the registered string', 'http://127.0.0.1/cb?x=1', 'http://127.0.0.1/cb?x=1', true],
    [
      'another port, same query',
      'http://127.0.0.1:1234/cb?x=1',
      'http://127.0.0.1:5555/cb?x=1',
      true,
    ],
    [
      'a port where none was registered',
      'http://localhost/cb?x=1',
      'http://localhost:8080/cb?x=1',
      true,
    ],
    ['[::1] on another port', 'http://[::1]:8080/cb?a=b', 'http://[::1]:9090/cb?a=b', true],
    ['another query value', 'http://127.0.0.1:1234/cb?x=1', 'http://127.0.0.1:5555/cb?x=2', false],
    ['the query dropped', 'http://127.0.0.1:1234/cb?x=1', 'http://127.0.0.1:5555/cb', false],
    ['a query added', 'http://127.0.0.1:1234/cb', 'http://127.0.0.1:5555/cb?x=1', false],
    ['an empty query added', 'http://127.0.0.1:1234/cb', 'http://127.0.0.1:5555/cb?', false],
    [
      'the parameters reordered',
      'http://127.0.0.1/cb?a=1&b=2',
      'http://127.0.0.1:5555/cb?b=2&a=1',
      false,
    ],
    ['a parameter repeated', 'http://127.0.0.1/cb?a=1', 'http://127.0.0.1:5555/cb?a=1&a=1', false],
    [
      'the query percent-encoded',
      'http://127.0.0.1/cb?a=b',
      'http://127.0.0.1:5555/cb?a=%62',
      false,
    ],
    ['the query case changed', 'http://127.0.0.1/cb?a=b', 'http://127.0.0.1:5555/cb?A=b', false],
    ['another loopback host', 'http://127.0.0.1/cb?x=1', 'http://localhost:5555/cb?x=1', false],
    ['a port past 65535', 'http://127.0.0.1/cb?x=1', 'http://127.0.0.1:65536/cb?x=1', false],
    [
      'an https loopback URI on another port',
      'https://127.0.0.1:1234/cb?x=1',
      'https://127.0.0.1:5555/cb?x=1',
      false,
    ],
  ])('%s: %s for %s → %s', (_case, registered, requested, matches) => {
    expect(redirectUriMatches(registered, requested)).toBe(matches)
  })
})

describe('GET /callback', () => {
  it('answers any query and cookie without a transaction with an error page', async () => {
    await fc.assert(
      fc.asyncProperty(
        formParams(['state', 'code', 'error', 'error_description', 'iss', 'session_state']),
        fc.option(headerValue, { nil: undefined }),
        async (params, cookie) => {
          const ex = await get(
            `/callback?${new URLSearchParams(params)}`,
            cookie === undefined ? {} : { cookie },
          )
          assertWellBehaved(ex, { ...expectations('callback'), method: 'GET' })
          expect(ex.res.status).toBe(400)
        },
      ),
      runs(200),
    )
  })

  it('sends a real sign-in with a tampered answer only back to the client’s registered URI', async () => {
    const tamper = fc.record({
      name: fc.constantFrom(...CLIENT_NAMES),
      code: fc.option(nastyString, { nil: undefined }),
      error: fc.option(
        fc.constantFrom(
          'access_denied',
          'server_error',
          'login_required',
          'invalid_scope',
          '<b>x</b>',
          'x'.repeat(500),
        ),
        { nil: undefined },
      ),
      extra: formParams(['iss', 'error_description', 'state', 'scope', 'session_state']),
      cookie: fc.constantFrom('right', 'right', 'missing', 'other'),
    })
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(tamper, async (t) => {
        const pending = await pendingConsent(t.name)
        const answer = await app.request(`${proxy.url}/authorize/consent`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pending.cookie },
          body: new URLSearchParams({
            request_id: pending.requestId,
            csrf_token: pending.csrfToken,
            decision: 'allow',
          }).toString(),
        })
        expect(answer.status).toBe(303)
        const state = new URL(answer.headers.get('location') ?? '').searchParams.get('state') ?? ''
        const query = new URLSearchParams({ state })
        if (t.code !== undefined) query.append('code', t.code)
        if (t.error !== undefined) query.append('error', t.error)
        for (const [key, value] of t.extra) query.append(key, value)
        const cookie =
          t.cookie === 'right'
            ? pending.cookie
            : t.cookie === 'other'
              ? (await pendingConsent('web')).cookie
              : undefined
        const ex = await get(`/callback?${query}`, cookie === undefined ? {} : { cookie })
        assertWellBehaved(ex, { ...expectations('callback', client(t.name).uris), method: 'GET' })
        // The upstream never issued this code: nobody may get one of ours for it.
        const to = ex.res.headers.get('location')
        if (to) expect(new URL(to).searchParams.get('code')).toBeNull()
        if (t.cookie !== 'right') expect(ex.res.status).toBe(403)
        seen.add(ex.res.status)
      }),
      runs(60),
    )
    expect([...seen].sort()).toEqual([302, 403])
  })
})

describe('GET /callback, fixed cases of the browser binding next to the property', () => {
  /** A real consent for `web`, its upstream state, and the cookie of the browser that gave it. */
  async function consented() {
    const pending = await pendingConsent('web')
    const answer = await app.request(`${proxy.url}/authorize/consent`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pending.cookie },
      body: new URLSearchParams({
        request_id: pending.requestId,
        csrf_token: pending.csrfToken,
        decision: 'allow',
      }).toString(),
    })
    expect(answer.status).toBe(303)
    const state = new URL(answer.headers.get('location') ?? '').searchParams.get('state') ?? ''
    return { state, cookie: pending.cookie }
  }

  it.each([
    ['no binding cookie', async () => undefined],
    ['another browser’s binding cookie', async () => (await pendingConsent('web')).cookie],
    ['an empty binding cookie', async () => 'mcp-browser='],
  ])(
    'refuses the callback with %s with 403, never reaching the client',
    async (_case, cookieOf) => {
      const { state } = await consented()
      const cookie = await cookieOf()
      const ex = await get(
        `/callback?${new URLSearchParams({ state, code: 'upstream-code' })}`,
        cookie === undefined ? {} : { cookie },
      )
      assertWellBehaved(ex, { ...expectations('callback'), method: 'GET' })
      expect(ex.res.status).toBe(403)
      expect(ex.res.headers.get('location')).toBeNull()
      expect(ex.text).toContain('this sign-in was started in another browser')
    },
  )

  it('takes the callback in the browser that consented to the upstream (then the code)', async () => {
    const { state, cookie } = await consented()
    // The upstream never issued this code: the binding holds, the code exchange fails.
    const ex = await get(`/callback?${new URLSearchParams({ state, code: 'not-issued' })}`, {
      cookie,
    })
    assertWellBehaved(ex, { ...expectations('callback', client('web').uris), method: 'GET' })
    expect(ex.res.status).toBe(302)
    const to = new URL(ex.res.headers.get('location') ?? '')
    expect(to.origin + to.pathname).toBe(client('web').uris[0])
    expect(to.searchParams.get('code')).toBeNull()
  })
})

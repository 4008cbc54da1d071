import fc from 'fast-check'
import { expect, vi } from 'vitest'
import { noHang } from '../support/hang.js'

// Shared machinery of the property tests: run parameters, the invariants every answer must
// keep, and the arbitraries of hostile input. The invariants are written from the RFCs, not
// from src/: the oracle for "may this redirect go there" is a separate implementation of
// RFC 8252 §7.3 / OAuth 2.1 §4.1.1, so a bug in the proxy's matcher cannot hide itself.

const scaled = Number(process.env.FC_NUM_RUNS)
/** `FC_NUM_RUNS` asks for a long hunt: the time limits below make room for it. */
const hunting = Number.isFinite(scaled) && scaled > 0
if (hunting) vi.setConfig({ testTimeout: 60 * 60_000 })

/**
 * fast-check parameters for `numRuns` runs. `FC_SEED` (and `FC_PATH`, both printed by
 * fast-check on failure) replays a failing run; `FC_NUM_RUNS` replaces every run count.
 * A property stops after 8 s (a machine many times slower than a laptop runs fewer cases
 * rather than time out); a counterexample found by then is still reported, shrunk as far as
 * the time allowed, with its seed.
 */
export function runs(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED
  const path = process.env.FC_PATH
  return {
    numRuns: hunting ? scaled : numRuns,
    ...(seed ? { seed: Number(seed) } : {}),
    ...(path ? { path } : {}),
    interruptAfterTimeLimit: hunting ? 20 * 60_000 : 8_000,
    markInterruptAsFailure: false,
  }
}

/** One request and its answer, with the body read. */
export interface Exchange {
  readonly res: Response
  readonly text: string
}

/**
 * Sends a request and reads the whole answer; fails if either never comes. A hang detector,
 * not a stopwatch: a loaded machine runs the properties slower, never wrongly.
 */
export async function timed(send: () => Promise<Response> | Response): Promise<Exchange> {
  const res = await noHang(Promise.resolve(send()), 'the proxy')
  const text = await noHang(res.text(), 'the response body')
  return { res, text }
}

export type Endpoint =
  | 'register'
  | 'authorize'
  | 'consent'
  | 'callback'
  | 'token'
  | 'revoke'
  | 'mcp'
  | 'account'
  | 'backchannel-logout'

/** What an answer is checked against. */
export interface Expectations {
  readonly endpoint: Endpoint
  /** The request method (preflights are CORS's, not OAuth's). */
  readonly method?: string
  /** Values that must never appear in any header or in the body. */
  readonly secrets?: Iterable<string>
  /** Origins a redirect may always go to: the proxy itself and its upstream. */
  readonly ownOrigins?: readonly string[]
  /** The redirect URIs registered for the client the request names. */
  readonly redirectUris?: readonly string[]
  /** The proxy's issuer, which every redirect to a client carries (RFC 9207). */
  readonly issuer?: string
  /** The proxy's public URL: a redirect to the upstream must send the user back here. */
  readonly proxyUrl?: string
  /** Whether the request carried `Authorization: Basic` (RFC 6749 §5.2 then wants a challenge). */
  readonly basicAttempted?: boolean
  /**
   * Whether a call to the upstream failed at the network level while this request was served
   * (the test observes it through the proxy's outbound fetch): only then may the answer be
   * 503 `temporarily_unavailable` with `Retry-After` (RFC 6749 §4.1.2.1's code for a passing outage).
   */
  readonly upstreamFailed?: boolean
}

const COMMON_ERRORS = ['not_found', 'method_not_allowed', 'temporarily_unavailable']
/** RFC 6749 §5.2, plus RFC 8707's invalid_target. */
const TOKEN_ERRORS = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_target',
  // RFC 9449 §5: a bad DPoP proof at the token endpoint.
  'invalid_dpop_proof',
]
/** RFC 7591 §3.2.2. `invalid_request` only for the body limit (413). */
const REGISTER_ERRORS = [
  'invalid_redirect_uri',
  'invalid_client_metadata',
  'invalid_software_statement',
  'unapproved_software_statement',
]
/** RFC 6749 §4.1.2.1, plus RFC 8707 and the OpenID Connect codes a prompt can cause. */
export const AUTHORIZE_REDIRECT_ERRORS = [
  'invalid_request',
  'unauthorized_client',
  'access_denied',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
  'invalid_target',
  'interaction_required',
  'login_required',
  'consent_required',
]
/** What the error page (no redirect: the client could not be trusted) may name. */
const PAGE_ERRORS = ['invalid_request', 'invalid_client', 'access_denied']
/** RFC 6750 §3.1. */
const BEARER_ERRORS = [
  'invalid_request',
  'invalid_token',
  'insufficient_scope',
  'invalid_dpop_proof',
]

const JSON_ERRORS: Record<Endpoint, readonly string[]> = {
  register: REGISTER_ERRORS,
  token: TOKEN_ERRORS,
  revoke: [...TOKEN_ERRORS, 'unsupported_token_type'],
  mcp: BEARER_ERRORS,
  // Browser endpoints answer JSON only for what happens before the handler: 405 and 413.
  authorize: ['invalid_request'],
  consent: ['invalid_request'],
  callback: ['invalid_request'],
  account: ['invalid_request'],
  // OIDC Back-Channel Logout 1.0 §2.8: every refusal is a 400 invalid_request.
  'backchannel-logout': ['invalid_request'],
}

/** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E. */
const DESCRIPTION = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/

/** The status RFC 6749 / 6750 / 7009 give each error code; 400 when none is said. */
function expectedStatuses(error: string): readonly number[] {
  switch (error) {
    case 'invalid_client':
    case 'invalid_token':
      return [401]
    case 'insufficient_scope':
      return [403]
    case 'not_found':
      return [404]
    case 'method_not_allowed':
      return [405]
    case 'temporarily_unavailable':
      return [429, 503]
    case 'invalid_request':
      return [400, 413]
    // 400 at the token endpoint, 401 at the resource (RFC 9449 §5, §7.1).
    case 'invalid_dpop_proof':
      return [400, 401]
    default:
      return [400]
  }
}

/**
 * Asserts the invariants every answer of the proxy keeps, whatever it was sent: no 5xx; an
 * answer at all (see `timed`); a redirect only to the proxy, its upstream (which must send
 * the user back to PUBLIC_URL/callback) or a redirect URI registered for the client, carrying
 * `code` or an RFC 6749 §4.1.2.1 error and `iss`; errors in the endpoint's RFC vocabulary with
 * the status that goes with it; `no-store` on the token, registration and revocation
 * endpoints; error pages that cannot be framed or cached; no known secret anywhere.
 */
export function assertWellBehaved(ex: Exchange, expected: Expectations): void {
  const { res, text } = ex
  const where = `${expected.method ?? ''} /${expected.endpoint} → ${res.status} ${text.slice(0, 300)}`
  if (expected.upstreamFailed && res.status === 503) {
    expect(JSON.parse(text), where).toMatchObject({ error: 'temporarily_unavailable' })
    expect(res.headers.get('retry-after'), where).toMatch(/^\d+$/)
  } else {
    expect(res.status, where).toBeLessThan(500)
  }
  expect(text, where).not.toMatch(/\n\s+at |node:internal|node_modules|\.ts:\d+/)

  for (const secret of expected.secrets ?? []) {
    if (secret.length < 8) continue
    expect(text.includes(secret), `${where}: the body echoes a secret`).toBe(false)
    for (const [name, value] of res.headers) {
      expect(value.includes(secret), `${where}: header ${name} echoes a secret`).toBe(false)
    }
  }

  if (expected.method === 'OPTIONS') return
  if (['register', 'token', 'revoke', 'backchannel-logout'].includes(expected.endpoint)) {
    expect(res.headers.get('cache-control'), where).toBe('no-store')
  }
  if (res.status >= 300 && res.status < 400) {
    assertRedirect(res, expected, where)
    return
  }
  if (res.status < 400) return

  // A HEAD answer has the headers of the GET answer and no body to check.
  if (expected.method === 'HEAD') return
  const type = res.headers.get('content-type') ?? ''
  if (type.startsWith('text/html')) {
    expect(['authorize', 'consent', 'callback', 'account'], where).toContain(expected.endpoint)
    expect([400, 403, 429], where).toContain(res.status)
    expect(res.headers.get('x-frame-options'), where).toBe('DENY')
    expect(res.headers.get('cache-control'), where).toBe('no-store')
    expect(res.headers.get('content-security-policy'), where).toContain("frame-ancestors 'none'")
    const code = /<code id="error-code">([^<]*)<\/code>/.exec(text)?.[1]
    if (res.status === 429) {
      // AUTHORIZE_RATE_LIMIT's page (RFC 6585 §4).
      expect(code, where).toBe('temporarily_unavailable')
      expect(res.headers.get('retry-after'), where).toMatch(/^\d+$/)
      return
    }
    expect(PAGE_ERRORS, where).toContain(code)
    return
  }
  expect(type, where).toMatch(/^application\/json/)
  const body = JSON.parse(text) as Record<string, unknown>
  if (expected.endpoint === 'mcp' && body.jsonrpc === '2.0') {
    // The MCP transport's own refusals (JSON-RPC errors), for requests past the bearer gate.
    expect(body.error, where).toMatchObject({
      code: expect.any(Number),
      message: expect.any(String),
    })
    return
  }
  assertErrorBody(body, res.status, expected, where)
  if (res.status === 405) expect(res.headers.get('allow'), where).toBeTruthy()
  if (res.status === 401 && expected.endpoint === 'mcp') {
    assertBearerChallenge(res.headers.get('www-authenticate'), body.error, where)
  }
  if (res.status === 401 && expected.basicAttempted) {
    expect(res.headers.get('www-authenticate'), where).toMatch(/^Basic /)
  }
}

function assertErrorBody(
  body: Record<string, unknown>,
  status: number,
  expected: Expectations,
  where: string,
): void {
  expect(
    Object.keys(body).every((k) => ['error', 'error_description', 'error_uri'].includes(k)),
    where,
  ).toBe(true)
  const error = body.error
  expect(typeof error, where).toBe('string')
  const allowed = [...JSON_ERRORS[expected.endpoint], ...COMMON_ERRORS]
  if (expected.endpoint === 'register' && status === 413) allowed.push('invalid_request')
  expect(allowed, where).toContain(error)
  expect(expectedStatuses(error as string), where).toContain(status)
  if (body.error_description !== undefined) {
    expect(body.error_description, where).toEqual(expect.any(String))
    expect(body.error_description, `${where}: error_description charset`).toMatch(DESCRIPTION)
  }
}

/** RFC 6750 §3: `Bearer` with the error code of the body (none when no token was sent). */
function assertBearerChallenge(header: string | null, error: unknown, where: string): void {
  expect(header, where).toMatch(/^Bearer /)
  const challenge = header ?? ''
  expect(challenge, where).toContain('resource_metadata="')
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a header must not hold them
  expect(challenge, where).not.toMatch(/[\u0000-\u001f\u007f]/)
  const code = /error="([^"]*)"/.exec(challenge)?.[1]
  if (code !== undefined) {
    expect(BEARER_ERRORS, where).toContain(code)
    expect(code, where).toBe(error)
  }
}

function assertRedirect(res: Response, expected: Expectations, where: string): void {
  const raw = res.headers.get('location')
  expect(raw, `${where}: a redirect without Location`).toBeTruthy()
  const location = raw ?? ''
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a Location must not hold them
  expect(location, `${where}: Location ${location}`).not.toMatch(/[\s\\\u0000-\u001f\u007f]/)
  expect(URL.canParse(location), `${where}: Location ${location} is not absolute`).toBe(true)
  const target = new URL(location)
  expect(target.username + target.password, `${where}: Location has userinfo`).toBe('')

  if (expected.ownOrigins?.includes(target.origin)) {
    // To the upstream's authorization endpoint: the user must come back to our callback.
    const back = target.searchParams.get('redirect_uri')
    if (back !== null && expected.proxyUrl !== undefined) {
      expect(back, where).toBe(`${expected.proxyUrl}/callback`)
    }
    return
  }
  const registered = expected.redirectUris ?? []
  expect(
    registered.some((uri) => isRegisteredTarget(uri, target)),
    `${where}: redirect to ${location}, which is not registered (${registered.join(', ')})`,
  ).toBe(true)
  const params = target.searchParams
  const error = params.get('error')
  expect(params.has('code') !== (error !== null), `${where}: code xor error`).toBe(true)
  if (error !== null) {
    expect(AUTHORIZE_REDIRECT_ERRORS, where).toContain(error)
    const description = params.get('error_description')
    if (description !== null) expect(description, `${where}: charset`).toMatch(DESCRIPTION)
  }
  if (expected.issuer !== undefined) expect(params.get('iss'), where).toBe(expected.issuer)
  expect(params.getAll('iss').length, where).toBe(1)
  expect(params.getAll('state').length, where).toBeLessThanOrEqual(1)
}

const ADDED_PARAMS = new Set(['code', 'state', 'iss', 'error', 'error_description'])
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]'])

/**
 * Whether a redirect to `target` goes to `registered`: the same scheme, host, path and query
 * (besides the parameters the authorization server adds), and the same port unless the
 * registered URI is a loopback http one (RFC 8252 §7.3). Independent of src/.
 */
export function isRegisteredTarget(registered: string, target: URL): boolean {
  const r = new URL(registered)
  const loopback = r.protocol === 'http:' && LOOPBACK_HOSTS.has(r.hostname)
  if (r.protocol !== target.protocol || r.hostname !== target.hostname) return false
  if (!loopback && r.port !== target.port) return false
  if (r.pathname !== target.pathname) return false
  const rest = [...target.searchParams].filter(([key]) => !ADDED_PARAMS.has(key))
  return JSON.stringify(rest) === JSON.stringify([...r.searchParams])
}

/**
 * Whether a requested `redirect_uri` string may be used for `registered`: the very string, or
 * for a loopback http URI the same string with another port (RFC 8252 §7.3). The oracle of
 * the redirect-escape properties, written from the RFC text alone.
 */
export function mayRedirectTo(registered: string, requested: string): boolean {
  if (registered === requested) return true
  const match = /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(\/[^?#\\\s@]*)?(\?[^#\\\s]*)?$/
  const a = match.exec(registered)
  const b = match.exec(requested)
  if (!a || !b) return false
  const port = b[2] === undefined ? 80 : Number(b[2].slice(1))
  return (
    a[1] === b[1] &&
    (a[3] ?? '/') === (b[3] ?? '/') &&
    (a[4] ?? '') === (b[4] ?? '') &&
    port > 0 &&
    port < 65536 &&
    // `:080` names port 80, but is not the string anyone registered or a browser sends.
    (b[2] === undefined || String(port) === b[2].slice(1))
  )
}

// ---------------------------------------------------------------------------------------
// Arbitraries

/** Strings people do not type: controls, lone surrogates, RTL overrides, huge, encoded. */
const NASTY_CONSTANTS = [
  '',
  ' ',
  '\u0000',
  '\t\r\n',
  '\r\nSet-Cookie: injected=1',
  '%00',
  '%',
  '%zz',
  '%E0%A4%A',
  '\uD800',
  '\uDFFF',
  '\u202Eevil',
  '\u200B',
  '\uFEFF',
  'ｈｔｔｐｓ',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '"\'`',
  '\\',
  '🙂',
  'null',
  'undefined',
  '[]',
  '{}',
  '0',
  '-1',
  '1e309',
  'a'.repeat(3000),
]

export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_CONSTANTS) },
)

/** A header value that `Headers` accepts: no NUL, CR or LF, bytes up to 0xFF. */
export const headerValue: fc.Arbitrary<string> = fc
  .oneof(
    fc.string({ unit: 'binary-ascii', maxLength: 60 }),
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
      maxLength: 60,
    }),
    fc.constantFrom('', ' ', 'null', 'a'.repeat(2000), '%0d%0a', '\t'),
  )
  .map((value) => value.replace(/[\0\r\n]/g, ''))

export const contentType: fc.Arbitrary<string | undefined> = fc.constantFrom(
  undefined,
  '',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'APPLICATION/X-WWW-FORM-URLENCODED',
  ' application/x-www-form-urlencoded ;charset=latin1',
  'application/x-www-form-urlencoded, application/json',
  'application/json',
  'application/json; charset=utf-8',
  'Application/JSON',
  'application/jsonp',
  'application/json-patch+json',
  'text/plain',
  'text/html',
  'multipart/form-data; boundary=----x',
  'application/octet-stream',
  ';',
  '*/*',
)

export const method: fc.Arbitrary<string> = fc.constantFrom(
  'GET',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'HEAD',
  'OPTIONS',
)

/** Form parameters: known names and random ones, repeated, with hostile values. */
export function formParams(names: readonly string[]): fc.Arbitrary<[string, string][]> {
  return fc.array(
    fc.tuple(
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...names) },
        { weight: 1, arbitrary: nastyString },
      ),
      nastyString,
    ),
    { maxLength: 12 },
  )
}

/** A body built from form parameters: properly encoded, or raw with broken encodings. */
export function formBody(params: fc.Arbitrary<[string, string][]>): fc.Arbitrary<string> {
  return fc.oneof(
    params.map((pairs) => new URLSearchParams(pairs).toString()),
    params.map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&')),
    fc.constantFrom('&&&', '=', '==&=', 'a', 'a=%', '%%%=%%%', 'a=1&a=2', '\u0000=\u0000'),
    fc.json(),
  )
}

/** Bytes that are not UTF-8 in any sense. */
export const binaryBody: fc.Arbitrary<Uint8Array> = fc.uint8Array({ maxLength: 300 })

/**
 * Ways to make a redirect URI look like `registered` while pointing somewhere else (or just
 * different): userinfo, backslashes, encoded slashes and dots, fragments, other ports, scheme
 * and host case, IDN look-alikes, trailing dots, loopback look-alikes, IPv6 and numeric hosts.
 */
export function redirectEscapes(registered: string): string[] {
  const u = new URL(registered)
  const scheme = u.protocol
  const host = u.host
  const hostname = u.hostname
  const path = u.pathname + u.search
  const loopback = scheme === 'http:'
  const evil = 'evil.example'
  const candidates = [
    registered,
    `${registered}#`,
    `${registered}#frag`,
    `${registered}#@${evil}`,
    `${registered}/`,
    `${registered}?x=1`,
    `${registered}&x=1`,
    `${registered}%00`,
    `${registered}%23`,
    `${registered}\t`,
    ` ${registered}`,
    `${registered}\n`,
    `${registered}/../${evil}`,
    `${registered}/..%2F..%2F${evil}`,
    `${registered};x=1`,
    registered.toUpperCase(),
    registered.replace(scheme, scheme.toUpperCase()),
    registered.replace(/\//g, '\\'),
    registered.replace('//', '/\\'),
    registered.replace('//', '\\\\'),
    registered.replace('//', '///'),
    registered.replace('//', ''),
    registered.replace(scheme, scheme === 'https:' ? 'http:' : 'https:'),
    registered.replace(scheme, 'javascript:'),
    `javascript:alert(1)//${registered}`,
    `data:text/html,${registered}`,
    `${scheme}//${host}@${evil}${path}`,
    `${scheme}//${host}:443@${evil}${path}`,
    `${scheme}//${evil}@${host}${path}`,
    `${scheme}//user:pass@${host}${path}`,
    `${scheme}//@${host}${path}`,
    `${scheme}//:@${host}${path}`,
    `${scheme}//${evil}\\@${host}${path}`,
    `${scheme}//${host}\\@${evil}${path}`,
    `${scheme}//${host}\\.${evil}${path}`,
    `${scheme}//${host}%2F@${evil}${path}`,
    `${scheme}//${host}%5C@${evil}${path}`,
    `${scheme}//${evil}%2F${host}${path}`,
    `${scheme}//${evil}%23@${host}${path}`,
    `${scheme}//${evil}%40${host}${path}`,
    `${scheme}//${host}%2F${path}`,
    `${scheme}//${host}${path.replace(/\//g, '%2F')}`,
    `${scheme}//${host}${path.replace(/\//g, '%5C')}`,
    `${scheme}//${host}/.${path}`,
    `${scheme}//${host}//${evil}${path}`,
    `${scheme}//${host}/%2e%2e${path}`,
    `${scheme}//${host}.${path}`,
    `${scheme}//${hostname}.:${u.port || (loopback ? '80' : '443')}${path}`,
    `${scheme}//${host}.${evil}${path}`,
    `${scheme}//${hostname}.${evil}${u.port ? `:${u.port}` : ''}${path}`,
    `${scheme}//${hostname}:8443${path}`,
    `${scheme}//${hostname}:443${path}`,
    `${scheme}//${hostname}:80${path}`,
    `${scheme}//${hostname}:0${path}`,
    `${scheme}//${hostname}:65535${path}`,
    `${scheme}//${hostname}:65536${path}`,
    `${scheme}//${hostname}:01234${path}`,
    `${scheme}//${hostname}:${path}`,
    `${scheme}//${hostname.toUpperCase()}${u.port ? `:${u.port}` : ''}${path}`,
    `${scheme}//${hostname.replace('a', 'а')}${u.port ? `:${u.port}` : ''}${path}`,
    `${scheme}//${hostname.replace(/\./g, '。')}${u.port ? `:${u.port}` : ''}${path}`,
    `${scheme}//${hostname.replace(/\./g, '%2E')}${u.port ? `:${u.port}` : ''}${path}`,
    `${scheme}//xn--${hostname}${path}`,
    `http://127.0.0.1.${evil}${path}`,
    `http://localhost.${evil}${path}`,
    `http://localhost@${evil}${path}`,
    `http://127.0.0.1:1234@${evil}${path}`,
    `http://${evil}#@127.0.0.1${path}`,
    `http://${evil}?@127.0.0.1${path}`,
    `http://127.1${path}`,
    `http://2130706433${path}`,
    `http://0x7f.0.0.1${path}`,
    `http://0177.0.0.1${path}`,
    `http://127.0.0.2${path}`,
    `http://0.0.0.0${path}`,
    `http://[::1]${path}`,
    `http://[::1]:5555${path}`,
    `http://[0:0:0:0:0:0:0:1]${path}`,
    `http://[::ffff:127.0.0.1]${path}`,
    `http://[::1]@${evil}${path}`,
    `http://[::1%25eth0]${path}`,
    `http://localhost${path}`,
    `http://localhost:5555${path}`,
    `http://127.0.0.1${path}`,
    `http://127.0.0.1:5555${path}`,
    `https://localhost:5555${path}`,
    `https://${evil}${path}`,
  ]
  return [...new Set(candidates)]
}

/** A redirect URI candidate for `registered`: an escape pattern or a one-character mutation. */
export function redirectCandidate(registered: string): fc.Arbitrary<string> {
  const escapes = redirectEscapes(registered)
  const mutation = fc
    .tuple(
      fc.nat({ max: registered.length }),
      fc.constantFrom('@', '\\', '#', '/', '%2F', '%5C', '.', ':', '?', '%', ' ', '\u0000', 'a'),
      fc.boolean(),
    )
    .map(([at, insert, replace]) =>
      replace
        ? registered.slice(0, at) + insert + registered.slice(at + 1)
        : registered.slice(0, at) + insert + registered.slice(at),
    )
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...escapes) },
    { weight: 1, arbitrary: mutation },
  )
}

/**
 * Whether a redirect to `candidate` would leave the client: it does not parse, or the URL it
 * names is not one of `registered` (by `isRegisteredTarget`), or it carries what a redirect URI
 * never may (a fragment, a backslash, whitespace or controls). Such a candidate must be refused.
 */
export function escapesRegistration(registered: readonly string[], candidate: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: controls are the point
  if (/[#\\\s\u0000-\u001f\u007f]/.test(candidate)) return true
  if (!URL.canParse(candidate)) return true
  const target = new URL(candidate)
  if (target.username || target.password) return true
  return !registered.some((uri) => isRegisteredTarget(uri, target))
}

const NEVER_SCHEMES = new Set(['javascript:', 'vbscript:', 'data:', 'file:', 'blob:', 'about:'])

/**
 * Whether `uri` is safe to keep as a registered redirect URI (RFC 8252 §7, RFC 9700 §4.1,
 * OAuth 2.1 §2.3.1), checked independently of src/: absolute, no fragment, no credentials, no
 * backslash or whitespace, never an executable scheme; https, or http only on loopback (and
 * then only for native clients), or a private-use scheme for native clients.
 */
export function isSafeRegisteredRedirect(uri: string, applicationType: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: controls are the point
  if (/[#\\\s\u0000-\u001f\u007f]/.test(uri) || !URL.canParse(uri)) return false
  const u = new URL(uri)
  if (u.username || u.password || /^[a-z][a-z0-9+.-]*:\/\/[^/?]*@/i.test(uri)) return false
  if (NEVER_SCHEMES.has(u.protocol)) return false
  if (u.protocol === 'https:') return u.hostname !== ''
  if (u.protocol === 'http:') return applicationType === 'native' && LOOPBACK_HOSTS.has(u.hostname)
  return applicationType === 'native'
}

/** A body of `count` chunks of `size` bytes, streamed without a Content-Length. */
export function chunks(count: number, size: number): ReadableStream<Uint8Array> {
  let sent = 0
  return new ReadableStream({
    pull(controller) {
      if (sent++ === count) controller.close()
      else controller.enqueue(new Uint8Array(size).fill(0x78))
    },
  })
}

/**
 * Whether `candidate` is `token` in another spelling: the same three JWS segments once
 * base64url-decoded (decoders ignore trailing whitespace and the unused low bits of the last
 * character). Such a string is the same signed token, not a tampered one.
 */
export function sameJws(candidate: string, token: string): boolean {
  const a = candidate.trim().split('.')
  const b = token.split('.')
  return (
    a.length === 3 &&
    a.every((segment, i) =>
      Buffer.from(segment, 'base64url').equals(Buffer.from(b[i] ?? '', 'base64url')),
    )
  )
}

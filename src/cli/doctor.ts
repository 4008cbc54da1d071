/**
 * `mcp-oauth-proxy doctor <mcp-url>`: checks a live deployment from outside, the way an MCP
 * client meets it — discovery (RFC 9728, RFC 8414), the 401 challenge, CORS, the JWKS, dynamic
 * client registration (RFC 7591) and readiness.
 *
 * Each `assess*` function is a plain function of what was fetched, returning a
 * {@link CheckResult}; {@link runDoctor} does the fetching. Nothing here imports the proxy
 * itself: the doctor only knows the wire.
 */

/** The outcome of one check: `fail` carries why, `skip` why it could not run. */
export interface CheckResult {
  readonly name: string
  readonly status: 'pass' | 'fail' | 'skip'
  readonly detail?: string
}

/** Options of {@link runDoctor}. */
export interface DoctorOptions {
  /** Default: the global `fetch`. */
  readonly fetch?: typeof fetch
  /** Per request; default 10. */
  readonly timeoutSeconds?: number
  /** Run the registration check, which creates a client at the target; default true. */
  readonly register?: boolean
}

/** A metadata document as fetched: the parsed JSON object, or why there is none. */
export type Fetched =
  | { readonly url: string; readonly json: Record<string, unknown> }
  | { readonly url: string; readonly problem: string }

/** The redirect URI the registration check registers: a native app's loopback URI (RFC 8252 §7.3). */
export const DOCTOR_REDIRECT_URI = 'http://127.0.0.1:33418/callback'

/** The client the registration check registers; fixed, so a deduplicating server reuses one. */
export const DOCTOR_CLIENT_METADATA = {
  client_name: 'mcp-oauth-proxy doctor',
  redirect_uris: [DOCTOR_REDIRECT_URI],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
} as const

/**
 * The headers a browser-based MCP client sends to the endpoint, which CORS must allow: both
 * eras', `Mcp-Method` and `Mcp-Name` being the 2026-07-28 revision's mirrored headers.
 */
const CLIENT_HEADERS = [
  'authorization',
  'content-type',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
]
// The origin of the MCP Inspector's web UI: a browser client every MCP server should admit.
// A made-up origin would rightly meet the DNS-rebinding check (403) of a compliant server.
const PROBE_ORIGIN = 'http://localhost:6274'
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-11-25',
    capabilities: {},
    clientInfo: { name: 'mcp-oauth-proxy-doctor', version: '1' },
  },
}

/** The 2026-07-28 revision, whose requests carry `_meta` and mirrored headers. */
const MODERN_VERSION = '2026-07-28'
const DISCOVER = {
  jsonrpc: '2.0',
  id: 1,
  method: 'server/discover',
  params: {
    _meta: {
      'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
      'io.modelcontextprotocol/clientInfo': { name: 'mcp-oauth-proxy-doctor', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    },
  },
}

/** The check names, in the order they are reported. */
export const CHECK = {
  prmAt: (path: string) => `protected resource metadata at ${path}`,
  issuer: 'authorization server metadata with the same issuer',
  pkce: 'PKCE S256 advertised',
  offlineAccess: 'offline_access only in authorization server metadata',
  challenge: '401 challenge with resource_metadata',
  cors: 'CORS exposes WWW-Authenticate',
  discover: 'MCP 2026-07-28 server/discover',
  jwks: 'JWKS reachable',
  registration: 'dynamic client registration of a loopback native client',
  ready: '/readyz',
  upstream: 'upstream identity provider reachable (as /readyz reports it)',
} as const

/** The resource identifier of an MCP endpoint URL: the URL without its fragment. */
export function resourceOf(mcpUrl: string): URL {
  const url = new URL(mcpUrl)
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new TypeError(`${mcpUrl} is not an http(s) URL`)
  }
  url.hash = ''
  return url
}

/**
 * The protected-resource metadata URLs of `resource`: RFC 9728 §3.1 inserts the well-known
 * segment between host and path (`/.well-known/oauth-protected-resource/mcp`); MCP clients
 * fall back to the root document, so both must name the resource. One URL when there is no path.
 */
export function protectedResourceMetadataUrls(resource: URL): string[] {
  const base = `${resource.origin}/.well-known/oauth-protected-resource`
  const path = resource.pathname === '/' ? '' : resource.pathname
  return path ? [`${base}${path}${resource.search}`, base] : [`${base}${resource.search}`]
}

/**
 * The authorization-server metadata URL of an issuer (RFC 8414 §3.1): the well-known segment
 * goes between host and path, and a terminating slash of the path is dropped.
 */
export function authorizationServerMetadataUrl(issuer: string): string {
  const url = new URL(issuer)
  const path = url.pathname.replace(/\/$/, '')
  return `${url.origin}/.well-known/oauth-authorization-server${path}`
}

/** The OpenID Connect Discovery URL of an issuer (OIDC Discovery §4: appended to the issuer). */
export function openidConfigurationUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
}

/**
 * The auth-params of the `Bearer` challenge in a `WWW-Authenticate` value (RFC 9110 §11.6.1,
 * RFC 6750 §3), quoted-string escapes undone; undefined when there is no Bearer challenge.
 */
export function parseBearerChallenge(header: string | null): Record<string, string> | undefined {
  if (!header) return undefined
  const start = /(?:^|[\s,])Bearer(?=\s|,|$)/i.exec(header)
  if (!start) return undefined
  const params: Record<string, string> = {}
  const param = /\s*,?\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)/y
  param.lastIndex = start.index + start[0].length
  for (let match = param.exec(header); match; match = param.exec(header)) {
    const [, name = '', raw = ''] = match
    // The next challenge's scheme (a token not followed by `=`) ends this one.
    params[name.toLowerCase()] = raw.startsWith('"')
      ? raw.slice(1, -1).replace(/\\(.)/g, '$1')
      : raw
  }
  return params
}

const pass = (name: string, detail?: string): CheckResult => ({ name, status: 'pass', detail })
const fail = (name: string, detail: string): CheckResult => ({ name, status: 'fail', detail })
const skip = (name: string, detail: string): CheckResult => ({ name, status: 'skip', detail })

const strings = (value: unknown): string[] | undefined =>
  Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined

/** RFC 9728 §3.3: the document's `resource` is exactly the resource it was fetched for. */
export function assessProtectedResourceMetadata(
  name: string,
  doc: Fetched,
  resource: string,
): CheckResult {
  if ('problem' in doc) return fail(name, doc.problem)
  const { json } = doc
  if (json.resource !== resource) {
    return fail(name, `resource is ${JSON.stringify(json.resource)}, expected "${resource}"`)
  }
  const servers = strings(json.authorization_servers)
  if (!servers?.length) return fail(name, 'authorization_servers is missing or empty')
  return pass(name)
}

/**
 * RFC 8414 §3.3: the metadata's `issuer` is the issuer it was fetched for (and so is the OIDC
 * discovery document's, when one is served).
 */
export function assessIssuer(issuer: string, asm: Fetched, oidc?: Fetched): CheckResult {
  const name = CHECK.issuer
  if ('problem' in asm) return fail(name, asm.problem)
  if (asm.json.issuer !== issuer) {
    return fail(name, `issuer is ${JSON.stringify(asm.json.issuer)}, expected "${issuer}"`)
  }
  if (oidc && 'json' in oidc && oidc.json.issuer !== issuer) {
    return fail(
      name,
      `${oidc.url} has issuer ${JSON.stringify(oidc.json.issuer)}, expected "${issuer}"`,
    )
  }
  return pass(name)
}

/** MCP clients refuse an authorization server that does not advertise S256 (MCP authorization). */
export function assessPkce(asm: Record<string, unknown>): CheckResult {
  const methods = strings(asm.code_challenge_methods_supported)
  return methods?.includes('S256')
    ? pass(CHECK.pkce)
    : fail(
        CHECK.pkce,
        `code_challenge_methods_supported is ${JSON.stringify(asm.code_challenge_methods_supported)}`,
      )
}

/**
 * `offline_access` is the authorization server's business: in the resource metadata's
 * `scopes_supported` clients would request it as a resource scope; in the server's they may
 * ask for refresh tokens.
 */
export function assessOfflineAccess(
  prms: readonly Record<string, unknown>[],
  asm: Record<string, unknown>,
): CheckResult {
  const name = CHECK.offlineAccess
  if (prms.some((prm) => strings(prm.scopes_supported)?.includes('offline_access'))) {
    return fail(name, 'the protected resource metadata lists offline_access in scopes_supported')
  }
  if (!strings(asm.scopes_supported)?.includes('offline_access')) {
    return fail(name, 'the authorization server metadata does not list offline_access')
  }
  return pass(name)
}

/**
 * An unauthenticated request gets 401 with `WWW-Authenticate: Bearer resource_metadata="…"`
 * (RFC 9728 §5.1); on success also returns the metadata URL, for the caller to follow.
 */
export function assessChallenge(response: { status: number; headers: Headers }): {
  result: CheckResult
  resourceMetadata?: string
} {
  const name = CHECK.challenge
  if (response.status !== 401) {
    return {
      result: fail(name, `a request without a token answered ${response.status}, expected 401`),
    }
  }
  const header = response.headers.get('www-authenticate')
  const params = parseBearerChallenge(header)
  if (!params) {
    return { result: fail(name, `no Bearer challenge in WWW-Authenticate: ${header ?? '(none)'}`) }
  }
  const resourceMetadata = params.resource_metadata
  if (!resourceMetadata) {
    return { result: fail(name, `the challenge has no resource_metadata: ${header}`) }
  }
  if (!URL.canParse(resourceMetadata)) {
    return { result: fail(name, `resource_metadata is not an absolute URL: ${resourceMetadata}`) }
  }
  return { result: pass(name), resourceMetadata }
}

/**
 * Browser-based clients (MCP Inspector) can only read the challenge when it is exposed, and
 * can only send the token when the preflight allows `Authorization` (Fetch: `*` does not).
 */
export function assessCors(
  challenge: { headers: Headers },
  preflight: { status: number; headers: Headers },
): CheckResult {
  const name = CHECK.cors
  const allowsOrigin = (headers: Headers) =>
    ['*', PROBE_ORIGIN].includes(headers.get('access-control-allow-origin') ?? '')
  const listed = (headers: Headers, header: string) =>
    (headers.get(header) ?? '')
      .split(',')
      .map((v) => v.trim().toLowerCase())
      .filter(Boolean)
  if (!allowsOrigin(challenge.headers)) {
    return fail(name, 'the 401 response has no Access-Control-Allow-Origin for other origins')
  }
  const exposed = listed(challenge.headers, 'access-control-expose-headers')
  if (!exposed.includes('www-authenticate') && !exposed.includes('*')) {
    return fail(name, 'Access-Control-Expose-Headers does not include WWW-Authenticate')
  }
  if (preflight.status < 200 || preflight.status > 299 || !allowsOrigin(preflight.headers)) {
    return fail(
      name,
      `the preflight (OPTIONS) answered ${preflight.status} without allowing the origin`,
    )
  }
  const allowed = listed(preflight.headers, 'access-control-allow-headers')
  const missing = CLIENT_HEADERS.filter(
    (h) => !allowed.includes(h) && !(h !== 'authorization' && allowed.includes('*')),
  )
  if (missing.length) {
    return fail(name, `the preflight does not allow ${missing.join(', ')}`)
  }
  return pass(name)
}

/**
 * A 2026-07-28 `server/discover` (the revision's required method) answers, or, as the doctor
 * holds no token, is refused with the same Bearer challenge as a 2025 request: a modern
 * client meets the authorization server the same way. A 400 or 404 means the endpoint does not
 * take modern requests at all.
 */
export function assessDiscover(
  response: { status: number; headers: Headers },
  body: unknown,
): CheckResult {
  const name = CHECK.discover
  if (response.status === 401) {
    const params = parseBearerChallenge(response.headers.get('www-authenticate'))
    return params?.resource_metadata
      ? pass(name, 'a modern request without a token gets the 401 challenge')
      : fail(name, 'a modern request without a token got 401 without a resource_metadata challenge')
  }
  const versions = (body as { result?: { supportedVersions?: unknown } } | undefined)?.result
    ?.supportedVersions
  if (response.status === 200 && Array.isArray(versions) && versions.includes(MODERN_VERSION)) {
    return pass(name, `supported versions: ${versions.join(', ')}`)
  }
  return fail(
    name,
    `answered ${response.status}: the endpoint does not serve MCP ${MODERN_VERSION} requests`,
  )
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

/** RFC 7517 §5: a JSON object with a non-empty `keys` array of public keys. */
export function assessJwks(doc: Fetched): CheckResult {
  const name = CHECK.jwks
  if ('problem' in doc) return fail(name, doc.problem)
  const keys = doc.json.keys
  if (!Array.isArray(keys) || keys.length === 0) return fail(name, 'keys is missing or empty')
  for (const key of keys as Record<string, unknown>[]) {
    if (typeof key?.kty !== 'string') return fail(name, 'a key has no kty')
    const secret = PRIVATE_JWK_MEMBERS.filter((member) => member in key)
    if (secret.length) {
      return fail(name, `key ${String(key.kid)} exposes private members ${secret.join(', ')}`)
    }
  }
  return pass(name, `${keys.length} key${keys.length === 1 ? '' : 's'}`)
}

/** RFC 7591 §3.2.1: the registration succeeded and returned a public client for our redirect URI. */
export function assessRegistration(status: number, body: unknown): CheckResult {
  const name = CHECK.registration
  const json = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>
  if (status < 200 || status > 299) {
    const why =
      typeof json.error === 'string' ? `: ${json.error} ${json.error_description ?? ''}` : ''
    return fail(name, `registration answered ${status}${why}`.trim())
  }
  if (typeof json.client_id !== 'string' || !json.client_id) {
    return fail(name, 'the registration response has no client_id')
  }
  if (!strings(json.redirect_uris)?.includes(DOCTOR_REDIRECT_URI)) {
    return fail(name, `the registered redirect_uris are ${JSON.stringify(json.redirect_uris)}`)
  }
  if (json.client_secret !== undefined) {
    return fail(name, 'a client_secret was issued to a public (none) client')
  }
  return pass(name, `client_id ${json.client_id}`)
}

/** The deployment's readiness probe answers 200; the store it reports is shown. */
export function assessReadiness(status: number, body?: unknown): CheckResult {
  const store = (body as { store?: unknown } | undefined)?.store
  return status === 200
    ? pass(CHECK.ready, typeof store === 'string' ? `store: ${store}` : undefined)
    : fail(CHECK.ready, `GET /readyz answered ${status}, expected 200`)
}

/**
 * The proxy's `/readyz` body names its upstream's state (`ok`, `checking`, `unreachable
 * (<cause>)`); a failing upstream fails the check with that cause. Servers that do not report
 * an upstream are not judged.
 */
export function assessUpstream(body: unknown): CheckResult {
  const name = CHECK.upstream
  const upstream = upstreamState(body)
  if (typeof upstream !== 'string') return skip(name, '/readyz does not report an upstream')
  if (upstream === 'ok') return pass(name)
  if (upstream === 'checking') return skip(name, 'the first check is still running; run again')
  return fail(name, upstream)
}

function upstreamState(readyzBody: unknown): unknown {
  return readyzBody && typeof readyzBody === 'object'
    ? (readyzBody as Record<string, unknown>).upstream
    : undefined
}

/** A failed request, described for a person: what was asked and what went wrong. */
class RequestFailed extends Error {}

/**
 * Checks the deployment whose MCP endpoint is `mcpUrl` and returns one result per check, in
 * the order of {@link CHECK}. Checks that need a document that could not be fetched are
 * skipped, saying which.
 */
export async function runDoctor(
  mcpUrl: string,
  options: DoctorOptions = {},
): Promise<CheckResult[]> {
  const resource = resourceOf(mcpUrl)
  const doFetch = options.fetch ?? fetch
  const timeoutSeconds = options.timeoutSeconds ?? 10
  const show = (url: string) => {
    const parsed = new URL(url)
    return parsed.origin === resource.origin ? `${parsed.pathname}${parsed.search}` : url
  }

  const request = async (url: string, init: RequestInit = {}): Promise<Response> => {
    const method = init.method ?? 'GET'
    try {
      return await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutSeconds * 1000) })
    } catch (error) {
      throw new RequestFailed(
        `${method} ${show(url)}: ${describeFetchError(error, timeoutSeconds)}`,
      )
    }
  }
  const getJson = async (url: string): Promise<Fetched> => {
    let response: Response
    try {
      response = await request(url, { headers: { accept: 'application/json' } })
    } catch (error) {
      return { url, problem: (error as Error).message }
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      return { url, problem: `GET ${show(url)} answered ${response.status}` }
    }
    try {
      const json: unknown = await response.json()
      if (json && typeof json === 'object' && !Array.isArray(json)) {
        return { url, json: json as Record<string, unknown> }
      }
    } catch {
      // Not JSON at all: the same answer as JSON that is not an object.
    }
    return { url, problem: `GET ${show(url)} is not a JSON object` }
  }

  const results: CheckResult[] = []
  const expected = resource.href

  // RFC 9728: both metadata locations, each naming exactly this resource.
  const prmUrls = protectedResourceMetadataUrls(resource)
  const prmDocs = await Promise.all(prmUrls.map(getJson))
  prmDocs.forEach((doc) => {
    results.push(assessProtectedResourceMetadata(CHECK.prmAt(show(doc.url)), doc, expected))
  })
  const prms = prmDocs.flatMap((doc) => ('json' in doc ? [doc.json] : []))
  const [issuer] = prms.map((prm) => strings(prm.authorization_servers)?.[0]).filter(Boolean)

  // RFC 8414: the first authorization server's metadata.
  let asm: Record<string, unknown> | undefined
  if (!issuer) {
    const why = 'no authorization_servers in the protected resource metadata'
    results.push(skip(CHECK.issuer, why), skip(CHECK.pkce, why), skip(CHECK.offlineAccess, why))
  } else {
    const [asmDoc, oidcDoc] = await Promise.all([
      getJson(authorizationServerMetadataUrl(issuer)),
      getJson(openidConfigurationUrl(issuer)),
    ])
    results.push(assessIssuer(issuer, asmDoc, oidcDoc))
    if ('json' in asmDoc) {
      asm = asmDoc.json
      results.push(assessPkce(asm), assessOfflineAccess(prms, asm))
    } else {
      const why = 'no authorization server metadata'
      results.push(skip(CHECK.pkce, why), skip(CHECK.offlineAccess, why))
    }
  }

  // The 401 challenge, read as a browser-based client (the Inspector's UI) would.
  let challenged: Response | undefined
  try {
    challenged = await request(resource.href, {
      method: 'POST',
      headers: {
        origin: PROBE_ORIGIN,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify(INITIALIZE),
    })
    await challenged.body?.cancel()
  } catch (error) {
    if (!(error instanceof RequestFailed)) throw error
    results.push(fail(CHECK.challenge, error.message), fail(CHECK.cors, error.message))
  }
  if (challenged) {
    const { result, resourceMetadata } = assessChallenge(challenged)
    if (resourceMetadata) {
      // The challenge must lead to metadata for this very resource.
      const linked = assessProtectedResourceMetadata(
        CHECK.challenge,
        await getJson(resourceMetadata),
        expected,
      )
      results.push(
        linked.status === 'pass'
          ? result
          : fail(CHECK.challenge, `resource_metadata ${show(resourceMetadata)}: ${linked.detail}`),
      )
    } else {
      results.push(result)
    }
    try {
      const preflight = await request(resource.href, {
        method: 'OPTIONS',
        headers: {
          origin: PROBE_ORIGIN,
          'access-control-request-method': 'POST',
          'access-control-request-headers': CLIENT_HEADERS.join(','),
        },
      })
      await preflight.body?.cancel()
      results.push(assessCors(challenged, preflight))
    } catch (error) {
      if (!(error instanceof RequestFailed)) throw error
      results.push(fail(CHECK.cors, error.message))
    }
  }

  // The 2026-07-28 era: a stateless request with its `_meta` and mirrored headers.
  try {
    const discovered = await request(resource.href, {
      method: 'POST',
      headers: {
        origin: PROBE_ORIGIN,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': MODERN_VERSION,
        'mcp-method': DISCOVER.method,
      },
      body: JSON.stringify(DISCOVER),
    })
    const body: unknown = await discovered.json().catch(() => undefined)
    results.push(assessDiscover(discovered, body))
  } catch (error) {
    if (!(error instanceof RequestFailed)) throw error
    results.push(fail(CHECK.discover, error.message))
  }

  // The keys clients' resource servers verify with.
  const jwksUri = typeof asm?.jwks_uri === 'string' ? asm.jwks_uri : undefined
  if (jwksUri) results.push(assessJwks(await getJson(jwksUri)))
  else if (asm) results.push(fail(CHECK.jwks, 'the authorization server metadata has no jwks_uri'))
  else results.push(skip(CHECK.jwks, 'no authorization server metadata'))

  // Registration as an MCP SDK client does it (no application_type: the SDK sends none).
  const registrationEndpoint =
    typeof asm?.registration_endpoint === 'string' ? asm.registration_endpoint : undefined
  if (options.register === false) {
    results.push(skip(CHECK.registration, 'skipped (--no-register)'))
  } else if (!asm) {
    results.push(skip(CHECK.registration, 'no authorization server metadata'))
  } else if (!registrationEndpoint) {
    results.push(
      fail(CHECK.registration, 'the authorization server metadata has no registration_endpoint'),
    )
  } else {
    try {
      const registered = await request(registrationEndpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(DOCTOR_CLIENT_METADATA),
      })
      const body: unknown = await registered.json().catch(() => undefined)
      results.push(assessRegistration(registered.status, body))
    } catch (error) {
      if (!(error instanceof RequestFailed)) throw error
      results.push(fail(CHECK.registration, error.message))
    }
  }

  // Readiness lives at the root of the deployment, next to the MCP endpoint.
  try {
    const readyz = async () => {
      const ready = await request(`${resource.origin}/readyz`, {
        headers: { accept: 'application/json' },
      })
      return { status: ready.status, body: (await ready.json().catch(() => undefined)) as unknown }
    }
    let ready = await readyz()
    // A proxy that has just started may still be fetching its upstream's discovery document.
    const deadline = Date.now() + timeoutSeconds * 1000
    while (upstreamState(ready.body) === 'checking' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      ready = await readyz()
    }
    results.push(assessReadiness(ready.status, ready.body), assessUpstream(ready.body))
  } catch (error) {
    if (!(error instanceof RequestFailed)) throw error
    results.push(fail(CHECK.ready, error.message), skip(CHECK.upstream, 'no answer from /readyz'))
  }
  return results
}

function describeFetchError(error: unknown, timeoutSeconds: number): string {
  if (error instanceof DOMException && error.name === 'TimeoutError') {
    return `no answer within ${timeoutSeconds} s`
  }
  const cause = (error as { cause?: { code?: string; message?: string } }).cause
  if (cause?.code) return `cannot connect (${cause.code})`
  if (cause?.message) return cause.message
  return error instanceof Error ? error.message : String(error)
}

/**
 * The report as printed: `✔ name (detail)`, `✘ name — why`, `- name — why` for skipped
 * checks, then a summary line.
 */
export function formatReport(results: readonly CheckResult[]): string {
  const lines = results.map((r) => {
    if (r.status === 'pass') return `✔ ${r.name}${r.detail ? ` (${r.detail})` : ''}`
    return `${r.status === 'fail' ? '✘' : '-'} ${r.name} — ${r.detail ?? ''}`
  })
  const count = (status: CheckResult['status']) => results.filter((r) => r.status === status).length
  const failed = count('fail')
  const skipped = count('skip')
  const summary = [
    `${count('pass')} passed`,
    `${failed} failed`,
    ...(skipped ? [`${skipped} skipped`] : []),
  ].join(', ')
  return `${lines.join('\n')}\n\n${summary}\n`
}

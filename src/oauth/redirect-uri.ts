import { LOOPBACK_NAME_PATTERN, LOOPBACK_NAMES } from '../loopback.js'

/** RFC 7591 §2 `application_type`: native apps may use loopback and private-use schemes. */
export type ApplicationType = 'native' | 'web'

const MAX_REDIRECT_URI_LENGTH = 2048

// Schemes that execute, read local content or are not navigable: never a redirect target.
const FORBIDDEN_SCHEMES = new Set([
  'javascript:',
  'vbscript:',
  'data:',
  'file:',
  'blob:',
  'about:',
  'filesystem:',
  'view-source:',
  'ws:',
  'wss:',
  'ftp:',
  'mailto:',
  'tel:',
  'sms:',
])

/** True for `http://localhost`, `http://127.0.0.1` and `http://[::1]` on any port (RFC 8252 §7.3). */
export function isLoopbackRedirect(uri: URL): boolean {
  return uri.protocol === 'http:' && LOOPBACK_NAMES.has(uri.hostname)
}

/** A private-use URI scheme such as `cursor://…` (RFC 8252 §7.1). */
export function isPrivateUseScheme(uri: URL): boolean {
  return uri.protocol !== 'http:' && uri.protocol !== 'https:'
}

/**
 * Returns what is wrong with `raw` as a redirect URI for a client of `applicationType`, or
 * undefined when it is acceptable: https anywhere but loopback for web clients; for native
 * clients also loopback http on any port and private-use schemes (RFC 8252 §7, MCP
 * 2026-07-28). Fragments, credentials, backslashes and executable schemes are never allowed.
 */
export function checkRedirectUri(
  raw: string,
  applicationType: ApplicationType,
): string | undefined {
  if (raw.length > MAX_REDIRECT_URI_LENGTH) return 'is too long'
  // The WHATWG parser silently rewrites these; a URI that needs rewriting is not exact.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (/[\s\\\u0000-\u001f\u007f]/.test(raw))
    return 'must not contain whitespace, control characters or backslashes'
  if (raw.includes('#')) return 'must not contain a fragment'
  let uri: URL
  try {
    uri = new URL(raw)
  } catch {
    return 'is not an absolute URI'
  }
  if (FORBIDDEN_SCHEMES.has(uri.protocol)) return `must not use the ${uri.protocol} scheme`
  if (uri.username || uri.password || /^[a-z][a-z0-9+.-]*:\/\/[^/?]*@/i.test(raw)) {
    return 'must not contain user credentials'
  }
  if (uri.protocol === 'https:') {
    if (!uri.hostname) return 'must name a host'
    if (applicationType === 'web' && LOOPBACK_NAMES.has(uri.hostname)) {
      return 'web clients must not use loopback redirect URIs'
    }
    return undefined
  }
  if (uri.protocol === 'http:') {
    if (!LOOPBACK_NAMES.has(uri.hostname)) return 'must use https (plain http only on loopback)'
    if (applicationType === 'web') return 'web clients must not use loopback redirect URIs'
    return undefined
  }
  if (applicationType === 'web') return 'web clients must use https redirect URIs'
  return undefined
}

/**
 * RFC 7591 leaves `application_type` optional and the MCP SDK 1.x client omits it: a client
 * with any loopback or private-use redirect URI is a native app, anything else a web app.
 */
export function inferApplicationType(redirectUris: readonly string[]): ApplicationType {
  for (const raw of redirectUris) {
    const uri = URL.canParse(raw) ? new URL(raw) : undefined
    if (uri && (isLoopbackRedirect(uri) || isPrivateUseScheme(uri))) return 'native'
  }
  return 'web'
}

/**
 * Whether `requested` may be used where `registered` was registered: the very string, or for
 * a loopback http URI the same string but for the port (RFC 8252 §7.3: native apps bind
 * ephemeral ports; OAuth 2.1 §4.1.1 and RFC 9700 §4.1.3 for exact matching). Compared as
 * strings, never as parsed URLs: a parser also accepts `HTTP://127.1/cb`, `:080` or a path
 * with dot segments, none of which is the string the client registered.
 */
export function redirectUriMatches(registered: string, requested: string): boolean {
  if (registered === requested) return true
  const a = LOOPBACK_REDIRECT.exec(registered)
  const b = LOOPBACK_REDIRECT.exec(requested)
  if (!a || !b || Number(b[2] ?? 80) > 65_535) return false
  return a[1] === b[1] && (a[3] ?? '/') === (b[3] ?? '/') && (a[4] ?? '') === (b[4] ?? '')
}

/** A loopback http URI as a string: host, port (no leading zero), path, query; no fragment. */
const LOOPBACK_REDIRECT = new RegExp(
  `^http://(${LOOPBACK_NAME_PATTERN})(?::([1-9]\\d{0,4}))?(/[^?#\\\\\\s@]*)?(\\?[^#\\\\\\s]*)?$`,
)

/** How a page names where the browser goes after sign-in (consent page, account page). */
export function describeRedirect(redirectUri: string): string {
  const url = new URL(redirectUri)
  if (isLoopbackRedirect(url)) return `an application on this computer (${url.host})`
  if (isPrivateUseScheme(url))
    return `the ${url.protocol.slice(0, -1)} application on this computer`
  return url.host
}

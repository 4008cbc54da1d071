import type { Context } from 'hono'
import { deleteCookie, getCookie, getSignedCookie, setCookie, setSignedCookie } from 'hono/cookie'
import type { Config } from '../config.js'
import { randomToken } from '../crypto.js'
import { deriveKey } from '../tokens/derive.js'
import type { Keys } from '../tokens/keys.js'

const MAX_REMEMBERED_CONSENTS = 10
const CONSENT_MAX_AGE_SECONDS = 30 * 86_400
const BROWSER_MAX_AGE_SECONDS = 86_400

/** One remembered approval: this client, this redirect URI, these scopes, until `exp`. */
export interface RememberedConsent {
  readonly c: string
  readonly r: string
  readonly s: readonly string[]
  readonly exp: number
}

// `__Host-` pins a cookie to this origin over https (no Domain, Path=/ and Secure). Plain-http
// localhost cannot hold Secure cookies, so only there the prefix and Secure are dropped.
function names(config: Config) {
  const secure = config.publicUrl.protocol === 'https:'
  return {
    secure,
    browser: secure ? 'browser' : 'mcp-browser',
    consent: secure ? 'consent' : 'mcp-consent',
    account: secure ? 'account' : 'mcp-account',
    prefix: secure ? ('host' as const) : undefined,
  }
}

/** Every cookie of ours: whole site, HttpOnly, SameSite=Lax, `__Host-` and Secure on https. */
function cookieOptions(n: ReturnType<typeof names>, maxAgeSeconds: number) {
  return {
    path: '/',
    httpOnly: true,
    secure: n.secure,
    sameSite: 'Lax',
    maxAge: maxAgeSeconds,
    prefix: n.prefix,
  } as const
}

function rawName(config: Config, name: 'browser' | 'consent' | 'account'): string {
  const n = names(config)
  return n.prefix ? `__Host-${n[name]}` : n[name]
}

/**
 * The browser's binding id: set at `/authorize`, checked on the consent form and at
 * `/callback`, so a sign-in started in one browser cannot be completed in another.
 */
export function browserId(c: Context, config: Config): string | undefined {
  return getCookie(c, rawName(config, 'browser'))
}

/** Returns the browser's binding id, setting a new one when it has none. */
export function ensureBrowserId(c: Context, config: Config): string {
  const existing = browserId(c, config)
  if (existing && /^[\w-]{43}$/.test(existing)) return existing
  const id = randomToken(32)
  const n = names(config)
  setCookie(c, n.browser, id, cookieOptions(n, BROWSER_MAX_AGE_SECONDS))
  return id
}

async function cookieSecret(keys: Keys): Promise<Uint8Array> {
  const { encryption } = await keys.current()
  return deriveKey(encryption.key, 'mcp-oauth-proxy consent cookie')
}

/** Approvals this browser remembers (HMAC-signed, so they cannot be forged or edited). */
export async function rememberedConsents(
  c: Context,
  config: Config,
  keys: Keys,
  now: number,
): Promise<RememberedConsent[]> {
  const n = names(config)
  const value = await getSignedCookie(c, await cookieSecret(keys), n.consent, n.prefix)
  if (!value) return []
  try {
    const parsed = JSON.parse(value) as RememberedConsent[]
    return Array.isArray(parsed) ? parsed.filter((entry) => entry.exp > now) : []
  } catch {
    return []
  }
}

/** Whether this browser already approved `scopes` for this client and redirect URI. */
export function consentCovers(
  remembered: readonly RememberedConsent[],
  clientId: string,
  redirectUri: string,
  scopes: readonly string[],
): boolean {
  return remembered.some(
    (entry) =>
      entry.c === clientId && entry.r === redirectUri && scopes.every((s) => entry.s.includes(s)),
  )
}

/** Remembers an approval in the signed consent cookie, keeping the most recent few. */
export async function rememberConsent(
  c: Context,
  config: Config,
  keys: Keys,
  now: number,
  entry: Omit<RememberedConsent, 'exp'>,
): Promise<void> {
  const others = (await rememberedConsents(c, config, keys, now)).filter(
    (e) => !(e.c === entry.c && e.r === entry.r),
  )
  const next = [...others, { ...entry, exp: Math.floor(now) + CONSENT_MAX_AGE_SECONDS }].slice(
    -MAX_REMEMBERED_CONSENTS,
  )
  const n = names(config)
  await setSignedCookie(
    c,
    n.consent,
    JSON.stringify(next),
    await cookieSecret(keys),
    cookieOptions(n, CONSENT_MAX_AGE_SECONDS),
  )
}

/** Forgets every remembered approval (used when a user denies). */
export function forgetConsents(c: Context, config: Config): void {
  const n = names(config)
  deleteCookie(c, n.consent, { path: '/', secure: n.secure, prefix: n.prefix })
}

/** Forgets this browser's remembered approvals of one client, so its next request asks again. */
export async function forgetConsent(
  c: Context,
  config: Config,
  keys: Keys,
  now: number,
  clientId: string,
): Promise<void> {
  const remembered = await rememberedConsents(c, config, keys, now)
  const kept = remembered.filter((entry) => entry.c !== clientId)
  if (kept.length === remembered.length) return
  if (!kept.length) return forgetConsents(c, config)
  const n = names(config)
  const maxAge = Math.max(...kept.map((entry) => entry.exp)) - Math.floor(now)
  await setSignedCookie(
    c,
    n.consent,
    JSON.stringify(kept),
    await cookieSecret(keys),
    cookieOptions(n, maxAge),
  )
}

/** The `/account` page's session id, from its cookie. */
export function accountSessionId(c: Context, config: Config): string | undefined {
  return getCookie(c, rawName(config, 'account'))
}

/** Starts the `/account` page's session cookie (HttpOnly, SameSite=Lax, `__Host-` on https). */
export function setAccountSession(
  c: Context,
  config: Config,
  id: string,
  maxAgeSeconds: number,
): void {
  const n = names(config)
  setCookie(c, n.account, id, cookieOptions(n, maxAgeSeconds))
}

/** Ends the `/account` page's session cookie. */
export function clearAccountSession(c: Context, config: Config): void {
  const n = names(config)
  deleteCookie(c, n.account, { path: '/', secure: n.secure, prefix: n.prefix })
}

/**
 * Loopback, defined once. `hostname` is as `URL.hostname` spells it (IPv6 in brackets).
 *
 * The names a client may use for a loopback redirect URI or browser origin (RFC 8252 §7.3
 * `127.0.0.1` and `[::1]`, §8.3 `localhost`), matched as exact strings: those are the
 * strings clients register and browsers send.
 */
export const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]'])

/** `LOOPBACK_NAMES` as a regular-expression alternation, for matchers of whole URI strings. */
export const LOOPBACK_NAME_PATTERN = 'localhost|127\\.0\\.0\\.1|\\[::1\\]'

/**
 * True for any host that never leaves the machine (the names above and all of 127.0.0.0/8):
 * where plain http is acceptable for the proxy's own URLs and its upstream's.
 */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_NAMES.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname)
}

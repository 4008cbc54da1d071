import { hkdfSync } from 'node:crypto'

/**
 * A 256-bit key for one purpose, derived from `secret` with HKDF-SHA256 (RFC 5869, no salt)
 * under `info`, which names the purpose: keys for different purposes are independent, so one
 * secret (the encryption key) can back cookies, session ids and the like without any of them
 * being usable as another.
 */
export function deriveKey(secret: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(), info, 32))
}

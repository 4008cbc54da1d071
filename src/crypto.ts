import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/** A URL-safe random token with `bytes` bytes of entropy (default 256 bits). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url')
}

/** SHA-256 of a secret as base64url: how codes, secrets and refresh tokens are kept at rest. */
export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url')
}

/** Compares two strings in time that depends only on their length. */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import type { Keys } from './keys.js'

const IV_BYTES = 12
const TAG_BYTES = 16
// Unpadded base64url, checked before decoding: Buffer.from skips characters outside the alphabet
// where jose's decoder throws, and the IV and tag lengths are fixed by RFC 7518 §5.3.
const BASE64URL = /^[A-Za-z0-9_-]*$/
const IV_BASE64URL = /^[A-Za-z0-9_-]{16}$/
const TAG_BASE64URL = /^[A-Za-z0-9_-]{22}$/
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Encrypts `value` as a compact JWE (`dir` / `A256GCM`, RFC 7516 §7.1, RFC 7518 §5.3) under the
 * current encryption key, naming it by `kid`. Used for the upstream token inside access tokens
 * and for upstream token sets and successor refresh tokens kept in the store. Built with
 * `node:crypto` directly rather than jose, whose WebCrypto path (a thread-pool job and a key
 * import per call) the `/token` benchmark showed at a quarter of a code exchange's CPU; byte
 * for byte what jose's `CompactEncrypt` makes: the protected header
 * as base64url, an empty encrypted key, a 96-bit random IV, the ciphertext and the 128-bit tag,
 * with the ASCII of the encoded protected header as the additional authenticated data.
 */
export async function seal(keys: Keys, value: unknown): Promise<string> {
  const { encryption } = await keys.current()
  const header = Buffer.from(
    JSON.stringify({ alg: 'dir', enc: 'A256GCM', kid: encryption.kid }),
  ).toString('base64url')
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv('aes-256-gcm', encryption.keyObject, iv, {
    authTagLength: TAG_BYTES,
  })
  cipher.setAAD(Buffer.from(header, 'ascii'))
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
  return `${header}..${iv.toString('base64url')}.${ciphertext.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`
}

/**
 * Decrypts what `seal` produced; throws when the JWE is not ours, altered, or malformed: five
 * parts, no encrypted key, a JSON object header naming `dir`, `A256GCM` and our key's `kid`
 * (no `zip` or `crit`, which we never write), a 12-byte IV and a full 16-byte tag — a shorter
 * tag would be accepted by GCM itself and make forgery cheaper (RFC 7518 §5.3 fixes 128 bits).
 */
export async function unseal<T>(keys: Keys, jwe: string): Promise<T> {
  const parts = jwe.split('.')
  if (parts.length !== 5) throw new Error('a sealed value has five parts')
  const [header = '', encryptedKey, iv = '', ciphertext = '', tag = ''] = parts
  if (encryptedKey !== '') throw new Error('a dir JWE has no encrypted key')
  if (!header || !BASE64URL.test(header)) throw new Error('the JWE header is malformed')
  const parsed: unknown = JSON.parse(strictUtf8.decode(Buffer.from(header, 'base64url')))
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('the JWE header is not a JSON object')
  }
  const fields = parsed as Record<string, unknown>
  const { encryption } = await keys.current()
  if (
    fields.alg !== 'dir' ||
    fields.enc !== 'A256GCM' ||
    fields.kid !== encryption.kid ||
    'zip' in fields ||
    'crit' in fields
  ) {
    throw new Error('sealed with an unknown key or algorithm')
  }
  if (!IV_BASE64URL.test(iv)) throw new Error('the JWE IV is not 96 bits')
  if (!TAG_BASE64URL.test(tag)) throw new Error('the JWE tag is not 128 bits')
  if (!BASE64URL.test(ciphertext)) throw new Error('the JWE ciphertext is malformed')
  const ivBytes = Buffer.from(iv, 'base64url')
  const tagBytes = Buffer.from(tag, 'base64url')
  if (ivBytes.length !== IV_BYTES || tagBytes.length !== TAG_BYTES) {
    throw new Error('the JWE IV or tag has the wrong length')
  }
  const decipher = createDecipheriv('aes-256-gcm', encryption.keyObject, ivBytes, {
    authTagLength: TAG_BYTES,
  })
  decipher.setAAD(Buffer.from(header, 'ascii'))
  decipher.setAuthTag(tagBytes)
  const plaintext = Buffer.concat([
    decipher.update(Buffer.from(ciphertext, 'base64url')),
    decipher.final(),
  ])
  return JSON.parse(plaintext.toString('utf8')) as T
}

import { CompactEncrypt, compactDecrypt, decodeProtectedHeader } from 'jose'
import type { Keys } from './keys.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * Encrypts `value` as a compact JWE (`dir` / `A256GCM`, RFC 7516) under the current encryption
 * key, naming it by `kid`. Used for the upstream token inside access tokens and for upstream
 * token sets and successor refresh tokens kept in the store.
 */
export async function seal(keys: Keys, value: unknown): Promise<string> {
  const { encryption } = await keys.current()
  return new CompactEncrypt(encoder.encode(JSON.stringify(value)))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: encryption.kid })
    .encrypt(encryption.key)
}

/** Decrypts what `seal` produced; throws when the JWE is not ours, altered, or malformed. */
export async function unseal<T>(keys: Keys, jwe: string): Promise<T> {
  const header = decodeProtectedHeader(jwe)
  const { encryption } = await keys.current()
  if (header.alg !== 'dir' || header.enc !== 'A256GCM' || header.kid !== encryption.kid) {
    throw new Error('sealed with an unknown key or algorithm')
  }
  const { plaintext } = await compactDecrypt(jwe, encryption.key, {
    keyManagementAlgorithms: ['dir'],
    contentEncryptionAlgorithms: ['A256GCM'],
  })
  return JSON.parse(decoder.decode(plaintext)) as T
}

import {
  createHash,
  createPrivateKey,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import {
  CompactEncrypt,
  calculateJwkThumbprint,
  compactDecrypt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from 'jose'
import type { Clock } from '../clock.js'
import { ConfigError } from '../config.js'
import { StoreUnavailableError } from '../errors.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import type { Store } from '../store/store.js'
import { deriveKey } from './derive.js'

/** An ES256 key the proxy signs access tokens with (RFC 9068 §2.1). */
export interface SigningKey {
  readonly kid: string
  /**
   * Imported once for `node:crypto`: signing through it directly skips jose's WebCrypto round
   * trip (a thread-pool job and a promise per signature) on the hot path.
   */
  readonly privateKey: KeyObject
  /** For jose's pinned `jwtVerify`. */
  readonly publicKey: CryptoKey
  readonly publicJwk: JWK
}

/** A 256-bit key for `dir`/`A256GCM` JWE and for upstream tokens kept at rest. */
export interface EncryptionKey {
  readonly kid: string
  readonly key: Uint8Array
  /** `key` imported once for `node:crypto` ciphers, instead of on every seal and unseal. */
  readonly keyObject: KeyObject
}

/** The keys in force: sign with `signing`, verify with any of `verifying`. */
export interface KeySet {
  readonly signing: SigningKey
  /** Current first, then the previous key, so rotation does not invalidate live tokens. */
  readonly verifying: readonly SigningKey[]
  readonly encryption: EncryptionKey
  /** The RFC 7517 JWK Set served at `/.well-known/jwks.json`. */
  readonly jwks: { readonly keys: readonly JWK[] }
}

/** Hands out the current `KeySet`; shared by every instance that shares a store. */
export interface Keys {
  current(): Promise<KeySet>
  /** The verification key for `kid`, re-reading the store (throttled) for keys it has not seen. */
  verificationKey(kid: string | undefined): Promise<SigningKey | undefined>
}

export interface KeysOptions {
  store: Store
  clock: Clock
  /** `SIGNING_KEY`: PEM (PKCS#8 or SEC1) or JWK of an EC P-256 private key. */
  signingKey?: string | undefined
  /** `SIGNING_KEY_PREVIOUS`: still verifies, never signs. */
  signingKeyPrevious?: string | undefined
  /** `ENCRYPTION_KEY`: 32 bytes as base64url, base64 or hex. */
  encryptionKey?: string | undefined
  /** Generated signing keys are replaced after this long. */
  rotationSeconds: number
  /**
   * `KEYS_SECRET`: generated keys are stored encrypted under a key derived from it. Without
   * it, from `upstreamClientSecret`; with neither, only a `local` store may hold them.
   */
  keysSecret?: string | undefined
  /** The upstream client secret, the key-encryption secret when `keysSecret` is unset. */
  upstreamClientSecret?: string | undefined
  /** How long an instance trusts its copy before re-reading the store. */
  refreshSeconds?: number
}

interface StoredSigningKey {
  jwk: JWK
  createdAt: number
}

interface StoredKeys {
  signing: StoredSigningKey[]
  encryption: { kid: string; k: string }
}

/** Generated keys, sealed under the key-encryption key (in clear only in a `local` store). */
const KEYS_KEY = storeKey.keySet()
const ROTATION_LOCK_KEY = storeKey.keyRotation()
/** Where versions before 2 kept generated keys, in clear: sealed into the key set, then gone. */
const LEGACY_KEYS_KEY = storeKey.legacyKeySet()

/** What the key set holds: the keys sealed (JWE, `dir`/`A256GCM`) under a key-encryption key. */
interface SealedKeys {
  sealed: string
}

/** A key-encryption key: 256 bits derived from a secret that is not in the store. */
interface Kek {
  readonly kid: string
  readonly key: Uint8Array
  /** The variable it comes from, for messages. */
  readonly source: string
}
const UNKNOWN_KID_RELOAD_SECONDS = 5

/**
 * Loads or creates the proxy's keys. Configured keys are used as given. Otherwise keys are
 * generated once and kept in the store: the first instance to `add` them wins and every other
 * instance reads the winner's, so a fleet starting together agrees on one key. Generated
 * signing keys rotate every `rotationSeconds`, the previous key staying in the JWKS.
 */
export async function createKeys(options: KeysOptions): Promise<Keys> {
  const { store, clock } = options
  const refreshSeconds = options.refreshSeconds ?? 60
  const configured = await configuredKeys(options)
  // The first seals; any decrypts (a deployment that sets KEYS_SECRET after deriving from the
  // upstream client secret has its keys re-sealed under KEYS_SECRET on the next start).
  const keks = keyEncryptionKeys(options)
  if (!configured && !keks.length && !store.local) {
    throw new ConfigError([
      'KEYS_SECRET: is required with a shared store (REDIS_URL) when SIGNING_KEY and ENCRYPTION_KEY are not set and the upstream has no client secret: generated keys are stored encrypted under it, never in clear',
    ])
  }
  const [primary] = keks
  /** The record to store: sealed under the primary key, or as it is in a local store. */
  const toRecord = async (keys: StoredKeys): Promise<SealedKeys | StoredKeys> =>
    primary ? { sealed: await sealKeys(keys, primary) } : keys
  // Twice the rotation period, renewed at every rotation: an idle deployment's keys expire
  // like everything else in the store, while a live one always keeps its previous key.
  const ttlSeconds = options.rotationSeconds * 2

  let cached: { set: KeySet; loadedAt: number } | undefined
  let lastUnknownKidReload = Number.NEGATIVE_INFINITY
  let loading: Promise<KeySet> | undefined

  /** Reads the stored keys, creating them (or moving a version-1 copy in) when absent. */
  const read = async (): Promise<StoredKeys> => {
    let record = await store.get<SealedKeys | StoredKeys>(KEYS_KEY)
    if (!record) {
      // Keys of an older version are kept (so every token stays valid) and encrypted.
      const legacy = await store.get<StoredKeys>(LEGACY_KEYS_KEY)
      const fresh = legacy ?? {
        signing: [await newSigningKey(clock)],
        encryption: newEncryptionKey(),
      }
      const created = await toRecord(fresh)
      record = (await store.add(KEYS_KEY, created, ttlSeconds))
        ? created
        : await store.get<SealedKeys | StoredKeys>(KEYS_KEY)
      if (!record) throw new Error('generated keys vanished from the store')
      if (legacy && primary) await store.delete(LEGACY_KEYS_KEY)
    }
    if (!('sealed' in record)) {
      // In clear: a local store's, or one written before a key-encryption key was configured.
      if (primary) await store.put(KEYS_KEY, await toRecord(record), ttlSeconds)
      return record
    }
    const { keys, kek } = await openKeys(record.sealed, keks)
    if (kek !== primary) await store.put(KEYS_KEY, await toRecord(keys), ttlSeconds)
    return keys
  }

  const load = async (): Promise<KeySet> => {
    if (configured) return configured
    let stored = await read()
    const [newest] = stored.signing
    if (newest && clock.now() - newest.createdAt >= options.rotationSeconds) {
      stored = await rotate(stored)
    }
    return toKeySet(stored)
  }

  const rotate = async (stored: StoredKeys): Promise<StoredKeys> => {
    if (!(await store.add(ROTATION_LOCK_KEY, true, KEY_TTL_SECONDS.keyRotation))) return stored
    const rotated: StoredKeys = {
      signing: [await newSigningKey(clock), ...stored.signing.slice(0, 1)],
      encryption: stored.encryption,
    }
    await store.put(KEYS_KEY, await toRecord(rotated), ttlSeconds)
    return rotated
  }

  const reload = (): Promise<KeySet> => {
    loading ??= load()
      .then((set) => {
        cached = { set, loadedAt: clock.now() }
        return set
      })
      .finally(() => {
        loading = undefined
      })
    return loading
  }

  const current = async (): Promise<KeySet> => {
    if (cached && clock.now() - cached.loadedAt < refreshSeconds) return cached.set
    if (!cached) return reload()
    // Keys change rarely and only through the store: while it is down, the copy in hand is
    // still right, so signing, verification and the JWKS keep working through an outage.
    const stale = cached.set
    return reload().catch((error: unknown) => {
      if (error instanceof StoreUnavailableError) return stale
      throw error
    })
  }

  await current()

  return {
    current,
    async verificationKey(kid) {
      const find = (set: KeySet) => set.verifying.find((key) => key.kid === kid)
      const found = find(await current())
      if (found || configured || kid === undefined) return found
      // Another instance may have rotated; look again, but never let forged kids hammer the store.
      if (clock.now() - lastUnknownKidReload < UNKNOWN_KID_RELOAD_SECONDS) return undefined
      lastUnknownKidReload = clock.now()
      return find(await reload())
    },
  }
}

/** The key-encryption keys the options give, the one to seal with first (HKDF-SHA256). */
function keyEncryptionKeys(options: KeysOptions): Kek[] {
  const derive = (secret: string, source: string): Kek => {
    const key = deriveKey(Buffer.from(secret, 'utf8'), 'mcp-oauth-proxy keys at rest v1')
    const kid = `kek-${createHash('sha256').update(key).digest('base64url').slice(0, 16)}`
    return { kid, key, source }
  }
  const keks: Kek[] = []
  if (options.keysSecret) keks.push(derive(options.keysSecret, 'KEYS_SECRET'))
  if (options.upstreamClientSecret)
    keks.push(derive(options.upstreamClientSecret, 'the upstream client secret'))
  return keks
}

async function sealKeys(keys: StoredKeys, kek: Kek): Promise<string> {
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(keys)))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: kek.kid })
    .encrypt(kek.key)
}

async function openKeys(
  sealed: string,
  keks: readonly Kek[],
): Promise<{ keys: StoredKeys; kek: Kek }> {
  let kid: unknown
  try {
    kid = decodeProtectedHeader(sealed).kid
  } catch {
    kid = undefined
  }
  const kek = keks.find((candidate) => candidate.kid === kid)
  if (kek) {
    try {
      const { plaintext } = await compactDecrypt(sealed, kek.key, {
        keyManagementAlgorithms: ['dir'],
        contentEncryptionAlgorithms: ['A256GCM'],
      })
      return { keys: JSON.parse(new TextDecoder().decode(plaintext)) as StoredKeys, kek }
    } catch {
      // Falls through to the refusal: altered, or sealed under a key with a colliding kid.
    }
  }
  const tried = keks.map((k) => k.source).join(' or ') || 'no key-encryption secret'
  throw new ConfigError([
    `KEYS_SECRET: the generated keys in the store (${KEYS_KEY}) were sealed under another secret than ${tried}; restore the secret they were sealed under, or delete ${KEYS_KEY} to generate new keys (every token and sign-in issued so far is then lost)`,
  ])
}

async function configuredKeys(options: KeysOptions): Promise<KeySet | undefined> {
  const { signingKey, signingKeyPrevious, encryptionKey } = options
  if (!signingKey && !encryptionKey) return undefined
  if (!signingKey || !encryptionKey) {
    throw new ConfigError([
      `${signingKey ? 'ENCRYPTION_KEY' : 'SIGNING_KEY'}: is required when ${signingKey ? 'SIGNING_KEY' : 'ENCRYPTION_KEY'} is set (give both, or neither to generate them)`,
    ])
  }
  const signing = [await importSigningKey(signingKey, 'SIGNING_KEY')]
  if (signingKeyPrevious)
    signing.push(await importSigningKey(signingKeyPrevious, 'SIGNING_KEY_PREVIOUS'))
  return toKeySet({ signing, encryption: decodeEncryptionKey(encryptionKey) })
}

async function importSigningKey(material: string, variable: string): Promise<StoredSigningKey> {
  let key: KeyObject
  try {
    const text = material.trim()
    key = text.startsWith('{')
      ? createPrivateKey({ key: JSON.parse(text), format: 'jwk' })
      : createPrivateKey({ key: text.replaceAll('\\n', '\n'), format: 'pem' })
  } catch {
    throw new ConfigError([`${variable}: must be an EC P-256 private key as PEM or JWK`])
  }
  const jwk = key.export({ format: 'jwk' })
  if (key.asymmetricKeyType !== 'ec' || jwk.crv !== 'P-256') {
    throw new ConfigError([
      `${variable}: must be an EC P-256 (ES256) private key, not ${key.asymmetricKeyType} ${jwk.crv ?? ''}`.trim(),
    ])
  }
  return { jwk: jwk as JWK, createdAt: 0 }
}

function decodeEncryptionKey(material: string): StoredKeys['encryption'] {
  const text = material.trim()
  const bytes = /^[0-9a-f]{64}$/i.test(text)
    ? Buffer.from(text, 'hex')
    : Buffer.from(text, 'base64url')
  if (bytes.length !== 32) {
    throw new ConfigError([
      'ENCRYPTION_KEY: must be 32 random bytes as base64url, base64 or hex (e.g. openssl rand -base64 32)',
    ])
  }
  return { kid: encryptionKid(bytes), k: bytes.toString('base64url') }
}

async function newSigningKey(clock: Clock): Promise<StoredSigningKey> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  return { jwk: await exportJWK(privateKey), createdAt: clock.now() }
}

function newEncryptionKey(): StoredKeys['encryption'] {
  const bytes = randomBytes(32)
  return { kid: encryptionKid(bytes), k: bytes.toString('base64url') }
}

// The kid names the key without revealing it: a truncated hash of 256 random bits.
function encryptionKid(bytes: Buffer): string {
  return `enc-${createHash('sha256').update(bytes).digest('base64url').slice(0, 16)}`
}

async function toKeySet(stored: StoredKeys): Promise<KeySet> {
  const verifying = await Promise.all(stored.signing.map(({ jwk }) => toSigningKey(jwk)))
  const [signing] = verifying
  if (!signing) throw new Error('no signing key')
  const key = Buffer.from(stored.encryption.k, 'base64url')
  return {
    signing,
    verifying,
    encryption: { kid: stored.encryption.kid, key, keyObject: createSecretKey(key) },
    jwks: { keys: verifying.map((key) => key.publicJwk) },
  }
}

async function toSigningKey(privateJwk: JWK): Promise<SigningKey> {
  const { d: _private, ...publicPart } = privateJwk
  const base = { kty: publicPart.kty, crv: publicPart.crv, x: publicPart.x, y: publicPart.y }
  const kid = await calculateJwkThumbprint(base)
  const publicJwk: JWK = { ...base, kid, alg: 'ES256', use: 'sig' }
  return {
    kid,
    privateKey: createPrivateKey({ key: { ...base, d: privateJwk.d }, format: 'jwk' }),
    publicKey: (await importJWK(publicJwk, 'ES256')) as CryptoKey,
    publicJwk,
  }
}

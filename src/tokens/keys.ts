import {
  createHash,
  createPrivateKey,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import type { Clock } from '../clock.js'
import { ConfigError } from '../config.js'
import { StoreUnavailableError } from '../errors.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import type { Store } from '../store/store.js'

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

const KEYS_KEY = storeKey.keySet()
const ROTATION_LOCK_KEY = storeKey.keyRotation()
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
  // Twice the rotation period, renewed at every rotation: an idle deployment's keys expire
  // like everything else in the store, while a live one always keeps its previous key.
  const ttlSeconds = options.rotationSeconds * 2

  let cached: { set: KeySet; loadedAt: number } | undefined
  let lastUnknownKidReload = Number.NEGATIVE_INFINITY
  let loading: Promise<KeySet> | undefined

  const load = async (): Promise<KeySet> => {
    if (configured) return configured
    let stored = await store.get<StoredKeys>(KEYS_KEY)
    if (!stored) {
      const fresh: StoredKeys = {
        signing: [await newSigningKey(clock)],
        encryption: newEncryptionKey(),
      }
      stored = (await store.add(KEYS_KEY, fresh, ttlSeconds))
        ? fresh
        : await store.get<StoredKeys>(KEYS_KEY)
      if (!stored) throw new Error('generated keys vanished from the store')
    }
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
    await store.put(KEYS_KEY, rotated, ttlSeconds)
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

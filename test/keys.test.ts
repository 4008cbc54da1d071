import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto'
import { jwtVerify, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../src/config.js'
import { StoreUnavailableError } from '../src/errors.js'
import { createMemoryStore } from '../src/store/memory.js'
import type { Store } from '../src/store/store.js'
import { createKeys } from '../src/tokens/keys.js'
import { createTestApp } from './support/app.js'
import { createTestClock } from './support/clock.js'
import { createTestRedisStore } from './support/redis.js'

const ROTATION = 30 * 86_400
const KEYS_SECRET = 'keys-test-secret-0123456789abcdef'

async function configError(promise: Promise<unknown>): Promise<readonly string[]> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}

describe('generated keys shared through Redis', () => {
  let store: Store & { prefix: string }
  beforeAll(async () => {
    store = await createTestRedisStore('keys')
  })
  afterAll(() => store.close())

  it('ends a race of instances starting together with one signing key', async () => {
    const clock = createTestClock()
    const instances = await Promise.all(
      Array.from({ length: 8 }, () =>
        createKeys({ store, clock, rotationSeconds: ROTATION, keysSecret: KEYS_SECRET }),
      ),
    )
    const kids = await Promise.all(
      instances.map(async (keys) => (await keys.current()).signing.kid),
    )
    expect(new Set(kids).size).toBe(1)
    const encryption = await Promise.all(
      instances.map(async (keys) => (await keys.current()).encryption.kid),
    )
    expect(new Set(encryption).size).toBe(1)
  })

  it('lets two app instances on one Redis publish the same JWKS and verify each other’s tokens', async () => {
    const a = await createTestApp({ store, env: { KEYS_SECRET } })
    const b = await createTestApp({ store, env: { KEYS_SECRET } })
    const jwksA = await (await a.app.request('/.well-known/jwks.json')).json()
    const jwksB = await (await b.app.request('/.well-known/jwks.json')).json()
    expect(jwksA).toEqual(jwksB)
    const signedByA = await sign((await a.deps.keys.current()).signing)
    const { signing } = await b.deps.keys.current()
    await expect(
      jwtVerify(signedByA, signing.publicKey, { algorithms: ['ES256'] }),
    ).resolves.toBeTruthy()
  })
})

async function sign(key: { kid: string; privateKey: KeyObject }): Promise<string> {
  return new SignJWT({ sub: 'user' })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setExpirationTime('1h')
    .sign(key.privateKey)
}

describe('rotation of generated keys', () => {
  it('rotates after the period, keeps the previous key in the JWKS, and other instances find the new one', async () => {
    const clock = createTestClock()
    const store = createMemoryStore(clock)
    const first = await createKeys({ store, clock, rotationSeconds: ROTATION, refreshSeconds: 60 })
    const other = await createKeys({
      store,
      clock,
      rotationSeconds: ROTATION,
      refreshSeconds: 3600,
    })
    const before = await first.current()
    const oldToken = await sign(before.signing)

    clock.advance(ROTATION + 1)
    const after = await first.current()
    expect(after.signing.kid).not.toBe(before.signing.kid)
    expect(after.jwks.keys.map((k) => k.kid)).toEqual([after.signing.kid, before.signing.kid])

    // The other instance still holds its cached copy; a token with the new kid makes it look again.
    expect(await other.verificationKey(after.signing.kid)).toMatchObject({ kid: after.signing.kid })
    const previous = await first.verificationKey(before.signing.kid)
    expect(previous).toBeDefined()
    await expect(jwtVerify(oldToken, previous?.publicKey as CryptoKey)).resolves.toBeTruthy()
    expect(after.encryption.kid).toBe(before.encryption.kid)
  })

  it('does not reload the store for every unknown kid', async () => {
    const clock = createTestClock()
    const store = createMemoryStore(clock)
    const keys = await createKeys({ store, clock, rotationSeconds: ROTATION })
    let reads = 0
    const counting: Store = {
      ...store,
      get: (key) => {
        reads++
        return store.get(key)
      },
    }
    const watched = await createKeys({ store: counting, clock, rotationSeconds: ROTATION })
    reads = 0
    for (let i = 0; i < 20; i++)
      expect(await watched.verificationKey(`forged-${i}`)).toBeUndefined()
    expect(reads).toBe(1)
    expect(await keys.verificationKey(undefined)).toBeUndefined()
  })
})

describe('configured keys', () => {
  const clock = createTestClock()
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  const jwk = JSON.stringify(privateKey.export({ format: 'jwk' }))
  const encryptionKey = randomBytes(32).toString('base64url')

  it.each([
    ['PEM', pem],
    ['PEM with escaped newlines', pem.replaceAll('\n', '\\n')],
    ['JWK', jwk],
  ])('uses SIGNING_KEY given as %s', async (_kind, material) => {
    const keys = await createKeys({
      store: createMemoryStore(clock),
      clock,
      rotationSeconds: ROTATION,
      signingKey: material,
      encryptionKey,
    })
    const set = await keys.current()
    expect(set.jwks.keys).toHaveLength(1)
    expect(set.jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', x: JSON.parse(jwk).x })
  })

  it('publishes SIGNING_KEY_PREVIOUS for verification only', async () => {
    const previous = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString()
    const keys = await createKeys({
      store: createMemoryStore(clock),
      clock,
      rotationSeconds: ROTATION,
      signingKey: pem,
      signingKeyPrevious: previous,
      encryptionKey,
    })
    const set = await keys.current()
    expect(set.jwks.keys).toHaveLength(2)
    expect(set.signing.kid).toBe(set.jwks.keys[0]?.kid)
  })

  it('never rotates configured keys', async () => {
    const keys = await createKeys({
      store: createMemoryStore(clock),
      clock,
      rotationSeconds: 1,
      signingKey: pem,
      encryptionKey,
    })
    const before = (await keys.current()).signing.kid
    clock.advance(10)
    expect((await keys.current()).signing.kid).toBe(before)
  })

  it('accepts ENCRYPTION_KEY as hex', async () => {
    const keys = await createKeys({
      store: createMemoryStore(clock),
      clock,
      rotationSeconds: ROTATION,
      signingKey: pem,
      encryptionKey: randomBytes(32).toString('hex'),
    })
    expect((await keys.current()).encryption.key).toHaveLength(32)
  })

  it('names the variable when a key is wrong', async () => {
    const store = createMemoryStore(clock)
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString()
    expect(
      await configError(
        createKeys({
          store,
          clock,
          rotationSeconds: ROTATION,
          signingKey: 'nonsense',
          encryptionKey,
        }),
      ),
    ).toEqual(['SIGNING_KEY: must be an EC P-256 private key as PEM or JWK'])
    expect(
      await configError(
        createKeys({ store, clock, rotationSeconds: ROTATION, signingKey: rsa, encryptionKey }),
      ),
    ).toEqual(['SIGNING_KEY: must be an EC P-256 (ES256) private key, not rsa'])
    expect(
      await configError(
        createKeys({
          store,
          clock,
          rotationSeconds: ROTATION,
          signingKey: pem,
          encryptionKey: 'short',
        }),
      ),
    ).toEqual([
      'ENCRYPTION_KEY: must be 32 random bytes as base64url, base64 or hex (e.g. openssl rand -base64 32)',
    ])
    expect(
      await configError(createKeys({ store, clock, rotationSeconds: ROTATION, signingKey: pem })),
    ).toEqual([
      'ENCRYPTION_KEY: is required when SIGNING_KEY is set (give both, or neither to generate them)',
    ])
  })
})

describe('keys while the store is down', () => {
  it('keeps serving the keys in hand past the refresh interval, and picks up changes after', async () => {
    const clock = createTestClock()
    const store = createMemoryStore(clock)
    let down = false
    const flaky: Store = {
      ...store,
      get: async (key) => {
        if (down) throw new StoreUnavailableError(new Error('connection refused'))
        return store.get(key)
      },
    }
    const keys = await createKeys({
      store: flaky,
      clock,
      rotationSeconds: ROTATION,
      refreshSeconds: 60,
    })
    const before = (await keys.current()).signing.kid
    down = true
    clock.advance(120)
    expect((await keys.current()).signing.kid).toBe(before)
    down = false
    clock.advance(ROTATION)
    expect((await keys.current()).signing.kid).not.toBe(before)
  })
})

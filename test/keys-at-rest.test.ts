import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ConfigError } from '../src/config.js'
import type { Store } from '../src/store/store.js'
import { createKeys } from '../src/tokens/keys.js'
import { createTestClock } from './support/clock.js'
import { formPost, registerClient, signInForCode } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import { createTestRedisStore, REDIS_URL } from './support/redis.js'

// What an attacker with read access to Redis alone finds: generated keys are sealed under a
// key-encryption key that is not in the store (KEYS_SECRET, or derived from the upstream client
// secret), never in clear.

const ROTATION = 30 * 86_400
const SECRET_A = 'keys-at-rest-secret-a-0123456789abcdef'
const SECRET_B = 'keys-at-rest-secret-b-0123456789abcdef'

/**
 * Every key under `prefix` with its value: strings as they are, the per-user grant indexes
 * (sorted sets) as their members and scores, so nothing the proxy writes escapes the scan.
 */
async function dump(prefix: string): Promise<Map<string, string>> {
  const redis = new Redis(REDIS_URL)
  try {
    const values = new Map<string, string>()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      for (const key of keys) {
        const type = await redis.type(key)
        expect(['string', 'zset']).toContain(type)
        const value =
          type === 'zset'
            ? JSON.stringify(await redis.zrange(key, '0', '-1', 'WITHSCORES'))
            : ((await redis.get(key)) ?? '')
        values.set(key.slice(prefix.length), value)
      }
      cursor = next
    } while (cursor !== '0')
    return values
  } finally {
    redis.disconnect()
  }
}

async function configError(promise: Promise<unknown>): Promise<readonly string[]> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}

describe('a Redis store after a full flow', () => {
  let proxy: ProxyUnderTest
  afterAll(() => proxy?.close())

  it('holds no private key and no AES key in clear anywhere under the prefix', async () => {
    proxy = await startProxy({ flavor: 'kinde', store: 'redis' })
    const redirectUri = 'http://127.0.0.1:45557/cb'
    const client = await registerClient(proxy.url, {
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'none',
      client_name: 'keys at rest',
    })
    const { code, verifier } = await signInForCode(proxy, {
      clientId: client.client_id,
      redirectUri,
      state: 's',
    })
    const exchange = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: client.client_id,
    })
    expect(exchange.status).toBe(200)
    const { refresh_token } = (await exchange.json()) as { refresh_token: string }
    const refreshed = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token,
      client_id: client.client_id,
    })
    expect(refreshed.status).toBe(200)

    const { signing, encryption } = await proxy.server.deps.keys.current()
    const d = signing.privateKey.export({ format: 'jwk' }).d as string
    const aes = Buffer.from(encryption.key)
    const clear = [d, aes.toString('base64url'), aes.toString('base64'), aes.toString('hex')]
    const stored = await dump(proxy.env.REDIS_KEY_PREFIX ?? '')
    // The flow left its records: clients, grants, refresh tokens, the keys.
    expect([...stored.keys()].some((key) => key.startsWith('grant:'))).toBe(true)
    expect(stored.has('keys:v2')).toBe(true)
    for (const [key, value] of stored) {
      expect(value, key).not.toMatch(/"d"\s*:/)
      expect(value, key).not.toContain('PRIVATE KEY')
      for (const material of clear) expect(value.includes(material), key).toBe(false)
    }
    const sealed = JSON.parse(stored.get('keys:v2') ?? '{}') as { sealed: string }
    expect(decodeProtectedHeader(sealed.sealed)).toMatchObject({ alg: 'dir', enc: 'A256GCM' })
  })
})

describe('generated keys on a shared store', () => {
  let store: Store & { prefix: string }
  const clock = createTestClock()
  beforeEach(async () => {
    store = await createTestRedisStore('keys-at-rest')
  })
  afterEach(() => store.close())

  const keys = (secrets: { keysSecret?: string; upstreamClientSecret?: string }) =>
    createKeys({ store, clock, rotationSeconds: ROTATION, ...secrets })

  it('refuses to start with neither KEYS_SECRET nor an upstream client secret', async () => {
    expect(await configError(keys({}))).toEqual([
      'KEYS_SECRET: is required with a shared store (REDIS_URL) when SIGNING_KEY and ENCRYPTION_KEY are not set and the upstream has no client secret: generated keys are stored encrypted under it, never in clear',
    ])
    expect(await dump(store.prefix)).toEqual(new Map())
  })

  it('refuses to start when the stored keys were sealed under another secret, saying what to do', async () => {
    await keys({ keysSecret: SECRET_A })
    const problems = await configError(keys({ keysSecret: SECRET_B }))
    expect(problems).toEqual([
      'KEYS_SECRET: the generated keys in the store (keys:v2) were sealed under another secret than KEYS_SECRET; restore the secret they were sealed under, or delete keys:v2 to generate new keys (every token and sign-in issued so far is then lost)',
    ])
  })

  it('re-seals keys derived from the upstream client secret under KEYS_SECRET once it is set', async () => {
    const upstreamClientSecret = 'upstream-client-secret'
    const before = await (await keys({ upstreamClientSecret })).current()
    const kidOf = async () => {
      const record = JSON.parse((await dump(store.prefix)).get('keys:v2') ?? '{}') as {
        sealed: string
      }
      return decodeProtectedHeader(record.sealed).kid
    }
    const derivedKid = await kidOf()
    const after = await (await keys({ keysSecret: SECRET_A, upstreamClientSecret })).current()
    expect(after.signing.kid).toBe(before.signing.kid)
    expect(after.encryption.kid).toBe(before.encryption.kid)
    expect(await kidOf()).not.toBe(derivedKid)
    // The upstream client secret can now rotate.
    const rotated = await (
      await keys({ keysSecret: SECRET_A, upstreamClientSecret: 'rotated' })
    ).current()
    expect(rotated.signing.kid).toBe(before.signing.kid)
  })

  it('encrypts keys an older version stored in clear, keeping them, and forgets the clear copy', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const jwk = await exportJWK(privateKey)
    const k = randomBytes(32).toString('base64url')
    await store.put(
      'keys:v1',
      { signing: [{ jwk, createdAt: clock.now() }], encryption: { kid: 'enc-legacy', k } },
      ROTATION,
    )
    const migrated = await (await keys({ keysSecret: SECRET_A })).current()
    const { d: _d, ...publicPart } = jwk
    expect(migrated.signing.kid).toBe(
      await calculateJwkThumbprint({
        kty: publicPart.kty,
        crv: publicPart.crv,
        x: publicPart.x,
        y: publicPart.y,
      }),
    )
    expect(migrated.encryption.kid).toBe('enc-legacy')
    const stored = await dump(store.prefix)
    expect([...stored.keys()]).toEqual(['keys:v2'])
    expect(stored.get('keys:v2')).not.toContain(jwk.d as string)
    expect(stored.get('keys:v2')).not.toContain(k)
  })
})

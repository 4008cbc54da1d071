import { createCipheriv, randomBytes } from 'node:crypto'
import {
  CompactEncrypt,
  compactDecrypt,
  createLocalJWKSet,
  decodeProtectedHeader,
  type JSONWebKeySet,
  jwtVerify,
  SignJWT,
} from 'jose'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Deps } from '../src/deps.js'
import { mintAccessToken, verifyAccessToken } from '../src/tokens/access-token.js'
import type { KeySet } from '../src/tokens/keys.js'
import { seal, unseal } from '../src/tokens/seal.js'
import { createTestApp, type TestApp } from './support/app.js'

let app: TestApp['app']
let deps: Deps
let keySet: KeySet

beforeEach(async () => {
  ;({ app, deps } = await createTestApp())
  keySet = await deps.keys.current()
})

const b64 = (bytes: Uint8Array | string) => Buffer.from(bytes).toString('base64url')

/** A `dir`/`A256GCM`-shaped JWE built by hand, with every part under the test's control. */
function handmade(options: {
  header?: Record<string, unknown>
  key?: Uint8Array
  ivBytes?: number
  tagBytes?: number
  plaintext?: string
}): string {
  const header = b64(
    JSON.stringify(options.header ?? { alg: 'dir', enc: 'A256GCM', kid: keySet.encryption.kid }),
  )
  const iv = randomBytes(options.ivBytes ?? 12)
  const cipher = createCipheriv('aes-256-gcm', options.key ?? keySet.encryption.key, iv, {
    authTagLength: options.tagBytes ?? 16,
  })
  cipher.setAAD(Buffer.from(header, 'ascii'))
  const ciphertext = Buffer.concat([
    cipher.update(options.plaintext ?? '{"at":"x"}', 'utf8'),
    cipher.final(),
  ])
  return `${header}..${b64(iv)}.${b64(ciphertext)}.${b64(cipher.getAuthTag())}`
}

function withPart(jwe: string, index: number, part: string): string {
  const parts = jwe.split('.')
  parts[index] = part
  return parts.join('.')
}

/** The part with one bit of its first byte flipped, re-encoded. */
function flipped(part: string): string {
  const bytes = Buffer.from(part, 'base64url')
  bytes[0] = (bytes[0] ?? 0) ^ 1
  return b64(bytes)
}

describe('access tokens signed with node:crypto', () => {
  const params = {
    sub: 'user-alice',
    clientId: 'client-1',
    scopes: ['openid', 'profile'],
    actor: 'user' as const,
    email: 'alice@example.test',
    orgCode: undefined,
    permissions: ['read:tools'],
    upstream: { at: 'upstream-token', exp: 1_750_000_000 + 7200, gid: 'grant-1' },
    upstreamRefreshable: true,
  }

  it('verify with jose against the published JWK, with every claim in place', async () => {
    const minted = await mintAccessToken(deps, params)
    const published = await app.request('/.well-known/jwks.json')
    const jwks = createLocalJWKSet((await published.json()) as JSONWebKeySet)
    const now = deps.clock.now()
    const { payload, protectedHeader } = await jwtVerify(minted.token, jwks, {
      issuer: deps.config.issuer,
      audience: deps.config.resource,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      currentDate: new Date(now * 1000),
    })
    expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: keySet.signing.kid })
    expect(Buffer.from(minted.token.split('.')[2] ?? '', 'base64url')).toHaveLength(64)
    expect(payload).toEqual({
      iss: deps.config.issuer,
      sub: 'user-alice',
      aud: deps.config.resource,
      iat: now,
      exp: minted.expiresAt,
      jti: minted.jti,
      client_id: 'client-1',
      scope: 'openid profile',
      actor: 'user',
      email: 'alice@example.test',
      permissions: ['read:tools'],
      upt: expect.any(String),
    })
    expect(Object.keys(payload)).not.toContain('org_code')
    expect(await unseal(deps.keys, payload.upt as string)).toEqual(params.upstream)
    await expect(verifyAccessToken(deps, minted.token)).resolves.toMatchObject({
      sub: 'user-alice',
      clientId: 'client-1',
      jti: minted.jti,
      upstream: params.upstream,
    })
  })

  it('refuse a token whose payload was altered after signing', async () => {
    const { token } = await mintAccessToken(deps, params)
    const [header, payload, signature] = token.split('.')
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString())
    const altered = `${header}.${b64(JSON.stringify({ ...claims, sub: 'mallory' }))}.${signature}`
    await expect(
      jwtVerify(altered, createLocalJWKSet({ keys: [...keySet.jwks.keys] })),
    ).rejects.toThrow()
    await expect(verifyAccessToken(deps, altered)).rejects.toMatchObject({ code: 'invalid_token' })
  })

  it('still accept a token jose signs with the same key', async () => {
    const now = deps.clock.now()
    const token = await new SignJWT({
      client_id: 'client-1',
      upt: await seal(deps.keys, params.upstream),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: keySet.signing.kid })
      .setIssuer(deps.config.issuer)
      .setSubject('user-alice')
      .setAudience(deps.config.resource)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .setJti('jti-1')
      .sign(keySet.signing.privateKey)
    await expect(verifyAccessToken(deps, token)).resolves.toMatchObject({ jti: 'jti-1' })
  })
})

describe('sealing with node:crypto (dir / A256GCM compact JWE)', () => {
  it('makes JWEs jose decrypts, in exactly the format jose makes', async () => {
    const value = { at: 'upstream-token', exp: 123, nested: { ü: 'ünïcode ✓' } }
    const jwe = await seal(deps.keys, value)
    const parts = jwe.split('.')
    expect(parts).toHaveLength(5)
    expect(parts[1]).toBe('')
    expect(Buffer.from(parts[0] ?? '', 'base64url').toString()).toBe(
      `{"alg":"dir","enc":"A256GCM","kid":"${keySet.encryption.kid}"}`,
    )
    expect(Buffer.from(parts[2] ?? '', 'base64url')).toHaveLength(12)
    expect(Buffer.from(parts[4] ?? '', 'base64url')).toHaveLength(16)
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, keySet.encryption.key, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
    })
    expect(protectedHeader).toEqual({ alg: 'dir', enc: 'A256GCM', kid: keySet.encryption.kid })
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toEqual(value)
  })

  it('uses a fresh IV for every seal', async () => {
    const ivs = new Set<string>()
    for (let i = 0; i < 50; i++) ivs.add((await seal(deps.keys, 'same')).split('.')[2] ?? '')
    expect(ivs.size).toBe(50)
  })

  it('unseals JWEs jose encrypts', async () => {
    const value = { at: 'upstream-token', refreshToken: 'r', expiresAt: 99 }
    const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(value)))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: keySet.encryption.kid })
      .encrypt(keySet.encryption.key)
    expect(await unseal(deps.keys, jwe)).toEqual(value)
  })

  it('unseals what it seals', async () => {
    expect(await unseal(deps.keys, await seal(deps.keys, 'a successor token'))).toBe(
      'a successor token',
    )
    expect(await unseal(deps.keys, handmade({}))).toEqual({ at: 'x' })
  })

  describe('refuses', () => {
    let jwe: string
    beforeEach(async () => {
      jwe = await seal(deps.keys, { at: 'upstream-token', exp: 123 })
    })
    const refused = (value: string) => expect(unseal(deps.keys, value)).rejects.toThrow()

    it('altered ciphertext', async () => {
      await refused(withPart(jwe, 3, flipped(jwe.split('.')[3] ?? '')))
    })

    it('an altered tag', async () => {
      await refused(withPart(jwe, 4, flipped(jwe.split('.')[4] ?? '')))
    })

    it('an altered IV', async () => {
      await refused(withPart(jwe, 2, flipped(jwe.split('.')[2] ?? '')))
    })

    it('a truncated tag, though it is a prefix of the right one', async () => {
      const tag = Buffer.from(jwe.split('.')[4] ?? '', 'base64url')
      for (const length of [15, 12, 8, 4, 1, 0]) {
        await refused(withPart(jwe, 4, b64(tag.subarray(0, length))))
      }
    })

    it('a valid JWE whose tag is short or whose IV is not 96 bits', async () => {
      await refused(handmade({ tagBytes: 12 }))
      await refused(handmade({ tagBytes: 4 }))
      await refused(handmade({ ivBytes: 16 }))
      await refused(handmade({ ivBytes: 8 }))
    })

    it('an altered header, even one saying the same', async () => {
      const header = jwe.split('.')[0] ?? ''
      const same = `{"enc":"A256GCM","alg":"dir","kid":"${keySet.encryption.kid}"}`
      await refused(withPart(jwe, 0, b64(same)))
      await refused(withPart(jwe, 0, `${header}AA`))
      await refused(withPart(jwe, 0, b64('not json')))
      await refused(withPart(jwe, 0, b64('[1]')))
      await refused(withPart(jwe, 0, b64('null')))
      await refused(withPart(jwe, 0, ''))
      await refused(withPart(jwe, 0, `${header}!`))
    })

    it('another kid, algorithm or encryption, though the key is ours', async () => {
      const kid = keySet.encryption.kid
      await refused(handmade({ header: { alg: 'dir', enc: 'A256GCM', kid: 'enc-another' } }))
      await refused(handmade({ header: { alg: 'dir', enc: 'A256GCM' } }))
      await refused(handmade({ header: { alg: 'A256KW', enc: 'A256GCM', kid } }))
      await refused(handmade({ header: { alg: 'dir', enc: 'A128GCM', kid } }))
      await refused(handmade({ header: { alg: 'dir', enc: 'A256GCM', kid, zip: 'DEF' } }))
      await refused(handmade({ header: { alg: 'dir', enc: 'A256GCM', kid, crit: ['exp'] } }))
      const jose = await new CompactEncrypt(new TextEncoder().encode('{}'))
        .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: 'enc-another' })
        .encrypt(keySet.encryption.key)
      expect(decodeProtectedHeader(jose).kid).toBe('enc-another')
      await refused(jose)
    })

    it('our kid on another key', async () => {
      await refused(handmade({ key: randomBytes(32) }))
    })

    it('anything but five parts with an empty encrypted key', async () => {
      const parts = jwe.split('.')
      await refused(parts.slice(0, 4).join('.'))
      await refused(`${jwe}.`)
      await refused(withPart(jwe, 1, b64(randomBytes(32))))
      await refused(withPart(jwe, 3, `${parts[3]}!`))
      await refused('')
    })

    it('plaintext that is not JSON', async () => {
      await refused(handmade({ plaintext: 'not json' }))
    })
  })
})

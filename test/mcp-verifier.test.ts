import { beforeEach, describe, expect, it } from 'vitest'
import type { Deps } from '../src/deps.js'
import { createMemoryStore } from '../src/store/memory.js'
import type { Store } from '../src/store/store.js'
import { mintAccessToken } from '../src/tokens/access-token.js'
import { denyAccessToken } from '../src/tokens/grants.js'
import { createAccessTokenVerifier } from '../src/tokens/verifier.js'
import { createTestApp } from './support/app.js'
import { createTestClock, type TestClock } from './support/clock.js'

let deps: Deps
let clock: TestClock
/** Deny-list reads: one per verification that was not answered from the cache. */
let lookups: number

beforeEach(async () => {
  clock = createTestClock()
  lookups = 0
  const store = createMemoryStore(clock)
  const counting: Store = {
    ...store,
    get: (key) => {
      if (key.startsWith('revoked:')) lookups++
      return store.get(key)
    },
  }
  ;({ deps } = await createTestApp({ clock, store: counting }))
})

async function mint(ttlSeconds = 3600) {
  return mintAccessToken(
    { ...deps, config: { ...deps.config, accessTokenTtlSeconds: ttlSeconds } },
    {
      sub: 'user-alice',
      clientId: 'client-1',
      scopes: ['openid'],
      actor: 'user',
      upstream: { at: 'upstream', exp: clock.now() + 7200 },
      upstreamRefreshable: true,
    },
  )
}

describe('the cached access-token verifier', () => {
  it('answers a repeated token from memory until the TTL, then checks again', async () => {
    const verifier = createAccessTokenVerifier(deps, { ttlSeconds: 5 })
    const { token, jti } = await mint()
    expect((await verifier.verify(token)).jti).toBe(jti)
    await verifier.verify(token)
    expect(lookups).toBe(1)

    clock.advance(5)
    await verifier.verify(token)
    expect(lookups).toBe(2)
  })

  it('does not let a cached token’s signature vouch for another payload', async () => {
    const verifier = createAccessTokenVerifier(deps, { ttlSeconds: 60 })
    const { token } = await mint()
    await verifier.verify(token)
    const [header, payload, signature] = token.split('.')
    const claims = JSON.parse(Buffer.from(payload as string, 'base64url').toString())
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: 'user-mallory' })).toString('base64url')}.${signature}`
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: 'invalid_token' })
    // …and the genuine token is still answered from memory.
    await expect(verifier.verify(token)).resolves.toMatchObject({ sub: 'user-alice' })
    expect(lookups).toBe(1)
  })

  it('never answers from memory past the token’s exp', async () => {
    const verifier = createAccessTokenVerifier(deps, { ttlSeconds: 60 })
    const { token } = await mint(10)
    await verifier.verify(token)
    clock.advance(10)
    await expect(verifier.verify(token)).rejects.toMatchObject({
      code: 'invalid_token',
      description: 'the access token has expired',
    })
  })

  it('sees a revocation elsewhere within the TTL, and its own at once through evict', async () => {
    const verifier = createAccessTokenVerifier(deps, { ttlSeconds: 5 })
    const { token, jti, expiresAt } = await mint()
    await verifier.verify(token)
    await denyAccessToken(deps, jti, expiresAt)
    // Another instance revoked it: still served from memory until the TTL passes…
    await expect(verifier.verify(token)).resolves.toMatchObject({ jti })
    clock.advance(5)
    await expect(verifier.verify(token)).rejects.toMatchObject({
      description: 'the access token has been revoked',
    })

    const second = await mint()
    await verifier.verify(second.token)
    await denyAccessToken(deps, second.jti, second.expiresAt)
    // …while a revocation here evicts the entry immediately.
    verifier.evict(second.jti)
    await expect(verifier.verify(second.token)).rejects.toMatchObject({
      description: 'the access token has been revoked',
    })
  })

  it('verifies concurrent first uses of a token once', async () => {
    const verifier = createAccessTokenVerifier(deps)
    const { token } = await mint()
    await Promise.all([verifier.verify(token), verifier.verify(token), verifier.verify(token)])
    expect(lookups).toBe(1)
  })

  it('does not cache a verification that was under way when a revocation evicted', async () => {
    const verifier = createAccessTokenVerifier(deps)
    const { token, jti } = await mint()
    const during = verifier.verify(token)
    verifier.evict(jti)
    await during
    await verifier.verify(token)
    expect(lookups).toBe(2)
  })

  it('keeps at most maxEntries tokens, dropping the least recently used', async () => {
    const verifier = createAccessTokenVerifier(deps, { maxEntries: 2 })
    const [a, b, c] = [await mint(), await mint(), await mint()]
    await verifier.verify(a.token)
    await verifier.verify(b.token)
    await verifier.verify(a.token) // a is now the most recent
    await verifier.verify(c.token) // evicts b
    expect(lookups).toBe(3)
    await verifier.verify(a.token)
    await verifier.verify(c.token)
    expect(lookups).toBe(3)
    await verifier.verify(b.token)
    expect(lookups).toBe(4)
  })
})

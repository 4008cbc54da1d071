import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Clock } from '../src/clock.js'
import { authorizationUrl, formPost, pkce, registerClient, signInForCode } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import { REDIS_URL } from './support/redis.js'

// Rate limits that a stranger cannot turn against others: at /token a client_id is public, so
// only requests that proved themselves count against it; failures count against the address.
// /authorize is limited per address and leaves nothing in the store for a request nobody
// answers. Attackers and victims are told apart by X-Forwarded-For behind a trusted proxy.

const REDIRECT_URI = 'http://127.0.0.1:45556/cb'
const ATTACKER = { 'x-forwarded-for': '203.0.113.66' }
const VICTIM = { 'x-forwarded-for': '10.1.2.3, 198.51.100.7' }

/** A clock held one second into a rate-limit window, so no test straddles two windows. */
function heldClock(): Clock {
  const now = Math.floor(Date.now() / 60_000) * 60 + 1
  return { now: () => now }
}

interface Tokens {
  access_token: string
  refresh_token: string
}

describe.each(['memory', 'redis'] as const)('/token rate limits (%s store)', (store) => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      store,
      env: { TOKEN_RATE_LIMIT: '5', TRUST_PROXY: 'true' },
      clock: heldClock(),
    })
  })
  afterAll(() => proxy.close())

  const signedInClient = async (name: string) => {
    const client = await registerClient(proxy.url, {
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      client_name: name,
    })
    const { code, verifier } = await signInForCode(proxy, {
      clientId: client.client_id,
      redirectUri: REDIRECT_URI,
      state: 's',
    })
    return { clientId: client.client_id, code, verifier }
  }

  it('lets junk naming a client’s id lock out only the address that sends it', async () => {
    const victim = await signedInClient('rate victim')
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) {
      const junk = await formPost(
        proxy.url,
        i % 2
          ? { grant_type: 'refresh_token', refresh_token: `junk-${i}`, client_id: victim.clientId }
          : {
              grant_type: 'authorization_code',
              code: `junk-${i}`,
              redirect_uri: REDIRECT_URI,
              code_verifier: 'v'.repeat(43),
              client_id: victim.clientId,
            },
        '/token',
        ATTACKER,
      )
      statuses.push(junk.status)
      if (junk.status === 429) {
        expect(Number(junk.headers.get('retry-after'))).toBeGreaterThan(0)
        expect(await junk.json()).toMatchObject({ error: 'temporarily_unavailable' })
      }
    }
    expect(statuses).toEqual([400, 400, 400, 400, 400, 429, 429, 429])
    // Once locked out, even a good request from the attacker's address waits.
    const fromAttacker = await formPost(
      proxy.url,
      { grant_type: 'refresh_token', refresh_token: 'x', client_id: victim.clientId },
      '/token',
      ATTACKER,
    )
    expect(fromAttacker.status).toBe(429)

    const exchange = await formPost(
      proxy.url,
      {
        grant_type: 'authorization_code',
        code: victim.code,
        redirect_uri: REDIRECT_URI,
        code_verifier: victim.verifier,
        client_id: victim.clientId,
      },
      '/token',
      VICTIM,
    )
    expect(exchange.status).toBe(200)
    const tokens = (await exchange.json()) as Tokens
    const refreshed = await formPost(
      proxy.url,
      {
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token,
        client_id: victim.clientId,
      },
      '/token',
      VICTIM,
    )
    expect(refreshed.status).toBe(200)
  })

  it('still limits a client’s own authenticated requests per client_id', async () => {
    const user = await signedInClient('rate busy client')
    const exchange = await formPost(
      proxy.url,
      {
        grant_type: 'authorization_code',
        code: user.code,
        redirect_uri: REDIRECT_URI,
        code_verifier: user.verifier,
        client_id: user.clientId,
      },
      '/token',
      VICTIM,
    )
    expect(exchange.status).toBe(200)
    let token = ((await exchange.json()) as Tokens).refresh_token
    const statuses: number[] = []
    // From several addresses: the limit is the client's, wherever its requests come from.
    for (let i = 0; i < 5; i++) {
      const res = await formPost(
        proxy.url,
        { grant_type: 'refresh_token', refresh_token: token, client_id: user.clientId },
        '/token',
        { 'x-forwarded-for': `198.51.100.${20 + i}` },
      )
      statuses.push(res.status)
      if (res.status === 200) token = ((await res.json()) as Tokens).refresh_token
    }
    // The code exchange was the first of five.
    expect(statuses).toEqual([200, 200, 200, 200, 429])
  })
})

/** Every key under `prefix`, without it. */
async function keysUnder(prefix: string): Promise<string[]> {
  const redis = new Redis(REDIS_URL)
  try {
    const keys: string[] = []
    let cursor = '0'
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      keys.push(...batch.map((key) => key.slice(prefix.length)))
      cursor = next
    } while (cursor !== '0')
    return keys
  } finally {
    redis.disconnect()
  }
}

describe.each(['memory', 'redis'] as const)('/authorize floods (%s store)', (store) => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      store,
      env: { AUTHORIZE_RATE_LIMIT: '10', TRUST_PROXY: 'true' },
      clock: heldClock(),
    })
  })
  afterAll(() => proxy.close())

  const request = async (clientId: string) =>
    authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      code_challenge: pkce().challenge,
      code_challenge_method: 'S256',
      state: 'flood',
    })

  it('answers a flood from one address with a 429 page, writing nothing but its counter', async () => {
    const client = await registerClient(proxy.url, {
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      client_name: 'flooded client',
    })
    const prefix = proxy.env.REDIS_KEY_PREFIX ?? ''
    const before = store === 'redis' ? new Set(await keysUnder(prefix)) : new Set<string>()
    const statuses: number[] = []
    let refused: Response | undefined
    for (let i = 0; i < 25; i++) {
      const res = await fetch(await request(client.client_id), {
        headers: ATTACKER,
        redirect: 'manual',
      })
      statuses.push(res.status)
      if (res.status === 429) refused = res
      else await res.body?.cancel()
    }
    expect(statuses).toEqual([...Array(10).fill(200), ...Array(15).fill(429)])
    if (!refused) throw new Error('unreachable')
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(refused.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(refused.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
    const page = await refused.text()
    expect(page).toContain('Too many sign-in attempts')
    expect(page).toContain(`Try again in ${refused.headers.get('retry-after')} seconds`)

    // The consent form is limited by the same count.
    const consent = await formPost(
      proxy.url,
      { request_id: 'x', csrf_token: 'y', decision: 'allow' },
      '/authorize/consent',
      ATTACKER,
    )
    expect(consent.status).toBe(429)
    expect(await consent.text()).toContain('Too many sign-in attempts')

    // So is the account page's sign-in, which writes a transaction too.
    const account = await fetch(`${proxy.url}/account/sign-in`, {
      headers: ATTACKER,
      redirect: 'manual',
    })
    expect(account.status).toBe(429)
    expect(await account.text()).toContain('Too many sign-in attempts')

    // Everyone else signs in as usual.
    const other = await fetch(await request(client.client_id), { headers: VICTIM })
    expect(other.status).toBe(200)
    expect(await other.text()).toContain('name="request_id"')

    if (store === 'redis') {
      const added = (await keysUnder(prefix)).filter((key) => !before.has(key))
      expect(added.length).toBeGreaterThan(0)
      expect(added.filter((key) => !key.startsWith('rate:authorize:'))).toEqual([])
    }
  })

  it('does not keep an unused registration alive for GET /authorize, only for a completed sign-in', async () => {
    const client = await registerClient(proxy.url, {
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      client_name: 'abandoned client',
    })
    const key = `client:${client.client_id}`
    const ttlMs = async () => {
      const redis = new Redis(REDIS_URL)
      try {
        return await redis.pttl(`${proxy.env.REDIS_KEY_PREFIX}${key}`)
      } finally {
        redis.disconnect()
      }
    }
    const touchedAt = async () =>
      (await proxy.server.deps.store.get<{ touchedAt: number }>(key))?.touchedAt
    for (let i = 0; i < 3; i++) {
      const res = await fetch(await request(client.client_id), { headers: VICTIM })
      expect(res.status).toBe(200)
      await res.body?.cancel()
    }
    expect(await touchedAt()).toBe(0)
    if (store === 'redis') expect(await ttlMs()).toBeLessThanOrEqual(86_400_000)

    await signInForCode(proxy, {
      clientId: client.client_id,
      redirectUri: REDIRECT_URI,
      state: 's',
    })
    expect(await touchedAt()).toBeGreaterThan(0)
    if (store === 'redis') expect(await ttlMs()).toBeGreaterThan(86_400_000)
  })
})

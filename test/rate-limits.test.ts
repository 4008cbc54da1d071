import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Clock } from '../src/clock.js'
import { formPost, registerClient, signInForCode } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

// Rate limits that a stranger cannot turn against others: at /token a client_id is public, so
// only requests that proved themselves count against it; failures count against the address.
// Attackers and victims are told apart by X-Forwarded-For behind a trusted proxy.

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
      overrides: { clock: heldClock() },
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

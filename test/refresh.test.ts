import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findGrant, lookupRefreshToken, upstreamTokens } from '../src/tokens/grants.js'
import { formPost, registerClient, signInForCode } from './support/flow.js'
import { type ProxyUnderTest, startProxy, startSibling } from './support/proxy.js'

interface Tokens {
  access_token: string
  refresh_token: string
  expires_in: number
  scope: string
}

/** Counts the refresh-token grants the proxy spends at the upstream. */
function upstreamRefreshCounter() {
  let count = 0
  let failWith: 'down' | undefined
  const wrapped: typeof fetch = async (input, init) => {
    const body =
      init?.body instanceof URLSearchParams ? init.body.toString() : String(init?.body ?? '')
    if (body.includes('grant_type=refresh_token')) {
      if (failWith === 'down') throw new TypeError('fetch failed')
      count++
    }
    return fetch(input, init)
  }
  return {
    fetch: wrapped,
    count: () => count,
    down: (isDown: boolean) => {
      failWith = isDown ? 'down' : undefined
    },
  }
}

async function signedIn(
  proxy: ProxyUnderTest,
  clientName = 'refresh test',
): Promise<{ clientId: string; tokens: Tokens }> {
  const redirectUri = 'http://127.0.0.1:45555/cb'
  const client = await registerClient(proxy.url, {
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
    client_name: clientName,
  })
  const { code, verifier } = await signInForCode(proxy, {
    clientId: client.client_id,
    redirectUri,
    state: 's',
  })
  const res = await formPost(proxy.url, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: client.client_id,
  })
  expect(res.status).toBe(200)
  return { clientId: client.client_id, tokens: (await res.json()) as Tokens }
}

const refresh = (url: string, clientId: string, token: string) =>
  formPost(url, { grant_type: 'refresh_token', refresh_token: token, client_id: clientId })

describe.each(['memory', 'redis'] as const)('refresh token rotation (%s store)', (store) => {
  let proxy: ProxyUnderTest
  const counter = upstreamRefreshCounter()
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      store,
      env: { REFRESH_GRACE_SECONDS: '2' },
      fetch: counter.fetch,
    })
  })
  afterAll(() => proxy.close())

  it('issues a refresh token to an SDK-style client that never asked for offline_access', async () => {
    const { tokens } = await signedIn(proxy)
    // `<grant id>.<secret>`: the grant id finds the record in the grant's Redis Cluster slot.
    expect(tokens.refresh_token).toMatch(/^[\w-]{22}\.[\w-]{43}$/)
    expect(tokens.scope).toBe('openid profile email')
  })

  it("refuses a refresh token whose grant id was swapped for another of the client's grants", async () => {
    const { clientId, tokens } = await signedIn(proxy, 'swapped grant id')
    const other = await signedIn(proxy, 'swapped grant id')
    const [, secret] = tokens.refresh_token.split('.')
    const [otherGrant] = other.tokens.refresh_token.split('.')
    for (const forged of [`${otherGrant}.${secret}`, `${secret}`, `.${secret}`, `x}{.${secret}`]) {
      const res = await refresh(proxy.url, clientId, forged)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
    }
    expect((await refresh(proxy.url, clientId, tokens.refresh_token)).status).toBe(200)
    expect((await refresh(proxy.url, other.clientId, other.tokens.refresh_token)).status).toBe(200)
  })

  it('rotates on every use, refreshing the upstream token too', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const before = counter.count()
    const res = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const next = (await res.json()) as Tokens
    expect(next.refresh_token).not.toBe(tokens.refresh_token)
    expect(next.access_token).not.toBe(tokens.access_token)
    expect(counter.count()).toBe(before + 1)
    const again = await refresh(proxy.url, clientId, next.refresh_token)
    expect(again.status).toBe(200)
  })

  it('answers a retry within the grace period with the same successor, then treats reuse as theft', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const first = (await (
      await refresh(proxy.url, clientId, tokens.refresh_token)
    ).json()) as Tokens
    const retry = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(retry.status).toBe(200)
    const retried = (await retry.json()) as Tokens
    expect(retried.refresh_token).toBe(first.refresh_token)

    // Past the grace, the old token is a replay: the whole family ends, successor included.
    await new Promise((resolve) => setTimeout(resolve, 2200))
    const reuse = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(reuse.status).toBe(400)
    expect(await reuse.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'the refresh token was already used; the session is revoked',
    })
    const successor = await refresh(proxy.url, clientId, first.refresh_token)
    expect(successor.status).toBe(400)
    expect(await successor.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it('refuses a refresh token presented by another client', async () => {
    const { tokens } = await signedIn(proxy)
    const other = await signedIn(proxy, 'another client')
    expect(other.clientId).not.toBe((await signedIn(proxy)).clientId)
    const res = await refresh(proxy.url, other.clientId, tokens.refresh_token)
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it('answers temporarily_unavailable while the upstream is down and keeps the token usable', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    counter.down(true)
    try {
      const res = await refresh(proxy.url, clientId, tokens.refresh_token)
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBeTruthy()
      expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
    } finally {
      counter.down(false)
    }
    expect((await refresh(proxy.url, clientId, tokens.refresh_token)).status).toBe(200)
  })
})

describe.each(['memory', 'redis'] as const)('the refresh grace (%s store)', (store) => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    // A grace far longer than the test: every verdict below is the successor's use, not time.
    proxy = await startProxy({ flavor: 'kinde', store, env: { REFRESH_GRACE_SECONDS: '600' } })
  })
  afterAll(() => proxy.close())

  const json = async (res: Response) => (await res.json()) as Tokens

  it('answers the previous token with the same successor while that successor is unused (a lost response)', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const first = await json(await refresh(proxy.url, clientId, tokens.refresh_token))
    const retry = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(retry.status).toBe(200)
    expect((await json(retry)).refresh_token).toBe(first.refresh_token)
    // The client that lost the response carries on with the successor.
    expect((await refresh(proxy.url, clientId, first.refresh_token)).status).toBe(200)
  })

  it('treats the previous token as reuse once its successor was used, and ends the family', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const first = await json(await refresh(proxy.url, clientId, tokens.refresh_token))
    const second = await json(await refresh(proxy.url, clientId, first.refresh_token))
    // A stolen old token may not walk the chain to the family's newest token.
    const walk = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(walk.status).toBe(400)
    expect(await walk.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'the refresh token was already used; the session is revoked',
    })
    for (const token of [second.refresh_token, first.refresh_token]) {
      const res = await refresh(proxy.url, clientId, token)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
    }
    const gate = await fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${second.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    })
    expect(gate.status).toBe(401)
  })

  it('treats the previous token as reuse once its successor rotated further', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const first = await json(await refresh(proxy.url, clientId, tokens.refresh_token))
    const second = await json(await refresh(proxy.url, clientId, first.refresh_token))
    await json(await refresh(proxy.url, clientId, second.refresh_token))
    // `first` was rotated within the grace, but its successor was used since.
    expect((await refresh(proxy.url, clientId, first.refresh_token)).status).toBe(400)
  })
})

describe('an upstream that ends the session', () => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'auth0', store: 'memory' })
  })
  afterAll(() => proxy.close())

  it('ends the family with invalid_grant when the upstream refuses its refresh token', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    // The user's upstream session is revoked behind the proxy's back (an admin, a logout).
    const found = await lookupRefreshToken(proxy.server.deps, tokens.refresh_token, clientId)
    if (found.kind !== 'current') throw new Error('expected a current refresh token')
    const grant = await findGrant(proxy.server.deps, found.grant.id)
    const upstream = await upstreamTokens(proxy.server.deps, grant as NonNullable<typeof grant>)
    await proxy.server.deps.upstream?.revoke(upstream.refreshToken as string, 'refresh_token')

    const res = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'the identity provider ended this session; sign in again',
    })
    expect((await refresh(proxy.url, clientId, tokens.refresh_token)).status).toBe(400)
  })
})

describe('concurrent refreshes on two instances sharing Redis', () => {
  let proxy: ProxyUnderTest
  let sibling: Awaited<ReturnType<typeof startSibling>>
  const counter = upstreamRefreshCounter()
  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', store: 'redis', fetch: counter.fetch })
    sibling = await startSibling(proxy, { fetch: counter.fetch })
  })
  afterAll(async () => {
    await sibling.close()
    await proxy.close()
  })

  it('spends the upstream refresh token once and leaves one live family', async () => {
    const { clientId, tokens } = await signedIn(proxy)
    const before = counter.count()
    const responses = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        refresh(i % 2 ? sibling.url : proxy.url, clientId, tokens.refresh_token),
      ),
    )
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200))
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as Tokens[]
    // Kinde rotates its refresh tokens: a second upstream spend would have failed outright.
    expect(counter.count()).toBe(before + 1)
    expect(new Set(bodies.map((b) => b.refresh_token)).size).toBe(1)
    const successor = bodies[0]?.refresh_token as string
    expect((await refresh(sibling.url, clientId, successor)).status).toBe(200)
  })
})

/**
 * OpenID Connect Back-Channel Logout 1.0 at `POST /backchannel-logout`: the real upstream
 * (oidc-provider) sends its own logout tokens; tokens it would never send are signed with its
 * own key, forgeries with another. On the memory store and on Redis.
 */
import { randomUUID } from 'node:crypto'
import { generateKeyPair, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listUserGrants } from '../src/tokens/end-grants.js'
import { formPost } from './support/flow.js'
import { type ApprovedClient, approveClient, mcpStatus, refreshOutcome } from './support/grants.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { UpstreamUser } from './support/upstream.js'

const ALICE: UpstreamUser = { sub: 'kp_alice', email: 'alice@example.test', name: 'Alice' }
const BOB: UpstreamUser = { sub: 'kp_bob', email: 'bob@example.test', name: 'Bob' }
const EVENT = 'http://schemas.openid.net/event/backchannel-logout'

describe.each(['memory', 'redis'] as const)('back-channel logout on %s', (store) => {
  let proxy: ProxyUnderTest

  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'auth0',
      store,
      backchannelLogout: true,
      upstream: { users: [ALICE, BOB] },
    })
  })
  afterAll(() => proxy?.close())

  const logout = (logoutToken: string) =>
    formPost(proxy.url, { logout_token: logoutToken }, '/backchannel-logout')

  /** A logout token signed by the upstream's own key: `claims` replace the valid ones. */
  const signed = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000)
    const payload: Record<string, unknown> = {
      iss: proxy.upstream.issuer,
      aud: PROXY_CLIENT.client_id,
      iat: now,
      exp: now + 120,
      jti: randomUUID(),
      events: { [EVENT]: {} },
      sub: ALICE.sub,
      ...claims,
    }
    for (const key of Object.keys(payload)) if (payload[key] === undefined) delete payload[key]
    return proxy.upstream.signJwt(payload, { typ: 'logout+jwt', ...header })
  }

  async function expectRefused(res: Response, description: RegExp) {
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as { error: string; error_description: string }
    expect(body.error).toBe('invalid_request')
    expect(body.error_description).toMatch(description)
  }

  async function expectAlive(...clients: ApprovedClient[]) {
    for (const client of clients) expect(await mcpStatus(proxy, client.accessToken)).toBe(200)
  }

  it("ends every grant of the user named by the upstream's own logout token, and only theirs", async () => {
    const [claude, cursor, bobs] = await Promise.all([
      approveClient(proxy, 'Claude', ALICE.sub),
      approveClient(proxy, 'Cursor', ALICE.sub),
      approveClient(proxy, 'Bob tool', BOB.sub),
    ])
    await expectAlive(claude, cursor, bobs)
    const [grant] = await listUserGrants(proxy.server.deps, ALICE.sub)
    // The ID token named the upstream session; the grant remembers it.
    expect(grant?.upstreamSid).toEqual(expect.any(String))

    // oidc-provider signs and posts the token itself (and fails unless the proxy answers 200).
    await proxy.upstream.backchannelLogout(ALICE.sub, grant?.upstreamSid)

    for (const client of [claude, cursor]) {
      expect(await mcpStatus(proxy, client.accessToken)).toBe(401)
      expect(await refreshOutcome(proxy, client)).toBe('invalid_grant')
    }
    await expectAlive(bobs)
    expect(await refreshOutcome(proxy, bobs)).toBe(200)
    expect(await listUserGrants(proxy.server.deps, ALICE.sub)).toEqual([])
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text()
    expect(metrics).toMatch(/^mcp_oauth_proxy_grants_revoked_total\{by="logout"\} [2-9]/m)
  })

  it('ends only the grants of the upstream session when the token names only a sid', async () => {
    const first = await approveClient(proxy, 'First session', BOB.sub)
    const second = await approveClient(proxy, 'Second session', BOB.sub)
    const grants = await listUserGrants(proxy.server.deps, BOB.sub)
    const firstGrant = grants.find((g) => g.clientId === first.clientId)
    const secondGrant = grants.find((g) => g.clientId === second.clientId)
    // Each browserless login is a session of its own at the upstream.
    expect(firstGrant?.upstreamSid).not.toBe(secondGrant?.upstreamSid)

    const res = await logout(await signed({ sub: undefined, sid: firstGrant?.upstreamSid }))
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await mcpStatus(proxy, first.accessToken)).toBe(401)
    await expectAlive(second)
  })

  it.each([
    ['wrong aud', { aud: 'another-client' }, /aud/],
    ['with a nonce', { nonce: 'n-0S6_WzA2Mj' }, /nonce/],
    ['without events', { events: undefined }, /events/],
    ['with another event', { events: { 'http://example.test/other': {} } }, /logout event/],
    ['without sub and sid', { sub: undefined }, /neither sub nor sid/],
    ['from another issuer', { iss: 'https://evil.example.test/' }, /iss/],
    ['issued long ago', { iat: Math.floor(Date.now() / 1000) - 3600, exp: undefined }, /too old/],
    ['without jti', { jti: undefined }, /jti/],
  ])('refuses a logout token %s and ends nothing', async (_case, claims, description) => {
    const victim = await approveClient(proxy, 'Survivor', ALICE.sub)
    await expectRefused(await logout(await signed(claims)), description)
    await expectAlive(victim)
    expect(await refreshOutcome(proxy, victim)).toBe(200)
  })

  it('refuses a logout token signed with another key and ends nothing', async () => {
    const victim = await approveClient(proxy, 'Forgery target', ALICE.sub)
    const { privateKey } = await generateKeyPair('RS256')
    const now = Math.floor(Date.now() / 1000)
    const forged = await new SignJWT({
      events: { [EVENT]: {} },
      sub: ALICE.sub,
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt' })
      .setIssuer(proxy.upstream.issuer)
      .setAudience(PROXY_CLIENT.client_id)
      .setIssuedAt(now)
      .sign(privateKey)
    await expectRefused(await logout(forged), /not signed by the identity provider/)
    // The upstream's own kid on a foreign signature is no better.
    const genuine = await signed({})
    const [header, payload] = genuine.split('.')
    const other = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).sign(privateKey)
    await expectRefused(
      await logout(`${header}.${payload}.${other.split('.')[2]}`),
      /not signed by the identity provider/,
    )
    await expectRefused(await logout(`${header}.${payload}.`), /malformed|algorithm|signed/)
    await expectAlive(victim)
  })

  it('refuses a replayed logout token, after acting on it once', async () => {
    const first = await approveClient(proxy, 'Replay target', ALICE.sub)
    const token = await signed({})
    expect((await logout(token)).status).toBe(200)
    expect(await mcpStatus(proxy, first.accessToken)).toBe(401)

    const later = await approveClient(proxy, 'Signed in again', ALICE.sub)
    await expectRefused(await logout(token), /already used/)
    await expectAlive(later)
  })

  it('answers a request without a logout_token, or not a form, with invalid_request', async () => {
    await expectRefused(await formPost(proxy.url, {}, '/backchannel-logout'), /logout_token/)
    const json = await fetch(`${proxy.url}/backchannel-logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ logout_token: await signed({}) }),
    })
    await expectRefused(json, /x-www-form-urlencoded/)
    const get = await fetch(`${proxy.url}/backchannel-logout`)
    expect(get.status).toBe(405)
  })
})

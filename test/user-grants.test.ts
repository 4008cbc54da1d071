/**
 * The per-user grant index: kept beside the grants in single-key steps, renewed as a grant
 * lives on through refreshes, and pruned of grants that are gone.
 */
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { ACCOUNT_SESSION_SECONDS } from '../src/oauth/account.js'
import { setAccountSession } from '../src/oauth/cookies.js'
import { listUserGrants } from '../src/tokens/end-grants.js'
import { createGrant, findGrant, revokeGrant, saveGrant } from '../src/tokens/grants.js'
import { userGrantsKey } from '../src/tokens/user-grants.js'
import { createTestApp } from './support/app.js'

const DAY = 86_400

async function setUp() {
  const test = await createTestApp({ env: { REFRESH_TOKEN_TTL_SECONDS: String(2 * DAY) } })
  const grant = (sub: string, clientId = 'client-a') =>
    createGrant(test.deps, {
      clientId,
      identity: { sub, sid: `session-of-${sub}` },
      scopes: ['openid'],
      upstream: { accessToken: 'upstream-at', expiresAt: test.clock.now() + 3600 },
      redirectUri: 'https://app.example.test/cb',
    })
  return { ...test, grant }
}

describe('the per-user grant index', () => {
  it("lists a user's grants newest first, with what the account page shows, and nobody else's", async () => {
    const { deps, clock, grant } = await setUp()
    const first = await grant('alice', 'client-a')
    clock.advance(60)
    const second = await grant('alice', 'client-b')
    await grant('bob')
    const listed = await listUserGrants(deps, 'alice')
    expect(listed.map((g) => g.id)).toEqual([second.id, first.id])
    expect(listed[0]).toMatchObject({
      upstreamSid: 'session-of-alice',
      redirectUri: 'https://app.example.test/cb',
      lastUsedAt: second.createdAt,
    })
  })

  it('keeps naming a grant that refreshes keep alive past its first expiry, stamping its last use', async () => {
    const { deps, clock, grant } = await setUp()
    const created = await grant('carol')
    for (let day = 0; day < 5; day++) {
      clock.advance(DAY)
      const current = await findGrant(deps, created.id)
      if (!current) throw new Error('the grant expired between refreshes')
      await saveGrant(deps, current)
    }
    const [listed] = await listUserGrants(deps, 'carol')
    expect(listed?.id).toBe(created.id)
    expect(listed?.lastUsedAt).toBe(Math.floor(clock.now()))
  })

  it('drops grants that expired or were revoked, pruning the index as it lists', async () => {
    const { deps, clock, store, grant } = await setUp()
    const revoked = await grant('dave', 'client-a')
    await revokeGrant(deps, revoked.id)
    expect(await store.indexMembers(userGrantsKey('dave'), 10)).toEqual([])

    const expiring = await grant('dave', 'client-b')
    clock.advance(2 * DAY + 1)
    // The grant is gone; its index entry (kept a day longer) is not, until a listing prunes it.
    expect(await store.indexMembers(userGrantsKey('dave'), 10)).toEqual([expiring.id])
    expect(await listUserGrants(deps, 'dave')).toEqual([])
    expect(await store.indexMembers(userGrantsKey('dave'), 10)).toEqual([])
  })
})

describe('the account session cookie', () => {
  it.each([
    [
      'https',
      'https://mcp.example.test',
      /^__Host-account=[\w-]+; Max-Age=900; Path=\/; HttpOnly; Secure; SameSite=Lax$/,
    ],
    [
      'http on loopback',
      'http://127.0.0.1:3000',
      /^mcp-account=[\w-]+; Max-Age=900; Path=\/; HttpOnly; SameSite=Lax$/,
    ],
  ])('is HttpOnly, SameSite=Lax and 15 minutes long on %s', async (_name, publicUrl, shape) => {
    const { config } = await createTestApp({ env: { PUBLIC_URL: publicUrl } })
    const app = new Hono().get('/', (c) => {
      setAccountSession(c, config, 'session-id-value', ACCOUNT_SESSION_SECONDS)
      return c.body(null, 204)
    })
    const res = await app.request('/')
    expect(res.headers.get('set-cookie')).toMatch(shape)
  })
})

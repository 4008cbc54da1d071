import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { type RunningServer, startServer } from '../src/server.js'
import { mintAccessToken } from '../src/tokens/access-token.js'
import { lookupRefreshToken } from '../src/tokens/grants.js'
import { formPost, registerClient, signInForCode } from './support/flow.js'
import { initializeMessage, mcpRequest } from './support/mcp.js'
import { freePort } from './support/net.js'
import {
  PROXY_CLIENT,
  type ProxyUnderTest,
  startProxy,
  startSibling,
  upstreamEnv,
} from './support/proxy.js'
import { deleteKeys, REDIS_URL, uniquePrefix } from './support/redis.js'
import { startUpstream } from './support/upstream.js'

// Races the issue names, made explicit: N concurrent redemptions of one authorization code,
// N concurrent refreshes with one refresh token, and instances generating keys at once.

const N = 12
const REDIRECT_URI = 'http://127.0.0.1:7301/cb'

interface TokenBody {
  access_token?: string
  refresh_token?: string
  error?: string
  error_description?: string
}

interface Answer {
  status: number
  body: TokenBody
}

async function token(url: string, params: Record<string, string>): Promise<Answer> {
  const res = await formPost(url, params)
  return { status: res.status, body: (await res.json()) as TokenBody }
}

/** Counts the refresh_token grants the proxy spends at the upstream. */
function refreshCounter() {
  let count = 0
  const counting: typeof fetch = (input, init) => {
    if (String(init?.body ?? '').includes('grant_type=refresh_token')) count++
    return fetch(input, init)
  }
  return { fetch: counting, count: () => count }
}

/** Signs in through consent and the upstream: the token request for a fresh code. */
async function freshCode(proxy: ProxyUnderTest, clientId: string) {
  const { code, verifier } = await signInForCode(proxy, {
    clientId,
    redirectUri: REDIRECT_URI,
    state: 'race',
  })
  return {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: REDIRECT_URI,
    client_id: clientId,
  }
}

describe.each(['memory', 'redis'] as const)(
  'token endpoint races (%s store; on Redis across two instances)',
  (store) => {
    let proxy: ProxyUnderTest
    /** Where requests go: the proxy, and on Redis a second instance sharing its store. */
    let urls: string[]
    let closeSibling: (() => Promise<void>) | undefined
    let clientId: string
    const counter = refreshCounter()

    beforeAll(async () => {
      proxy = await startProxy({ flavor: 'kinde', store, fetch: counter.fetch })
      urls = [proxy.url]
      if (store === 'redis') {
        const sibling = await startSibling(proxy, { fetch: counter.fetch })
        urls.push(sibling.url)
        closeSibling = sibling.close
      }
      ;({ client_id: clientId } = await registerClient(proxy.url, {
        client_name: `Races (${store})`,
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'none',
      }))
    })
    afterAll(async () => {
      await closeSibling?.()
      await proxy?.close()
    })

    const at = (i: number) => urls[i % urls.length] as string

    it(`lets exactly one of ${N} concurrent redemptions of one code succeed`, async () => {
      const request = await freshCode(proxy, clientId)
      const answers = await Promise.all(Array.from({ length: N }, (_, i) => token(at(i), request)))

      const granted = answers.filter((a) => a.status === 200)
      const refused = answers.filter((a) => a.status !== 200)
      expect(granted).toHaveLength(1)
      expect(refused.map((a) => [a.status, a.body.error])).toEqual(
        Array(N - 1).fill([400, 'invalid_grant']),
      )
      // The replays revoked what the one success issued: no family lives on from a replayed code.
      const refresh = await token(at(1), {
        grant_type: 'refresh_token',
        refresh_token: granted[0]?.body.refresh_token as string,
        client_id: clientId,
      })
      expect([refresh.status, refresh.body.error]).toEqual([400, 'invalid_grant'])
    })

    it(`rotates once for ${N} concurrent refreshes with one token and leaves one live family`, async () => {
      const { refresh_token: original } = (await token(proxy.url, await freshCode(proxy, clientId)))
        .body as Required<TokenBody>
      const before = counter.count()
      const answers = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          token(at(i), {
            grant_type: 'refresh_token',
            refresh_token: original,
            client_id: clientId,
          }),
        ),
      )

      // One rotation: one upstream refresh, and everyone who got tokens got the same successor
      // (the first rotated, the rest the grace answer). Nobody was refused or failed.
      expect(answers.map((a) => a.status)).toEqual(Array(N).fill(200))
      expect(counter.count() - before).toBe(1)
      const successors = new Set(answers.map((a) => a.body.refresh_token))
      expect(successors.size).toBe(1)
      const successor = answers[0]?.body.refresh_token as string
      expect(successor).not.toBe(original)

      const deps = proxy.server.deps
      expect(await lookupRefreshToken(deps, successor, clientId)).toMatchObject({ kind: 'current' })
      expect(await lookupRefreshToken(deps, original, clientId)).toMatchObject({
        kind: 'grace',
        successor,
      })
      // The family goes on from the successor, on any instance.
      const next = await token(at(1), {
        grant_type: 'refresh_token',
        refresh_token: successor,
        client_id: clientId,
      })
      expect(next.status).toBe(200)
    })
  },
)

describe('instances generating keys at once on one fresh Redis prefix', () => {
  const INSTANCES = 10
  let servers: RunningServer[] = []
  let prefix: string
  let closeUpstream: () => Promise<void>

  beforeAll(async () => {
    const publicUrl = `http://127.0.0.1:${await freePort()}`
    const upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${publicUrl}/callback`] },
    })
    closeUpstream = () => upstream.close()
    prefix = uniquePrefix('key-race')
    const env = {
      PUBLIC_URL: publicUrl,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      ...upstreamEnv(upstream),
    }
    // Started together, not one after the other: every instance finds no keys and generates.
    servers = await Promise.all(
      Array.from({ length: INSTANCES }, async () =>
        startServer(loadConfig({ ...env, PORT: String(await freePort()) }), {
          logger: pino({ level: 'silent' }),
        }),
      ),
    )
  })
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()))
    await closeUpstream?.()
    if (prefix) await deleteKeys(prefix)
  })

  it(`ends with one signing key and one encryption key across ${INSTANCES} servers`, async () => {
    const published = await Promise.all(
      servers.map(async (server) => {
        const res = await fetch(`${server.url}/.well-known/jwks.json`)
        expect(res.status).toBe(200)
        return (await res.json()) as { keys: { kid: string }[] }
      }),
    )
    const [first] = published
    expect(first?.keys).toHaveLength(1)
    for (const jwks of published) expect(jwks).toEqual(first)
    const encryption = await Promise.all(
      servers.map(async (server) => (await server.deps.keys.current()).encryption.kid),
    )
    expect(new Set(encryption).size).toBe(1)
  })

  it('lets every instance accept what another signed and sealed', async () => {
    // Minted directly: a sign-in is not the subject here, only which keys sign and seal.
    const [minter, ...others] = servers as [RunningServer, ...RunningServer[]]
    const access = await mintAccessToken(minter.deps, {
      sub: 'user-race',
      clientId: 'client-race',
      scopes: ['openid'],
      actor: 'user',
      upstream: { at: 'upstream-access-token', exp: Math.floor(Date.now() / 1000) + 600 },
      upstreamRefreshable: false,
    })
    for (const other of others) {
      const res = await mcpRequest(`${other.url}/mcp`, {
        token: access.token,
        body: initializeMessage(),
      })
      expect(res.status).toBe(200)
      await res.body?.cancel()
    }
  })
})

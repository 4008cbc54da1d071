import type { ChildProcess } from 'node:child_process'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBalancer, startProcess } from './support/fleet.js'
import { formPost } from './support/flow.js'
import { connectClient, resultJson, signedInProvider } from './support/mcp.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT, upstreamEnv } from './support/proxy.js'
import { uniquePrefix } from './support/redis.js'
import {
  type RedisServer,
  startRedisCluster,
  startRedisSentinelSet,
} from './support/redis-server.js'
import { startUpstream, type Upstream } from './support/upstream.js'

/** A replicated Redis the test started, as the proxy's environment names it. */
interface Topology {
  readonly env: Record<string, string>
  /** The master holding `fullKey` now. */
  masterOf(fullKey: string): Promise<RedisServer>
  dispose(): Promise<void>
}

async function cluster(): Promise<Topology> {
  const started = await startRedisCluster()
  return {
    env: { REDIS_CLUSTER_NODES: started.nodes.map((n) => `${n.host}:${n.port}`).join(',') },
    masterOf: (key) => started.masterOf(key),
    dispose: started.dispose,
  }
}

async function sentinel(): Promise<Topology> {
  const started = await startRedisSentinelSet()
  return {
    env: {
      REDIS_SENTINELS: started.sentinels.map((n) => `${n.host}:${n.port}`).join(','),
      REDIS_SENTINEL_MASTER: started.masterName,
    },
    masterOf: () => started.master(),
    dispose: started.dispose,
  }
}

/** Polls until `probe` holds: the fleet serving again after a failover. */
async function eventually(probe: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('the fleet did not recover')
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

describe.each([
  ['a Redis Cluster', cluster],
  ['a Sentinel set', sentinel],
])('two proxy processes behind a round-robin balancer on %s', (_name, startTopology) => {
  let topology: Topology
  let upstream: Upstream
  let balancer: Awaited<ReturnType<typeof startBalancer>>
  const children: ChildProcess[] = []
  const prefix = uniquePrefix('ha')
  let publicUrl: string
  let instances: string[]

  beforeAll(async () => {
    topology = await startTopology()
    const port = await freePort()
    publicUrl = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${publicUrl}/callback`] },
    })
    const ports = [await freePort(), await freePort()]
    instances = ports.map((p) => `http://127.0.0.1:${p}`)
    const base = {
      PUBLIC_URL: publicUrl,
      HOST: '127.0.0.1',
      ...topology.env,
      REDIS_KEY_PREFIX: prefix,
      REDIS_TIMEOUT_MS: '1000',
      MCP_SESSIONS: 'stateless',
      LOG_LEVEL: 'info',
      ...upstreamEnv(upstream),
    }
    for (const p of ports) children.push(await startProcess({ ...base, PORT: String(p) }))
    balancer = await startBalancer(port, instances)
  }, 120_000)

  afterAll(async () => {
    balancer?.server.close()
    for (const child of children) child.kill('SIGTERM')
    await upstream?.close()
    await topology?.dispose()
  })

  it('completes the flow, keeps every grant through a killed master, and recovers without a restart', async () => {
    const serverUrl = `${publicUrl}/mcp`
    // Registration, consent, upstream login and code exchange, all through the balancer.
    const provider = await signedInProvider({ url: publicUrl, upstream }, { port: 43999 })
    const first = await connectClient(serverUrl, provider)
    expect(
      resultJson(await first.client.callTool({ name: 'whoami', arguments: {} })),
    ).toMatchObject({ actor: 'user', clientId: provider.information?.client_id })
    await first.client.close()
    expect(await auth(provider, { serverUrl })).toBe('AUTHORIZED')
    const clientId = provider.information?.client_id as string
    const issuedBeforeKill = provider.saved?.refresh_token as string

    // The master holding this grant's slot dies.
    const grantId = issuedBeforeKill.split('.')[0]
    const master = await topology.masterOf(`${prefix}grant:{${grantId}}`)
    await master.stop()

    // While the engine fails over: 503 temporarily_unavailable, never a 500 or a hang, and
    // the token is not spent by the failed attempt.
    const during = await formPost(publicUrl, {
      grant_type: 'refresh_token',
      refresh_token: issuedBeforeKill,
      client_id: clientId,
    })
    expect(during.status).toBe(503)
    expect(await during.json()).toMatchObject({ error: 'temporarily_unavailable' })
    for (const instance of instances) {
      expect((await fetch(`${instance}/readyz`)).status).toBe(503)
    }

    // The same processes serve again once a replica took over.
    await eventually(async () => {
      const ready = await Promise.all(instances.map((i) => fetch(`${i}/readyz`)))
      return ready.every((r) => r.status === 200)
    })
    const after = await formPost(publicUrl, {
      grant_type: 'refresh_token',
      refresh_token: issuedBeforeKill,
      client_id: clientId,
    })
    expect(after.status).toBe(200)
    const tokens = (await after.json()) as { access_token: string; refresh_token: string }
    provider.saveTokens({ ...tokens, token_type: 'Bearer' })
    const second = await connectClient(serverUrl, provider)
    expect(
      resultJson(await second.client.callTool({ name: 'whoami', arguments: {} })),
    ).toMatchObject({ actor: 'user' })
    await second.client.close()

    // Revocation reaches the whole family, from either instance.
    const revoked = await formPost(
      publicUrl,
      { token: tokens.refresh_token, client_id: clientId },
      '/revoke',
    )
    expect(revoked.status).toBe(200)
    for (let i = 0; i < 2; i++) {
      const refused = await formPost(publicUrl, {
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token,
        client_id: clientId,
      })
      expect(refused.status).toBe(400)
      expect(await refused.json()).toMatchObject({ error: 'invalid_grant' })
    }

    expect(balancer.hits[0]).toBeGreaterThan(3)
    expect(balancer.hits[1]).toBeGreaterThan(3)
  }, 180_000)
})

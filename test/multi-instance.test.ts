import type { ChildProcess } from 'node:child_process'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBalancer, startProcess } from './support/fleet.js'
import { signIn, TestOAuthProvider } from './support/flow.js'
import { connectClient, resultJson } from './support/mcp.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT, upstreamEnv } from './support/proxy.js'
import { deleteKeys, REDIS_URL, uniquePrefix } from './support/redis.js'
import { startUpstream, type Upstream } from './support/upstream.js'

describe('two proxy processes behind a round-robin balancer, sharing Redis', () => {
  let upstream: Upstream
  let balancer: Awaited<ReturnType<typeof startBalancer>>
  const children: ChildProcess[] = []
  const prefix = uniquePrefix('fleet')
  let publicUrl: string

  beforeAll(async () => {
    const port = await freePort()
    publicUrl = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${publicUrl}/callback`] },
    })
    const ports = [await freePort(), await freePort()]
    const base = {
      PUBLIC_URL: publicUrl,
      HOST: '127.0.0.1',
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      // Sessions live in one process; across a fleet without sticky routing, stateless mode.
      MCP_SESSIONS: 'stateless',
      LOG_LEVEL: 'info',
      ...upstreamEnv(upstream),
    }
    for (const p of ports) children.push(await startProcess({ ...base, PORT: String(p) }))
    balancer = await startBalancer(
      port,
      ports.map((p) => `http://127.0.0.1:${p}`),
    )
  })

  afterAll(async () => {
    balancer?.server.close()
    for (const child of children) child.kill('SIGTERM')
    await upstream?.close()
    await deleteKeys(prefix)
  })

  it('completes discovery, registration, consent, login, token, MCP call and refresh', async () => {
    const serverUrl = `${publicUrl}/mcp`
    const redirectUrl = 'http://127.0.0.1:43999/cb'
    const provider = new TestOAuthProvider(redirectUrl, {
      client_name: 'fleet client',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    })
    expect(await auth(provider, { serverUrl })).toBe('REDIRECT')
    const proxy = { url: publicUrl, upstream }
    const back = await signIn(proxy, provider.authorizationUrls[0] as URL)
    const code = back.searchParams.get('code') as string
    expect(code).toBeTruthy()
    expect(await auth(provider, { serverUrl, authorizationCode: code })).toBe('AUTHORIZED')

    const { client } = await connectClient(serverUrl, provider)
    const whoami = resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
    expect(whoami).toMatchObject({ actor: 'user', clientId: provider.information?.client_id })
    await client.close()

    const before = provider.saved?.refresh_token
    expect(await auth(provider, { serverUrl })).toBe('AUTHORIZED')
    expect(provider.saved?.refresh_token).not.toBe(before)

    // Every step really alternated between the two processes.
    expect(balancer.hits[0]).toBeGreaterThan(3)
    expect(balancer.hits[1]).toBeGreaterThan(3)
  })
})

import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../src/app.js'
import type { TestOAuthProvider } from './support/flow.js'
import {
  accessTokenOf,
  connectClient,
  expectSessionNotFound,
  initializeMessage,
  mcpRequest,
  resultJson,
  rpcResponse,
  serveApp,
  signedInProvider,
  toolCallMessage,
} from './support/mcp.js'
import { type ProxyUnderTest, siblingServices, startProxy } from './support/proxy.js'
import type { UpstreamFlavor } from './support/upstream.js'

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  name: 'Alice',
  org_code: 'org_acme',
  org_id: 'org_auth0_acme',
  permissions: ['read:reports'],
}
const BOB = { sub: 'user-bob', email: 'bob@acme.test', name: 'Bob', org_code: 'org_acme' }

const CASES: [UpstreamFlavor, 'memory' | 'redis'][] = [
  ['kinde', 'memory'],
  ['kinde', 'redis'],
  ['auth0', 'memory'],
]

describe.each(CASES)('the MCP endpoint behind a %s upstream (%s store)', (flavor, store) => {
  let proxy: ProxyUnderTest
  let mcpUrl: string
  let alice: TestOAuthProvider
  let client: Client

  beforeAll(async () => {
    proxy = await startProxy({ flavor, store, upstream: { users: [ALICE, BOB] } })
    mcpUrl = `${proxy.url}/mcp`
    alice = await signedInProvider(proxy, { user: ALICE.sub })
    ;({ client } = await connectClient(mcpUrl, alice))
  })
  afterAll(async () => {
    await client?.close()
    await proxy?.close()
  })

  it('initializes a session and lists the built-in tools', async () => {
    expect(client.getServerVersion()).toMatchObject({ name: 'mcp-oauth-proxy' })
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name).sort()).toEqual(['upstream_userinfo', 'whoami'])
    expect(tools.every((tool) => tool.inputSchema.type === 'object')).toBe(true)
  })

  it('whoami returns the verified identity and never the upstream token', async () => {
    const result = await client.callTool({ name: 'whoami', arguments: {} })
    expect(result.isError).toBeFalsy()
    const identity = resultJson(result)
    expect(identity).toMatchObject({
      sub: ALICE.sub,
      email: ALICE.email,
      actor: 'user',
      permissions: ['read:reports'],
      clientId: alice.information?.client_id,
      scopes: ['openid', 'profile', 'email'],
      ...(flavor === 'kinde' ? { orgCode: 'org_acme' } : { orgId: 'org_auth0_acme' }),
    })
    const text = JSON.stringify(result)
    expect(text).not.toMatch(/upstreamAccessToken|eyJ/)
  })

  it('upstream_userinfo reaches the upstream with the unwrapped token', async () => {
    const result = await client.callTool({ name: 'upstream_userinfo', arguments: {} })
    expect(result.isError).toBeFalsy()
    expect(resultJson(result)).toMatchObject({ sub: ALICE.sub, email: ALICE.email })
  })

  it('answers an unknown tool with a JSON-RPC error', async () => {
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(
      /Tool no_such_tool not found/,
    )
  })

  it('refuses a session id presented with another user’s token as unknown (404)', async () => {
    const bob = await signedInProvider(proxy, { user: BOB.sub, port: 43113 })
    const bobToken = accessTokenOf(bob)
    // Alice's SDK client holds its session id in its transport; take it from a fresh session.
    const opened = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      body: initializeMessage(),
    })
    expect(opened.status).toBe(200)
    const sessionId = opened.headers.get('mcp-session-id') as string
    expect(sessionId).toMatch(/^[0-9a-f-]{36}$/)
    await opened.body?.cancel()

    await expectSessionNotFound(mcpUrl, bobToken, sessionId)

    // Still Alice's: her own request goes through.
    const listByAlice = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      sessionId,
      body: { jsonrpc: '2.0', id: 6, method: 'tools/list' },
    })
    expect(listByAlice.status).toBe(200)
    expect(await listByAlice.text()).toContain('whoami')
  })

  it('opens the GET event stream of a session, and DELETE ends the session', async () => {
    const token = accessTokenOf(alice)
    const opened = await mcpRequest(mcpUrl, { token, body: initializeMessage() })
    const sessionId = opened.headers.get('mcp-session-id') as string
    await opened.body?.cancel()

    const stream = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { accept: 'text/event-stream' },
    })
    expect(stream.status).toBe(200)
    expect(stream.headers.get('content-type')).toBe('text/event-stream')
    expect(stream.headers.get('mcp-session-id')).toBe(sessionId)

    const ended = await mcpRequest(mcpUrl, { token, sessionId, method: 'DELETE' })
    expect(ended.status).toBe(200)
    // Closing the session ends its event stream too.
    expect(await stream.text()).toBe('')

    const after = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: { jsonrpc: '2.0', id: 7, method: 'tools/list' },
    })
    expect(after.status).toBe(404)
  })

  it('exposes Mcp-Session-Id to browser clients', async () => {
    const opened = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      body: initializeMessage(),
      headers: { origin: 'http://localhost:6274' },
    })
    expect(opened.headers.get('access-control-allow-origin')).toBe('*')
    expect(opened.headers.get('access-control-expose-headers')).toContain('Mcp-Session-Id')
    expect(opened.headers.get('mcp-session-id')).toBeTruthy()
    await opened.body?.cancel()
  })

  it('refuses HEAD rather than opening an event stream nobody reads', async () => {
    const response = await mcpRequest(mcpUrl, { token: accessTokenOf(alice), method: 'HEAD' })
    expect(response.status).toBe(405)
    expect(response.headers.get('allow')).toBe('GET, POST, DELETE, OPTIONS')
  })

  it('asks for a session id on requests other than initialize', async () => {
    const token = accessTokenOf(alice)
    const list = await mcpRequest(mcpUrl, {
      token,
      body: { jsonrpc: '2.0', id: 8, method: 'tools/list' },
    })
    expect(list.status).toBe(400)
    const stream = await mcpRequest(mcpUrl, { token })
    expect(stream.status).toBe(400)
    expect(await stream.json()).toMatchObject({
      error: { message: /Mcp-Session-Id header is required/ },
    })
  })
})

describe('the MCP endpoint in stateless mode', () => {
  let proxy: ProxyUnderTest
  let alice: TestOAuthProvider

  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      env: { MCP_SESSIONS: 'stateless' },
      upstream: { users: [ALICE] },
    })
    alice = await signedInProvider(proxy)
  })
  afterAll(() => proxy?.close())

  it('serves the SDK client without session ids', async () => {
    const { client, transport } = await connectClient(`${proxy.url}/mcp`, alice)
    try {
      expect(transport.sessionId).toBeUndefined()
      const { tools } = await client.listTools()
      expect(tools.map((tool) => tool.name).sort()).toEqual(['upstream_userinfo', 'whoami'])
      expect(resultJson(await client.callTool({ name: 'whoami', arguments: {} }))).toMatchObject({
        sub: ALICE.sub,
      })
      expect(
        resultJson(await client.callTool({ name: 'upstream_userinfo', arguments: {} })),
      ).toMatchObject({ email: ALICE.email })
    } finally {
      await client.close()
    }
  })

  it('answers each POST on its own, with no Mcp-Session-Id', async () => {
    const token = accessTokenOf(alice)
    const list = await mcpRequest(`${proxy.url}/mcp`, {
      token,
      body: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    })
    expect(list.status).toBe(200)
    expect(list.headers.get('mcp-session-id')).toBeNull()
    expect(list.headers.get('content-type')).toBe('application/json')
    expect(await list.text()).toContain('whoami')

    // A tool call is streamed, so what the tool says before its result reaches the client.
    const call = await mcpRequest(`${proxy.url}/mcp`, { token, body: toolCallMessage('whoami', 2) })
    expect(call.status).toBe(200)
    expect(call.headers.get('mcp-session-id')).toBeNull()
    expect(call.headers.get('content-type')).toBe('text/event-stream')
    const { result } = (await rpcResponse(call)) as { result: unknown }
    expect(resultJson(result)).toMatchObject({ sub: ALICE.sub })
  })

  it('refuses GET and DELETE with 405, as a server without streams may', async () => {
    const token = accessTokenOf(alice)
    for (const method of ['GET', 'DELETE']) {
      const response = await mcpRequest(`${proxy.url}/mcp`, { token, method })
      expect(response.status).toBe(405)
      expect(response.headers.get('allow')).toBe('POST, OPTIONS')
    }
  })
})

describe.each(['memory', 'redis'] as const)(
  'transparent upstream refresh at the MCP endpoint (%s store)',
  (store) => {
    let proxy: ProxyUnderTest
    let alice: TestOAuthProvider
    let refreshes = 0
    // Counts the proxy's refresh_token requests to the upstream token endpoint.
    const countingFetch: typeof fetch = async (input, init) => {
      if (String(init?.body ?? '').includes('grant_type=refresh_token')) refreshes++
      return fetch(input, init)
    }
    const UPSTREAM_TTL_SECONDS = 2

    beforeAll(async () => {
      proxy = await startProxy({
        flavor: 'kinde',
        store,
        fetch: countingFetch,
        upstream: { users: [ALICE], accessTokenTtlSeconds: UPSTREAM_TTL_SECONDS },
      })
      alice = await signedInProvider(proxy)
    })
    afterAll(() => proxy?.close())

    /** Waits until an upstream token obtained now has certainly expired. */
    const outliveUpstreamToken = () =>
      new Promise((resolve) => setTimeout(resolve, UPSTREAM_TTL_SECONDS * 1000 + 500))

    it('renews an expired upstream token inside a valid proxy token, once for concurrent calls', async () => {
      const { client } = await connectClient(`${proxy.url}/mcp`, alice)
      try {
        // The proxy token outlives its upstream token: the proxy can refresh that itself.
        expect(alice.saved?.expires_in).toBeGreaterThan(UPSTREAM_TTL_SECONDS)
        await outliveUpstreamToken()
        expect(refreshes).toBe(0)
        const first = await client.callTool({ name: 'upstream_userinfo', arguments: {} })
        expect(first.isError).toBeFalsy()
        expect(resultJson(first)).toMatchObject({ sub: ALICE.sub, email: ALICE.email })
        expect(refreshes).toBe(1)

        // The refreshed token is remembered: the next call neither refreshes nor fails.
        expect(
          resultJson(await client.callTool({ name: 'upstream_userinfo', arguments: {} })),
        ).toMatchObject({ sub: ALICE.sub })
        expect(refreshes).toBe(1)

        await outliveUpstreamToken()
        const calls = await Promise.all([
          client.callTool({ name: 'upstream_userinfo', arguments: {} }),
          client.callTool({ name: 'upstream_userinfo', arguments: {} }),
        ])
        for (const call of calls) expect(resultJson(call)).toMatchObject({ sub: ALICE.sub })
        expect(refreshes).toBe(2)
      } finally {
        await client.close()
      }
    })

    it('refreshes once across instances sharing the store (the grant lock)', async () => {
      // A second instance: same store and keys, its own verifier and refresh cache.
      const twin = await serveApp(
        createApp(await siblingServices(proxy, { overrides: { fetch: countingFetch } })),
      )
      const here = await connectClient(`${proxy.url}/mcp`, alice)
      const there = await connectClient(`${twin.url}/mcp`, alice)
      try {
        await outliveUpstreamToken()
        const before = refreshes
        const calls = await Promise.all([
          here.client.callTool({ name: 'upstream_userinfo', arguments: {} }),
          there.client.callTool({ name: 'upstream_userinfo', arguments: {} }),
        ])
        for (const call of calls) expect(resultJson(call)).toMatchObject({ sub: ALICE.sub })
        expect(refreshes - before).toBe(1)
      } finally {
        await here.client.close()
        await there.client.close()
        await twin.close()
      }
    })

    it('answers 401 invalid_token once the grant behind the token is revoked', async () => {
      const bobless = await signedInProvider(proxy, { port: 43114 })
      const token = accessTokenOf(bobless)
      const revoked = await fetch(`${proxy.url}/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          token: bobless.saved?.refresh_token as string,
          client_id: bobless.information?.client_id as string,
        }),
      })
      expect(revoked.status).toBe(200)
      const response = await mcpRequest(`${proxy.url}/mcp`, { token, body: initializeMessage() })
      expect(response.status).toBe(401)
      expect(response.headers.get('www-authenticate')).toContain(
        'error_description="the access token has been revoked"',
      )
    })
  },
)

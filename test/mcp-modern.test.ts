import type { Client } from '@modelcontextprotocol/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TestOAuthProvider } from './support/flow.js'
import { accessTokenOf, mcpRequest, resultJson, rpcResponse } from './support/mcp.js'
import {
  connectClientV2,
  MODERN_VERSION,
  modernRequest,
  NEGOTIATION_MODES,
  type NegotiationMode,
  signedInProviderV2,
} from './support/mcp-v2.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  name: 'Alice',
  org_code: 'org_acme',
  permissions: ['read:reports'],
}

const MODES = Object.keys(NEGOTIATION_MODES) as NegotiationMode[]

describe.each(['stateful', 'stateless'] as const)(
  'the v2 SDK client (MCP_SESSIONS=%s)',
  (sessions) => {
    let proxy: ProxyUnderTest

    beforeAll(async () => {
      proxy = await startProxy({
        flavor: 'kinde',
        env: { MCP_SESSIONS: sessions },
        upstream: { users: [ALICE] },
      })
    })
    afterAll(() => proxy?.close())

    describe.each(MODES)('versionNegotiation %s', (mode) => {
      let provider: TestOAuthProvider
      let client: Client

      beforeAll(async () => {
        provider = await signedInProviderV2(proxy, mode, { user: ALICE.sub })
        ;({ client } = await connectClientV2(`${proxy.url}/mcp`, provider, mode))
      })
      afterAll(() => client?.close())

      it('signs in through the whole OAuth flow and speaks the era it asked for', () => {
        expect(provider.information?.client_id).toBeTruthy()
        expect(client.getNegotiatedProtocolVersion()).toBe(
          mode === 'legacy' ? '2025-11-25' : MODERN_VERSION,
        )
      })

      it('lists the built-in tools and calls them as the signed-in user', async () => {
        const { tools } = await client.listTools()
        expect(tools.map((tool) => tool.name).sort()).toEqual(['upstream_userinfo', 'whoami'])
        const whoami = await client.callTool({ name: 'whoami', arguments: {} })
        expect(whoami.isError).toBeFalsy()
        expect(resultJson(whoami)).toMatchObject({
          sub: ALICE.sub,
          email: ALICE.email,
          orgCode: 'org_acme',
          clientId: provider.information?.client_id,
        })
        expect(JSON.stringify(whoami)).not.toMatch(/upstreamAccessToken|eyJ/)
        const userinfo = await client.callTool({ name: 'upstream_userinfo', arguments: {} })
        expect(userinfo.isError).toBeFalsy()
        expect(resultJson(userinfo)).toMatchObject({ sub: ALICE.sub, email: ALICE.email })
      })

      if (mode !== 'legacy') {
        it('answers server/discover with the modern revision', async () => {
          const discovered = await client.discover()
          expect(discovered.supportedVersions).toEqual([MODERN_VERSION])
          expect(discovered.capabilities).toHaveProperty('tools')
        })
      }
    })
  },
)

describe('raw 2026-07-28 requests', () => {
  let proxy: ProxyUnderTest
  let token: string
  let mcpUrl: string

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', upstream: { users: [ALICE] } })
    mcpUrl = `${proxy.url}/mcp`
    token = accessTokenOf(await signedInProviderV2(proxy, 'pinned', { user: ALICE.sub }))
  })
  afterAll(() => proxy?.close())

  it('serves tools/list without a session in session mode, with caching hints', async () => {
    const { body, headers } = modernRequest('tools/list', {}, { id: 3 })
    const response = await mcpRequest(mcpUrl, { token, body, headers })
    expect(response.status).toBe(200)
    expect(response.headers.get('mcp-session-id')).toBeNull()
    const answer = (await response.json()) as { id: number; result: Record<string, unknown> }
    expect(answer.id).toBe(3)
    expect(answer.result).toMatchObject({ resultType: 'complete', cacheScope: 'public' })
    expect(answer.result.ttlMs).toBeGreaterThan(0)
  })

  it('replays for tools/list exactly what the SDK answers', async () => {
    // A cursor takes the request past the replay to the SDK's own handler.
    const replayed = modernRequest('tools/list', {}, { id: 4 })
    const bySdk = modernRequest('tools/list', { cursor: 'next' }, { id: 4 })
    const [fast, slow] = await Promise.all(
      [replayed, bySdk].map(async ({ body, headers }) => {
        const response = await mcpRequest(mcpUrl, { token, body, headers })
        expect(response.status).toBe(200)
        return response.json()
      }),
    )
    expect(fast).toEqual(slow)
  })

  it('refuses a malformed _meta envelope with 400 -32602, never from the replay', async () => {
    const { body, headers } = modernRequest('tools/list')
    const meta = (body as { params: { _meta: Record<string, unknown> } }).params._meta
    meta['io.modelcontextprotocol/clientCapabilities'] = 'all of them'
    const response = await mcpRequest(mcpUrl, { token, body, headers })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ id: 1, error: { code: -32602 } })
  })

  it('ignores an Mcp-Session-Id on a modern request', async () => {
    const { body, headers } = modernRequest('tools/call', { name: 'whoami', arguments: {} })
    const response = await mcpRequest(mcpUrl, {
      token,
      body,
      headers: { ...headers, 'mcp-session-id': 'no-such-session' },
    })
    expect(response.status).toBe(200)
    const { result } = (await rpcResponse(response)) as { result: unknown }
    expect(resultJson(result)).toMatchObject({ sub: ALICE.sub })
  })

  it('refuses a missing Mcp-Method with 400 -32020 (HeaderMismatch)', async () => {
    const { body } = modernRequest('tools/list')
    const response = await mcpRequest(mcpUrl, {
      token,
      body,
      headers: { 'mcp-protocol-version': MODERN_VERSION },
    })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ id: 1, error: { code: -32020 } })
  })

  it('refuses an Mcp-Name that disagrees with the body with 400 -32020', async () => {
    const { body, headers } = modernRequest('tools/call', { name: 'whoami', arguments: {} })
    const response = await mcpRequest(mcpUrl, {
      token,
      body,
      headers: { ...headers, 'mcp-name': 'upstream_userinfo' },
    })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { code: -32020 } })
  })

  it('refuses an unsupported revision with 400 -32022 listing the supported ones', async () => {
    const { body, headers } = modernRequest('tools/list', {}, { version: '2099-01-01' })
    const response = await mcpRequest(mcpUrl, { token, body, headers })
    expect(response.status).toBe(400)
    const answer = (await response.json()) as { error: { code: number; data: unknown } }
    expect(answer.error.code).toBe(-32022)
    expect(answer.error.data).toMatchObject({ supported: [MODERN_VERSION] })
  })

  it('answers an unknown method with 404 -32601', async () => {
    const { body, headers } = modernRequest('tools/frobnicate')
    const response = await mcpRequest(mcpUrl, { token, body, headers })
    expect(response.status).toBe(404)
    expect(await response.json()).toMatchObject({ id: 1, error: { code: -32601 } })
  })

  it('challenges a modern request without a token with 401 before anything else', async () => {
    const { body, headers } = modernRequest('server/discover')
    const response = await mcpRequest(mcpUrl, { body, headers })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${proxy.url}/.well-known/oauth-protected-resource/mcp", scope="openid profile email"`,
    )
  })
})

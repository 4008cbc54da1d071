import type { Client } from '@modelcontextprotocol/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TestOAuthProvider } from './support/flow.js'
import { resultJson } from './support/mcp.js'
import { connectClientV2, MODERN_VERSION, signedInProviderV2 } from './support/mcp-v2.js'
import { type ModernBackend, startModernBackend } from './support/modern-backend.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  name: 'Alice',
  org_code: 'org_acme',
  permissions: ['read:reports'],
}

describe('forward mode in front of a 2026-07-28 backend (v2 SDK)', () => {
  let backend: ModernBackend
  let proxy: ProxyUnderTest
  let provider: TestOAuthProvider
  let client: Client

  beforeAll(async () => {
    backend = await startModernBackend()
    proxy = await startProxy({
      flavor: 'kinde',
      env: { MCP_UPSTREAM_URL: backend.mcpUrl },
      upstream: { users: [ALICE] },
    })
    await backend.trust(proxy.upstream)
    provider = await signedInProviderV2(proxy, 'pinned', { user: ALICE.sub })
    ;({ client } = await connectClientV2(`${proxy.url}/mcp`, provider, 'pinned'))
  })
  afterAll(async () => {
    await client?.close()
    await proxy?.close()
    await backend?.close()
  })

  it('serves a client pinned to 2026-07-28 end to end: discover, list, call', async () => {
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN_VERSION)
    const discovered = await client.discover()
    expect(discovered.supportedVersions).toContain(MODERN_VERSION)
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name).sort()).toEqual([
      'upstream_userinfo',
      'weather',
      'whoami',
    ])
    const whoami = resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
    expect(whoami).toMatchObject({ sub: ALICE.sub, iss: proxy.upstream.issuer })
    const userinfo = resultJson(await client.callTool({ name: 'upstream_userinfo', arguments: {} }))
    expect(userinfo).toMatchObject({ sub: ALICE.sub, email: ALICE.email })
  })

  it('passes the mirrored headers through, Mcp-Param-* included, with no session', async () => {
    const weather = await client.callTool({ name: 'weather', arguments: { region: 'us-west1' } })
    expect(weather.isError).toBeFalsy()
    expect(resultJson(weather)).toEqual({ region: 'us-west1', sky: 'clear' })
    const seen = backend.requests.at(-1)?.headers ?? {}
    expect(seen).toMatchObject({
      'mcp-protocol-version': MODERN_VERSION,
      'mcp-method': 'tools/call',
      'mcp-name': 'weather',
      'mcp-param-region': 'us-west1',
    })
    expect(seen['mcp-session-id']).toBeUndefined()
    expect(seen.authorization).toMatch(/^Bearer ey/)
    expect(seen.authorization).not.toContain(provider.saved?.access_token)
  })
})

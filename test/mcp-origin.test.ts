import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'
import { BASE_ENV } from './support/app.js'
import { accessTokenOf, mcpRequest, signedInProvider } from './support/mcp.js'
import { modernRequest } from './support/mcp-v2.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

describe('/mcp and browser origins (DNS rebinding protection)', () => {
  let proxy: ProxyUnderTest
  let token: string
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      env: { MCP_ALLOWED_ORIGINS: 'https://app.example.com' },
    })
    token = accessTokenOf(await signedInProvider(proxy))
  })
  afterAll(() => proxy.close())

  const post = (origin: string | undefined) =>
    fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...(origin ? { origin } : {}),
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: {},
          clientInfo: { name: 'o', version: '1' },
        },
      }),
    })

  it.each([
    'http://evil.example.com',
    'https://app.example.com.evil.example',
    'null',
    'http://localhost.evil.example',
  ])('refuses Origin %s with 403 even with a valid token', async (origin) => {
    const res = await post(origin)
    expect(res.status).toBe(403)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
    expect(await res.json()).toEqual({
      jsonrpc: '2.0',
      error: { code: -32000, message: 'Forbidden: this origin may not use this MCP server' },
      id: null,
    })
  })

  it('refuses a foreign Origin on a 2026-07-28 request too, and serves an allowed one', async () => {
    const { body, headers } = modernRequest('tools/list')
    const refused = await mcpRequest(`${proxy.url}/mcp`, {
      token,
      body,
      headers: { ...headers, origin: 'http://evil.example.com' },
    })
    expect(refused.status).toBe(403)
    await refused.body?.cancel()
    const allowed = await mcpRequest(`${proxy.url}/mcp`, {
      token,
      body,
      headers: { ...headers, origin: 'https://app.example.com' },
    })
    expect(allowed.status).toBe(200)
    await allowed.body?.cancel()
  })

  it('refuses the CORS preflight of a foreign origin', async () => {
    const res = await fetch(`${proxy.url}/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example.com', 'access-control-request-method': 'POST' },
    })
    expect(res.status).toBe(403)
  })

  it.each([undefined, 'http://localhost:6274', 'http://127.0.0.1:5173', 'https://app.example.com'])(
    'serves Origin %s',
    async (origin) => {
      const res = await post(origin)
      expect(res.status).toBe(200)
    },
  )

  it("serves the server's own origin", async () => {
    expect((await post(proxy.url)).status).toBe(200)
  })
})

describe('MCP_ALLOWED_ORIGINS', () => {
  it('takes origins or *, and names anything else', () => {
    expect(
      loadConfig({ ...BASE_ENV, MCP_ALLOWED_ORIGINS: 'https://a.example, *' }).mcpAllowedOrigins,
    ).toEqual(['https://a.example', '*'])
    expect(() => loadConfig({ ...BASE_ENV, MCP_ALLOWED_ORIGINS: 'https://a.example/app' })).toThrow(
      new ConfigError([
        'MCP_ALLOWED_ORIGINS: https://a.example/app is not an origin (scheme://host[:port], no path)',
      ]),
    )
  })
})

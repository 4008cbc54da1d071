import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { Hono } from 'hono'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  ConfigError,
  createApp,
  createMcpAuthProxy,
  defineTool,
  jsonResult,
  loadConfig,
  type McpAuthProxy,
} from '../src/index.js'
import { mintAccessToken } from '../src/tokens/access-token.js'
import { findGrant, upstreamTokens } from '../src/tokens/grants.js'
import { createTestApp } from './support/app.js'
import { createTestClock } from './support/clock.js'
import { signIn, TestOAuthProvider } from './support/flow.js'
import {
  accessTokenOf,
  connectClient,
  initializeMessage,
  mcpRequest,
  resultJson,
  serveApp,
  signedInProvider,
  toolCallMessage,
} from './support/mcp.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT, upstreamEnv } from './support/proxy.js'
import { startUpstream, type Upstream } from './support/upstream.js'

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  email_verified: true,
  org_code: 'org_acme',
  permissions: ['reports:export'],
}
const MALLORY = {
  sub: 'user-mallory',
  email: 'mallory@acme.test',
  email_verified: true,
  org_code: 'org_acme',
}
const SCOPES = 'openid profile email reports:read reports:write'

const listReports = defineTool({
  name: 'list_reports',
  description: "Lists the caller's organization's reports.",
  inputSchema: { quarter: z.string().optional() },
  requiredScopes: ['reports:read'],
  handler({ quarter }, { caller, authInfo }) {
    return jsonResult({
      orgCode: caller.orgCode,
      sub: caller.sub,
      actor: caller.actor,
      quarter,
      // Tools receive the same caller built-ins do, in both places.
      sameAsAuthInfo: JSON.stringify(authInfo.extra) === JSON.stringify(caller),
      hasUpstreamToken: caller.upstreamAccessToken.length > 0,
    })
  },
})

describe('createMcpAuthProxy (library mode)', () => {
  let upstream: Upstream
  let proxy: McpAuthProxy
  let url: string
  let server: Server
  let alice: TestOAuthProvider
  let client: Client
  const authorizeUserCalls: string[] = []

  beforeAll(async () => {
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${url}/callback`] },
      users: [ALICE, MALLORY],
    })
    proxy = await createMcpAuthProxy({
      config: {
        PUBLIC_URL: url,
        SCOPES,
        // Alice's upstream permission backs both report scopes.
        SCOPE_PERMISSIONS: 'reports:read=reports:export reports:write=reports:export',
        ...upstreamEnv(upstream),
      },
      logger: pino({ level: 'silent' }),
      tools: [listReports],
      authorizeUser: (user) => {
        authorizeUserCalls.push(`${user.sub} via ${user.clientId}`)
        return user.sub !== MALLORY.sub || 'mallory may not use this server'
      },
    })
    // The application's own routes next to the proxy's, in one host app.
    const app = new Hono()
    app.get('/api/me', proxy.requireAuth(), (c) => {
      const { upstreamAccessToken, ...me } = c.get('auth')
      return c.json({ ...me, hasUpstreamToken: upstreamAccessToken.length > 0 })
    })
    app.post('/api/reports', proxy.requireAuth({ scopes: ['reports:write'] }), (c) =>
      c.json({ created: true, orgCode: c.get('auth').orgCode }),
    )
    // Guarded like the list_reports tool, for comparing the two adapters of the one gate.
    app.get('/api/reports', proxy.requireAuth({ scopes: ['reports:read'] }), (c) =>
      c.json({ orgCode: c.get('auth').orgCode }),
    )
    app.route('/', proxy.app)
    server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () =>
        resolve(started as Server),
      )
    })
    alice = await signedInProvider({ url, upstream }, { user: ALICE.sub })
    ;({ client } = await connectClient(`${url}/mcp`, alice))
  })
  afterAll(async () => {
    await client?.close()
    await new Promise<void>((resolve) => {
      server?.close(() => resolve())
      server?.closeAllConnections()
    })
    await proxy?.close()
    await upstream?.close()
  })

  it('serves the application’s tool next to the built-ins', async () => {
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name).sort()).toEqual([
      'list_reports',
      'upstream_userinfo',
      'whoami',
    ])
  })

  it('runs the application’s tool with the verified caller and its organization', async () => {
    const result = await client.callTool({
      name: 'list_reports',
      arguments: { quarter: '2025-Q1' },
    })
    expect(result.isError).toBeFalsy()
    expect(resultJson(result)).toEqual({
      orgCode: 'org_acme',
      sub: ALICE.sub,
      actor: 'user',
      quarter: '2025-Q1',
      sameAsAuthInfo: true,
      hasUpstreamToken: true,
    })
    expect(authorizeUserCalls).toContain(`${ALICE.sub} via ${alice.information?.client_id}`)
  })

  it('refuses the tool with 403 insufficient_scope to a token without its scope', async () => {
    const token = await mint({ scopes: ['openid', 'profile', 'email'] })
    const response = await mcpRequest(`${url}/mcp`, {
      token,
      body: toolCallMessage('list_reports'),
    })
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="this request needs the scope reports:read (upstream permission reports:read or reports:export)", resource_metadata="${url}/.well-known/oauth-protected-resource/mcp", scope="reports:read"`,
    )
  })

  it('sends access_denied with the reason when authorizeUser refuses the user', async () => {
    const redirectUrl = 'http://127.0.0.1:43120/oauth/callback'
    const provider = new TestOAuthProvider(redirectUrl, {
      client_name: 'library e2e',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    })
    expect(await auth(provider, { serverUrl: `${url}/mcp` })).toBe('REDIRECT')
    const [authorizeUrl] = provider.authorizationUrls
    if (!authorizeUrl) throw new Error('no authorization URL')
    const back = await signIn({ url, upstream }, authorizeUrl, { user: MALLORY.sub })
    expect(back.origin + back.pathname).toBe(redirectUrl)
    expect(back.searchParams.get('error')).toBe('access_denied')
    expect(back.searchParams.get('error_description')).toBe('mallory may not use this server')
    expect(back.searchParams.get('code')).toBeNull()
  })

  it('requireAuth answers a request without a token with the MCP gate’s 401 challenge', async () => {
    const response = await fetch(`${url}/api/me`)
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${url}/.well-known/oauth-protected-resource/mcp", scope="${SCOPES}"`,
    )
    expect(await response.json()).toEqual({
      error: 'invalid_token',
      error_description: 'an access token is required',
    })
  })

  it('requireAuth refuses a token that is not the proxy’s with 401 invalid_token', async () => {
    const response = await fetch(`${url}/api/me`, {
      headers: { authorization: 'Bearer not.a.token' },
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(
      /^Bearer error="invalid_token", error_description="[^"]+", resource_metadata=/,
    )
  })

  it('requireAuth lets the signed-in caller through with who they are in c.get("auth")', async () => {
    const response = await fetch(`${url}/api/me`, {
      headers: { authorization: `Bearer ${accessTokenOf(alice)}` },
    })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({
      sub: ALICE.sub,
      email: ALICE.email,
      orgCode: 'org_acme',
      permissions: ['reports:export'],
      actor: 'user',
      clientId: alice.information?.client_id,
      scopes: SCOPES.split(' '),
      expiresAt: expect.any(Number),
      hasUpstreamToken: true,
    })
  })

  it('requireAuth refuses a token lacking the route’s scope with 403 insufficient_scope', async () => {
    const token = await mint({ scopes: ['openid', 'reports:read'] })
    const refused = await fetch(`${url}/api/reports`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    })
    expect(refused.status).toBe(403)
    expect(refused.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="this request needs the scope reports:write (upstream permission reports:write or reports:export)", resource_metadata="${url}/.well-known/oauth-protected-resource/mcp", scope="reports:write"`,
    )
    const allowed = await fetch(`${url}/api/reports`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessTokenOf(alice)}` },
    })
    expect(allowed.status).toBe(200)
    expect(await allowed.json()).toEqual({ created: true, orgCode: 'org_acme' })
  })

  describe('refuses the same token with the same bytes on /mcp and on requireAuth', () => {
    const cases: [string, () => Promise<string | undefined>][] = [
      ['missing', async () => undefined],
      ['malformed (not a Bearer header)', async () => 'Basic YWxpY2U6c2VjcmV0'],
      ['malformed (not a token)', async () => 'Bearer not.a.token'],
      [
        'expired',
        async () => {
          const past = { ...proxy.deps, clock: { now: () => proxy.deps.clock.now() - 7200 } }
          const { token } = await mintAccessToken(past, {
            sub: ALICE.sub,
            clientId: 'client-minted',
            actor: 'user',
            orgCode: 'org_acme',
            scopes: SCOPES.split(' '),
            upstream: { at: 'upstream-access-token', exp: past.clock.now() + 3600 },
            upstreamRefreshable: false,
          })
          return `Bearer ${token}`
        },
      ],
      [
        'revoked',
        async () => {
          const signedIn = await signedInProvider(
            { url, upstream },
            { user: ALICE.sub, port: 43124 },
          )
          const token = accessTokenOf(signedIn)
          const revoked = await fetch(`${url}/revoke`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({
              token,
              client_id: signedIn.information?.client_id as string,
            }),
          })
          if (revoked.status !== 200) throw new Error(`revoke: ${revoked.status}`)
          return `Bearer ${token}`
        },
      ],
      ['under-scoped', async () => `Bearer ${await mint({ scopes: ['openid', 'profile'] })}`],
    ]

    it.each(cases)('%s', async (name, authorization) => {
      const header = await authorization()
      const headers: Record<string, string> = header ? { authorization: header } : {}
      const viaMcp = await fetch(`${url}/mcp`, {
        method: 'POST',
        headers: {
          ...headers,
          accept: 'application/json, text/event-stream',
          'content-type': 'application/json',
          'mcp-protocol-version': '2025-11-25',
        },
        body: JSON.stringify(toolCallMessage('list_reports')),
      })
      const viaRoute = await fetch(`${url}/api/reports`, { headers })
      expect(viaMcp.status).toBe(name === 'under-scoped' ? 403 : 401)
      expect(viaRoute.status).toBe(viaMcp.status)
      expect(viaRoute.headers.get('www-authenticate')).toBe(viaMcp.headers.get('www-authenticate'))
      expect(await viaRoute.text()).toBe(await viaMcp.text())
    })
  })

  it('renders the proxy’s protocol errors when mounted in another app', async () => {
    const response = await fetch(`${url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password' }),
    })
    expect(response.status).toBe(400)
    expect(response.headers.get('cache-control')).toBe('no-store')
    expect(await response.json()).toEqual({
      error: 'unsupported_grant_type',
      error_description: 'grant_type password is not supported',
    })
  })

  it('requireAuth refuses a token revoked at /revoke at once (the shared verifier)', async () => {
    const bob = await signedInProvider({ url, upstream }, { user: ALICE.sub, port: 43121 })
    const token = accessTokenOf(bob)
    const me = () => fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${token}` } })
    expect((await me()).status).toBe(200)
    const revoked = await fetch(`${url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        token,
        client_id: bob.information?.client_id as string,
      }),
    })
    expect(revoked.status).toBe(200)
    const after = await me()
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toContain(
      'error_description="the access token has been revoked"',
    )
  })

  it('shares a store with another instance, which may serve without the built-in tools', async () => {
    const twin = await createMcpAuthProxy({
      config: loadConfig({ PUBLIC_URL: url, SCOPES, ...upstreamEnv(upstream) }),
      logger: pino({ level: 'silent' }),
      store: proxy.deps.store,
      tools: [listReports],
      builtinTools: false,
      serverInfo: { name: 'reports', version: '2.0.0' },
    })
    const served = await serveApp(twin.app)
    const there = await connectClient(`${served.url}/mcp`, alice)
    try {
      expect(there.client.getServerVersion()).toMatchObject({ name: 'reports', version: '2.0.0' })
      const { tools } = await there.client.listTools()
      expect(tools.map((tool) => tool.name)).toEqual(['list_reports'])
    } finally {
      await there.client.close()
      await served.close()
      await twin.close()
    }
    // The twin did not own the store: this instance still answers from it.
    expect((await fetch(`${url}/readyz`)).status).toBe(200)
  })

  async function mint(params: { scopes: string[] }): Promise<string> {
    const { token } = await mintAccessToken(proxy.deps, {
      sub: ALICE.sub,
      clientId: 'client-minted',
      actor: 'user',
      orgCode: 'org_acme',
      upstream: { at: 'upstream-access-token', exp: proxy.deps.clock.now() + 3600 },
      upstreamRefreshable: false,
      ...params,
    })
    return token
  }
})

describe('an application route behind requireAuth, on the proxy’s own services', () => {
  // Short upstream tokens and a clock the test moves: the proxy token outlives its upstream
  // token, so requests renew it, with no waiting.
  const UPSTREAM_TTL_SECONDS = 60
  let upstream: Upstream
  let proxy: McpAuthProxy
  let server: Server
  let url: string
  const clock = createTestClock(Math.floor(Date.now() / 1000))
  const audit: Record<string, unknown>[] = []

  beforeAll(async () => {
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${url}/callback`] },
      users: [ALICE],
      accessTokenTtlSeconds: UPSTREAM_TTL_SECONDS,
    })
    proxy = await createMcpAuthProxy({
      config: { PUBLIC_URL: url, SCOPES, ...upstreamEnv(upstream) },
      logger: pino({ level: 'silent' }),
      clock,
      auditDestination: { write: (line: string) => void audit.push(JSON.parse(line)) },
    })
    const app = new Hono()
    app.get('/api/me', proxy.requireAuth(), (c) => c.json({ sub: c.get('auth').sub }))
    app.route('/', proxy.app)
    server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () =>
        resolve(started as Server),
      )
    })
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => {
      server?.close(() => resolve())
      server?.closeAllConnections()
    })
    await proxy?.close()
    await upstream?.close()
  })

  const me = (token: string) =>
    fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${token}` } })

  /** A `/metrics` sample whose name and labels include all of `parts`; 0 when absent. */
  async function metric(...parts: string[]): Promise<number> {
    const text = await (await fetch(`${url}/metrics`)).text()
    const line = text
      .split('\n')
      .find((l) => !l.startsWith('#') && parts.every((p) => l.includes(p)))
    return line ? Number(line.split(' ').at(-1)) : 0
  }
  const upstreamRefreshes = () =>
    metric(
      'mcp_oauth_proxy_upstream_request_duration_seconds_count{',
      'operation="refresh"',
      'outcome="ok"',
    )

  /** Revokes the upstream refresh token behind `token`'s grant, as an admin or a logout would. */
  async function endUpstreamSession(token: string) {
    const verified = await proxy.deps.verifier.verify(token)
    const grant = await findGrant(proxy.deps, verified.upstream.gid as string)
    if (!grant) throw new Error('no grant behind the token')
    const tokens = await upstreamTokens(proxy.deps, grant)
    await proxy.deps.upstream.revoke(tokens.refreshToken as string, 'refresh_token')
  }

  it('counts the route’s upstream refresh in /metrics, and /mcp then uses the refreshed token', async () => {
    const alice = await signedInProvider({ url, upstream }, { user: ALICE.sub, port: 43122 })
    const token = accessTokenOf(alice)
    expect(await upstreamRefreshes()).toBe(0)

    clock.advance(UPSTREAM_TTL_SECONDS + 1)
    const response = await me(token)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ sub: ALICE.sub })
    expect(await upstreamRefreshes()).toBe(1)

    // One per-grant cache: /mcp finds the token the route renewed and refreshes nothing.
    const { client } = await connectClient(`${url}/mcp`, alice)
    try {
      const result = await client.callTool({ name: 'upstream_userinfo', arguments: {} })
      expect(resultJson(result)).toMatchObject({ sub: ALICE.sub })
    } finally {
      await client.close()
    }
    expect(await upstreamRefreshes()).toBe(1)
  })

  it('records an upstream that ended the session in the audit trail, as /mcp does', async () => {
    const viaRoute = await signedInProvider({ url, upstream }, { user: ALICE.sub, port: 43123 })
    const viaMcp = await signedInProvider({ url, upstream }, { user: ALICE.sub, port: 43124 })
    await endUpstreamSession(accessTokenOf(viaRoute))
    await endUpstreamSession(accessTokenOf(viaMcp))
    clock.advance(UPSTREAM_TTL_SECONDS + 1)

    const ended = 'error_description="the identity provider ended this session; sign in again"'
    const refusedRoute = await me(accessTokenOf(viaRoute))
    expect(refusedRoute.status).toBe(401)
    expect(refusedRoute.headers.get('www-authenticate')).toContain(ended)
    const refusedMcp = await mcpRequest(`${url}/mcp`, {
      token: accessTokenOf(viaMcp),
      body: initializeMessage(),
    })
    expect(refusedMcp.status).toBe(401)
    expect(refusedMcp.headers.get('www-authenticate')).toContain(ended)

    const revoked = (clientId: string | undefined) =>
      audit.find((line) => line.event === 'token.revoked' && line.client_id === clientId)
    const expected = {
      event: 'token.revoked',
      kind: 'grant',
      sub: ALICE.sub,
      reason: 'the identity provider answered invalid_grant to a refresh',
      request_id: expect.any(String),
    }
    expect(revoked(viaRoute.information?.client_id)).toMatchObject(expected)
    expect(revoked(viaMcp.information?.client_id)).toMatchObject(expected)
    expect(await metric('mcp_oauth_proxy_security_events_total{', 'event="token.revoked"')).toBe(2)
  })
})

describe('createMcpAuthProxy configuration', () => {
  const env = {
    PUBLIC_URL: 'http://127.0.0.1:9',
    KINDE_ISSUER_URL: 'http://127.0.0.1:9',
    KINDE_CLIENT_ID: 'proxy-client',
    KINDE_CLIENT_SECRET: 'proxy-secret',
    LOG_LEVEL: 'silent',
  }

  it('refuses a tool whose scope SCOPES does not offer, naming both', async () => {
    const error = await createMcpAuthProxy({ config: env, tools: [listReports] }).catch(
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([
      'SCOPES: tool list_reports requires reports:read, which SCOPES does not list',
    ])
  })

  it('refuses the same tool when an app mounts it with createApp directly', async () => {
    const { deps } = await createTestApp()
    let error: unknown
    try {
      createApp(deps, { mcp: { tools: [listReports] } })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([
      'SCOPES: tool list_reports requires reports:read, which SCOPES does not list',
    ])
  })

  it('reports bad configuration records as ConfigError, like the CLI', async () => {
    await expect(createMcpAuthProxy({ config: { ...env, PUBLIC_URL: 'ftp://x' } })).rejects.toThrow(
      ConfigError,
    )
  })

  it('refuses requireAuth for a scope SCOPES does not offer', async () => {
    const proxy = await createMcpAuthProxy({ config: env })
    try {
      expect(() => proxy.requireAuth({ scopes: ['reports:write'] })).toThrow(
        'SCOPES: requireAuth needs reports:write, which SCOPES does not list',
      )
    } finally {
      await proxy.close()
    }
  })
})

import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formPost } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const KINDE_AGENT = {
  client_id: 'agent-acme',
  client_secret: 'agent-acme-secret',
  org_code: 'org_acme',
}
const AUTH0_AGENT = {
  client_id: 'agent-globex',
  client_secret: 'agent-globex-secret',
  org_id: 'org_globex',
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
}

function clientCredentials(
  proxy: ProxyUnderTest,
  params: Record<string, string>,
  authorization?: string,
) {
  return formPost(
    proxy.url,
    { grant_type: 'client_credentials', ...params },
    '/token',
    authorization ? { authorization } : {},
  )
}

async function claims(proxy: ProxyUnderTest, token: string) {
  const jwks = createRemoteJWKSet(new URL(`${proxy.url}/.well-known/jwks.json`))
  const { payload } = await jwtVerify(token, jwks, {
    issuer: proxy.url,
    audience: `${proxy.url}/mcp`,
    typ: 'at+jwt',
  })
  return payload
}

describe('agents through a Kinde-shaped upstream', () => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', upstream: { m2mClients: [KINDE_AGENT] } })
  })
  afterAll(() => proxy.close())

  it('wraps an org-scoped M2M token: sub from azp, org_code kept, actor agent, no refresh token', async () => {
    const res = await clientCredentials(
      proxy,
      {},
      basic(KINDE_AGENT.client_id, KINDE_AGENT.client_secret),
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number) })
    expect(body).not.toHaveProperty('refresh_token')
    expect(await claims(proxy, body.access_token as string)).toMatchObject({
      sub: 'agent-acme',
      client_id: 'agent-acme',
      actor: 'agent',
      org_code: 'org_acme',
    })
  })

  it('lets an agent on the MCP SDK call a tool that sees its organization and actor', async () => {
    const mcpUrl = new URL(`${proxy.url}/mcp`)
    const provider = new ClientCredentialsProvider({
      clientId: KINDE_AGENT.client_id,
      clientSecret: KINDE_AGENT.client_secret,
      expectedIssuer: proxy.url,
    })
    const client = new Client({ name: 'agent-test', version: '1.0.0' })
    await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }))
    try {
      const result = (await client.callTool({ name: 'whoami', arguments: {} })) as {
        content: { type: string; text: string }[]
      }
      expect(JSON.parse(result.content[0]?.text ?? '{}')).toMatchObject({
        sub: 'agent-acme',
        clientId: 'agent-acme',
        actor: 'agent',
        orgCode: 'org_acme',
      })
    } finally {
      await client.close()
    }
  })

  it('accepts the credentials in the body (client_secret_post)', async () => {
    const res = await clientCredentials(proxy, KINDE_AGENT)
    expect(res.status).toBe(200)
  })

  it('answers invalid_client (401) for a wrong secret', async () => {
    const res = await clientCredentials(proxy, {}, basic(KINDE_AGENT.client_id, 'wrong'))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic /)
    expect(await res.json()).toEqual({
      error: 'invalid_client',
      error_description: 'the identity provider rejected the client credentials',
    })
  })

  it('answers invalid_client (401) without credentials', async () => {
    const res = await clientCredentials(proxy, {})
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'invalid_client' })
  })

  it('refuses a token for another resource with invalid_target', async () => {
    const res = await clientCredentials(proxy, {
      ...KINDE_AGENT,
      resource: 'https://other.example/mcp',
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_target' })
  })
})

describe('agents through an Auth0-shaped upstream', () => {
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'auth0', upstream: { m2mClients: [AUTH0_AGENT] } })
  })
  afterAll(() => proxy.close())

  it('keeps the <id>@clients subject and the organization', async () => {
    const res = await clientCredentials(
      proxy,
      {},
      basic(AUTH0_AGENT.client_id, AUTH0_AGENT.client_secret),
    )
    expect(res.status).toBe(200)
    const body = (await res.json()) as { access_token: string }
    expect(await claims(proxy, body.access_token)).toMatchObject({
      sub: 'agent-globex@clients',
      client_id: 'agent-globex',
      actor: 'agent',
      org_id: 'org_globex',
    })
  })
})

describe('agent policy and limits', () => {
  let proxy: ProxyUnderTest
  const other = {
    client_id: 'agent-initech',
    client_secret: 'initech-secret',
    org_code: 'org_initech',
  }
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      env: { ALLOWED_ORG_CODES: 'org_acme', TOKEN_RATE_LIMIT: '3' },
      upstream: { m2mClients: [KINDE_AGENT, other] },
    })
  })
  afterAll(() => proxy.close())

  it('keeps agents of other organizations out (ALLOWED_ORG_CODES)', async () => {
    const res = await clientCredentials(proxy, other)
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'unauthorized_client',
      error_description: 'organization org_initech may not use this server',
    })
  })

  it('rate-limits token requests per client id', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++)
      statuses.push(
        (
          await clientCredentials(
            proxy,
            {},
            basic(KINDE_AGENT.client_id, KINDE_AGENT.client_secret),
          )
        ).status,
      )
    expect(statuses).toEqual([200, 200, 200, 429])
  })
})

describe('agents when the upstream is down', () => {
  it('answers 503 temporarily_unavailable', async () => {
    const proxy = await startProxy({
      flavor: 'kinde',
      env: { UPSTREAM_TIMEOUT_SECONDS: '1' },
      upstream: { m2mClients: [KINDE_AGENT] },
    })
    try {
      await proxy.upstream.close()
      const res = await clientCredentials(proxy, KINDE_AGENT)
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBeTruthy()
      expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
    } finally {
      await proxy.server.close()
    }
  })
})

describe('the M2M allow-list', () => {
  it('refuses agents not on M2M_ALLOWED_CLIENTS before asking the upstream', async () => {
    const proxy = await startProxy({
      flavor: 'kinde',
      env: { M2M_ALLOWED_CLIENTS: 'agent-someone-else' },
      upstream: { m2mClients: [KINDE_AGENT] },
    })
    try {
      const res = await clientCredentials(proxy, KINDE_AGENT)
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({
        error: 'unauthorized_client',
        error_description: 'this client may not use the client_credentials grant here',
      })
    } finally {
      await proxy.close()
    }
  })
})

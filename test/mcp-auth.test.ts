import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { acceptedContent, inputRequired } from '@modelcontextprotocol/server'
import { Hono } from 'hono'
import { decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createApp } from '../src/app.js'
import type { Deps } from '../src/deps.js'
import { StoreUnavailableError } from '../src/errors.js'
import { bearerChallenge, quotedString } from '../src/mcp/challenge.js'
import { createMcpEndpoint } from '../src/mcp/endpoint.js'
import { defineTool, jsonResult } from '../src/mcp/tools.js'
import type { Store } from '../src/store/store.js'
import { type AccessTokenParams, mintAccessToken } from '../src/tokens/access-token.js'
import { registerClient } from './support/flow.js'
import {
  initializeMessage,
  mcpRequest,
  resultJson,
  rpcResponse,
  serveApp,
  toolCallMessage,
} from './support/mcp.js'
import { modernRequest } from './support/mcp-v2.js'
import { type ProxyUnderTest, siblingServices, startProxy } from './support/proxy.js'

const SCOPES = 'openid profile email tools:admin'

let proxy: ProxyUnderTest
let deps: Deps
let mcpUrl: string

beforeAll(async () => {
  proxy = await startProxy({ flavor: 'kinde', env: { SCOPES } })
  deps = proxy.server.deps
  mcpUrl = `${proxy.url}/mcp`
})
afterAll(() => proxy?.close())

/** A proxy access token minted directly, as `/token` would (with the deps' keys and clock). */
async function mint(
  params: Partial<AccessTokenParams> = {},
  mintDeps: Pick<Deps, 'config' | 'keys' | 'clock'> = deps,
): Promise<string> {
  const now = mintDeps.clock.now()
  const { token } = await mintAccessToken(mintDeps, {
    sub: 'user-alice',
    clientId: 'client-alice',
    scopes: ['openid', 'profile', 'email'],
    actor: 'user',
    email: 'alice@acme.test',
    upstream: { at: 'upstream-access-token', exp: now + 3600 },
    upstreamRefreshable: false,
    ...params,
  })
  return token
}

const metadataUrl = () => `${proxy.url}/.well-known/oauth-protected-resource/mcp`

/** The exact challenge for a refused token. */
const invalidToken = (description: string) =>
  `Bearer error="invalid_token", error_description="${description}", resource_metadata="${metadataUrl()}", scope="${SCOPES}"`

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

describe('the bearer gate on /mcp', () => {
  it('answers every method without a token with 401 and a challenge carrying no error code', async () => {
    for (const method of ['GET', 'POST', 'DELETE', 'PUT']) {
      const response = await fetch(mcpUrl, {
        method,
        headers: { origin: 'http://localhost:6274', 'content-type': 'application/json' },
        body:
          method === 'POST' || method === 'PUT' ? JSON.stringify(initializeMessage()) : undefined,
      })
      expect(response.status, method).toBe(401)
      expect(response.headers.get('www-authenticate')).toBe(
        `Bearer resource_metadata="${metadataUrl()}", scope="${SCOPES}"`,
      )
      expect(response.headers.get('access-control-allow-origin')).toBe('*')
      expect(response.headers.get('access-control-allow-credentials')).toBeNull()
      const exposed = response.headers.get('access-control-expose-headers')?.toLowerCase()
      expect(exposed?.split(/,\s*/)).toEqual(
        expect.arrayContaining(['www-authenticate', 'mcp-session-id']),
      )
      expect(response.headers.get('cache-control')).toBe('no-store')
      expect(await response.json()).toEqual({
        error: 'invalid_token',
        error_description: 'an access token is required',
      })
    }
  })

  it('answers a CORS preflight with 204 and no token', async () => {
    const response = await fetch(mcpUrl, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:6274',
        'access-control-request-method': 'POST',
        'access-control-request-headers':
          'authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id',
      },
    })
    expect(response.status).toBe(204)
    expect(response.headers.get('access-control-allow-origin')).toBe('*')
    expect(response.headers.get('access-control-allow-methods')).toBe('GET,POST,DELETE,OPTIONS')
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase().split(',')).toEqual([
      'authorization',
      'content-type',
      'mcp-protocol-version',
      'mcp-session-id',
      'last-event-id',
      'mcp-method',
      'mcp-name',
      'dpop',
    ])
  })

  it('allows the 2026-07-28 headers in a preflight, a tool’s Mcp-Param-* included', async () => {
    const response = await fetch(mcpUrl, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:6274',
        'access-control-request-method': 'POST',
        'access-control-request-headers':
          'authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, mcp-param-region, x-evil',
      },
    })
    expect(response.status).toBe(204)
    const allowed = response.headers.get('access-control-allow-headers')?.toLowerCase().split(',')
    expect(allowed).toEqual(
      expect.arrayContaining(['mcp-method', 'mcp-name', 'mcp-param-region', 'authorization']),
    )
    expect(allowed).not.toContain('x-evil')
  })

  it('ignores a token in the query string (header only, RFC 6750 §2)', async () => {
    const token = await mint()
    const response = await mcpRequest(`${mcpUrl}?access_token=${token}`, {
      body: initializeMessage(),
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${metadataUrl()}", scope="${SCOPES}"`,
    )
  })

  it('treats another authentication scheme as no token', async () => {
    const response = await mcpRequest(mcpUrl, {
      body: initializeMessage(),
      headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' },
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).not.toContain('error=')
  })

  it('lets a valid token through to the MCP server', async () => {
    const response = await mcpRequest(mcpUrl, { token: await mint(), body: initializeMessage() })
    expect(response.status).toBe(200)
    expect(response.headers.get('mcp-session-id')).toBeTruthy()
    expect(await response.text()).toContain('"protocolVersion"')
  })

  describe('refuses tokens it must not accept, saying why', () => {
    const cases: [string, () => Promise<string>, string][] = [
      [
        'a token signed by another ES256 key under our kid',
        async () => {
          const valid = await mint()
          const { kid } = decodeProtectedHeader(valid)
          const { privateKey } = await generateKeyPair('ES256')
          return new SignJWT({ client_id: 'client-alice', scope: 'openid' })
            .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
            .setIssuer(proxy.url)
            .setAudience(mcpUrl)
            .setSubject('user-alice')
            .setIssuedAt()
            .setExpirationTime('1h')
            .setJti('forged')
            .sign(privateKey)
        },
        'the access token signature or format is invalid',
      ],
      [
        'a token naming a key we do not have',
        async () => {
          const { privateKey } = await generateKeyPair('ES256')
          return new SignJWT({ client_id: 'client-alice' })
            .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'not-our-key' })
            .setIssuer(proxy.url)
            .setAudience(mcpUrl)
            .setSubject('user-alice')
            .setIssuedAt()
            .setExpirationTime('1h')
            .sign(privateKey)
        },
        'the access token is signed by an unknown key',
      ],
      [
        'an expired token',
        () => mint({}, { ...deps, clock: { now: () => Date.now() / 1000 - 7200 } }),
        'the access token has expired',
      ],
      [
        'a token for another audience',
        () => mint({}, { ...deps, config: { ...deps.config, resource: 'https://other.test/mcp' } }),
        "the access token's aud claim is not valid here",
      ],
      [
        'a token from another issuer',
        () => mint({}, { ...deps, config: { ...deps.config, issuer: 'https://other.test' } }),
        "the access token's iss claim is not valid here",
      ],
      [
        'an unsigned token (alg none)',
        async () => {
          const [, payload] = (await mint()).split('.')
          return `${b64({ alg: 'none', typ: 'at+jwt' })}.${payload}.`
        },
        'the access token is not signed with ES256',
      ],
      [
        'an HS256 token keyed with our public JWK',
        async () => {
          const { signing } = await deps.keys.current()
          const secret = new TextEncoder().encode(JSON.stringify(signing.publicJwk))
          return new SignJWT({ client_id: 'client-alice' })
            .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: signing.kid })
            .setIssuer(proxy.url)
            .setAudience(mcpUrl)
            .setSubject('user-alice')
            .setIssuedAt()
            .setExpirationTime('1h')
            .sign(secret)
        },
        'the access token is not signed with ES256',
      ],
      [
        'a plain JWT (typ JWT, not at+jwt)',
        async () => {
          const { signing } = await deps.keys.current()
          return new SignJWT({ client_id: 'client-alice' })
            .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: signing.kid })
            .setIssuer(proxy.url)
            .setAudience(mcpUrl)
            .setSubject('user-alice')
            .setIssuedAt()
            .setExpirationTime('1h')
            .setJti('plain')
            .sign(signing.privateKey)
        },
        "the access token's typ claim is not valid here",
      ],
      [
        'a token whose payload was altered',
        async () => {
          const [header, payload, signature] = (await mint()).split('.')
          const claims = JSON.parse(Buffer.from(payload as string, 'base64url').toString())
          return `${header}.${b64({ ...claims, sub: 'user-mallory' })}.${signature}`
        },
        'the access token signature or format is invalid',
      ],
      ['garbage', async () => 'not-a-jwt', 'the access token is malformed'],
    ]

    it.each(cases)('%s', async (_name, token, description) => {
      const response = await mcpRequest(mcpUrl, { token: await token(), body: initializeMessage() })
      expect(response.status).toBe(401)
      expect(response.headers.get('www-authenticate')).toBe(invalidToken(description))
      expect(await response.json()).toEqual({
        error: 'invalid_token',
        error_description: description,
      })
    })

    it('refuses them on GET and DELETE as well', async () => {
      const token = await mint({}, { ...deps, clock: { now: () => Date.now() / 1000 - 7200 } })
      for (const method of ['GET', 'DELETE']) {
        const response = await mcpRequest(mcpUrl, { token, method })
        expect(response.status).toBe(401)
        expect(response.headers.get('www-authenticate')).toBe(
          invalidToken('the access token has expired'),
        )
      }
    })
  })

  it('refuses a token revoked at /revoke on the very next request, though it was cached', async () => {
    const client = await registerClient(proxy.url, {
      client_name: 'revoker',
      redirect_uris: ['http://127.0.0.1:43120/callback'],
      token_endpoint_auth_method: 'none',
    })
    const token = await mint({ clientId: client.client_id })
    const first = await mcpRequest(mcpUrl, { token, body: initializeMessage() })
    expect(first.status).toBe(200)
    await first.body?.cancel()

    const revoked = await fetch(`${proxy.url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: client.client_id }),
    })
    expect(revoked.status).toBe(200)

    const after = await mcpRequest(mcpUrl, { token, body: initializeMessage() })
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toBe(
      invalidToken('the access token has been revoked'),
    )
  })

  it('answers 503 when the store cannot say whether a token is revoked, unless it is cached', async () => {
    let down = false
    const flaky: Store = {
      ...deps.store,
      get: (key) =>
        down ? Promise.reject(new StoreUnavailableError(new Error('down'))) : deps.store.get(key),
    }
    const app = await serveApp(
      createApp(await siblingServices(proxy, { overrides: { store: flaky } })),
    )
    try {
      const cached = await mint()
      const warm = await mcpRequest(`${app.url}/mcp`, { token: cached, body: initializeMessage() })
      expect(warm.status).toBe(200)
      await warm.body?.cancel()
      down = true

      const unknown = await mcpRequest(`${app.url}/mcp`, {
        token: await mint(),
        body: initializeMessage(),
      })
      expect(unknown.status).toBe(503)
      expect(unknown.headers.get('retry-after')).toBe('1')
      expect(await unknown.json()).toEqual({
        error: 'temporarily_unavailable',
        error_description: 'the service is temporarily unavailable',
      })

      const known = await mcpRequest(`${app.url}/mcp`, { token: cached, body: initializeMessage() })
      expect(known.status).toBe(200)
      await known.body?.cancel()
    } finally {
      await app.close()
    }
  })
})

describe('per-tool scopes (step-up, 403 insufficient_scope)', () => {
  let app: { url: string; close(): Promise<void> }

  beforeAll(async () => {
    const adminReport = defineTool({
      name: 'admin_report',
      description: 'An administrators-only report.',
      inputSchema: { period: z.enum(['day', 'week']) },
      requiredScopes: ['tools:admin'],
      handler: ({ period }, { caller }) => jsonResult({ period, sub: caller.sub }),
    })
    // Stateless, so every call is one request; the gate is the same in both modes.
    const endpointDeps = await siblingServices(proxy, { config: { mcpSessions: 'stateless' } })
    app = await serveApp(
      new Hono().route('/', createMcpEndpoint(endpointDeps, { tools: [adminReport] })),
    )
  })
  afterAll(() => app?.close())

  it('refuses a call to a tool needing a scope the token lacks, naming the scope', async () => {
    const token = await mint({ scopes: ['openid', 'profile'] })
    const response = await mcpRequest(`${app.url}/mcp`, {
      token,
      body: toolCallMessage('admin_report', 1, { period: 'day' }),
    })
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="this request needs the scope tools:admin (upstream permission tools:admin)", resource_metadata="${metadataUrl()}", scope="tools:admin"`,
    )
    expect(response.headers.get('access-control-expose-headers')).toContain('WWW-Authenticate')
    expect(await response.json()).toEqual({
      error: 'insufficient_scope',
      error_description:
        'this request needs the scope tools:admin (upstream permission tools:admin)',
    })
  })

  it('checks every call of a batch', async () => {
    const token = await mint({ scopes: ['openid'] })
    const response = await mcpRequest(`${app.url}/mcp`, {
      token,
      body: [toolCallMessage('whoami', 1), toolCallMessage('admin_report', 2, { period: 'day' })],
    })
    expect(response.status).toBe(403)
  })

  it('lets other tools and other methods through for the same token', async () => {
    const token = await mint({ scopes: ['openid'] })
    const whoami = await mcpRequest(`${app.url}/mcp`, { token, body: toolCallMessage('whoami') })
    expect(whoami.status).toBe(200)
    const list = await mcpRequest(`${app.url}/mcp`, {
      token,
      body: { jsonrpc: '2.0', id: 3, method: 'tools/list' },
    })
    const { result } = (await list.json()) as { result: { tools: { name: string }[] } }
    expect(result.tools.map((tool) => tool.name)).toContain('admin_report')
  })

  it('runs the tool for a token with the scope, validating its arguments', async () => {
    const token = await mint({ scopes: ['openid', 'tools:admin'] })
    const ok = await mcpRequest(`${app.url}/mcp`, {
      token,
      body: toolCallMessage('admin_report', 1, { period: 'week' }),
    })
    const { result } = (await rpcResponse(ok)) as { result: unknown }
    expect(resultJson(result)).toEqual({ period: 'week', sub: 'user-alice' })

    const bad = await mcpRequest(`${app.url}/mcp`, {
      token,
      body: toolCallMessage('admin_report', 2, { period: 'year' }),
    })
    const { result: refused } = (await rpcResponse(bad)) as {
      result: { isError: boolean; content: { text: string }[] }
    }
    expect(refused.isError).toBe(true)
    expect(refused.content[0]?.text).toMatch(/^Invalid arguments for tool admin_report/)
  })
})

describe('per-tool scopes on the 2026-07-28 era', () => {
  let app: { url: string; close(): Promise<void> }

  beforeAll(async () => {
    const adminReport = defineTool({
      name: 'admin_report',
      description: 'An administrators-only report.',
      inputSchema: { period: z.enum(['day', 'week']) },
      requiredScopes: ['tools:admin'],
      handler: ({ period }, { caller, era }) => jsonResult({ period, sub: caller.sub, era }),
    })
    // Asks the user before acting: input_required on the modern era.
    const purge = defineTool({
      name: 'purge',
      description: 'Deletes everything, once the user confirms.',
      handler(_args, { inputResponses, caller }) {
        const answer = acceptedContent(inputResponses, 'confirm')
        if (answer?.confirm !== true) {
          return inputRequired({
            inputRequests: {
              confirm: inputRequired.elicit({
                message: 'Delete everything?',
                requestedSchema: {
                  type: 'object',
                  properties: { confirm: { type: 'boolean' } },
                  required: ['confirm'],
                },
              }),
            },
          })
        }
        return jsonResult({ purgedFor: caller.sub })
      },
    })
    // Session mode: modern requests need no session all the same.
    const endpointDeps = await siblingServices(proxy)
    app = await serveApp(
      new Hono().route('/', createMcpEndpoint(endpointDeps, { tools: [adminReport, purge] })),
    )
  })
  afterAll(() => app?.close())

  it('refuses a modern tools/call lacking the scope with the same 403 as the legacy era', async () => {
    const token = await mint({ scopes: ['openid', 'profile'] })
    const { body, headers } = modernRequest('tools/call', {
      name: 'admin_report',
      arguments: { period: 'day' },
    })
    const response = await mcpRequest(`${app.url}/mcp`, { token, body, headers })
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="this request needs the scope tools:admin (upstream permission tools:admin)", resource_metadata="${metadataUrl()}", scope="tools:admin"`,
    )
  })

  it('runs the tool for a token with the scope, telling it the era', async () => {
    const token = await mint({ scopes: ['openid', 'tools:admin'] })
    const { body, headers } = modernRequest('tools/call', {
      name: 'admin_report',
      arguments: { period: 'week' },
    })
    const response = await mcpRequest(`${app.url}/mcp`, { token, body, headers })
    expect(response.status).toBe(200)
    const { result } = (await rpcResponse(response)) as { result: unknown }
    expect(resultJson(result)).toEqual({ period: 'week', sub: 'user-alice', era: 'modern' })
  })

  it('lets a tool ask the user through input_required, and the v2 client answer', async () => {
    const token = await mint()
    const asked: string[] = []
    const client = new Client(
      { name: 'mrtr-e2e', version: '1.0.0' },
      { capabilities: { elicitation: {} }, versionNegotiation: { mode: { pin: '2026-07-28' } } },
    )
    client.setRequestHandler('elicitation/create', async (request) => {
      asked.push(request.params.message)
      return { action: 'accept', content: { confirm: true } }
    })
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), {
        authProvider: { token: async () => token },
      }),
    )
    try {
      const result = await client.callTool({ name: 'purge', arguments: {} })
      expect(asked).toEqual(['Delete everything?'])
      expect(resultJson(result)).toEqual({ purgedFor: 'user-alice' })
    } finally {
      await client.close()
    }
  })

  it('answers a legacy call of a tool that asks through input_required with a tool error', async () => {
    const token = await mint()
    const session = await mcpRequest(`${app.url}/mcp`, { token, body: initializeMessage() })
    const sessionId = session.headers.get('mcp-session-id') ?? undefined
    await session.body?.cancel()
    const response = await mcpRequest(`${app.url}/mcp`, {
      token,
      sessionId,
      body: toolCallMessage('purge'),
    })
    const { result } = (await rpcResponse(response)) as {
      result: { isError: boolean; content: { text: string }[] }
    }
    expect(result.isError).toBe(true)
    expect(result.content[0]?.text).toMatch(/2026-07-28/)
  })
})

describe('challenge quoting', () => {
  it('escapes quotes and backslashes and drops control characters', () => {
    expect(quotedString('plain')).toBe('"plain"')
    expect(quotedString('say "hi" \\ bye')).toBe('"say \\"hi\\" \\\\ bye"')
    expect(quotedString('a\r\nWWW-Authenticate: Basic\u0000\u007f')).toBe(
      '"aWWW-Authenticate: Basic"',
    )
    expect(quotedString('café €')).toBe('"caf? ?"')
  })

  it('keeps a hostile description inside its quoted-string', () => {
    const header = bearerChallenge({
      error: 'invalid_token',
      description: 'x", scope="admin\r\nSet-Cookie: a=b',
      resourceMetadata: 'https://mcp.example.test/.well-known/oauth-protected-resource/mcp',
      scopes: ['openid'],
    })
    expect(header).toBe(
      'Bearer error="invalid_token", error_description="x\\", scope=\\"adminSet-Cookie: a=b", resource_metadata="https://mcp.example.test/.well-known/oauth-protected-resource/mcp", scope="openid"',
    )
    // A real Headers object accepts it: nothing in it can end or split the header.
    expect(new Headers({ 'www-authenticate': header }).get('www-authenticate')).toBe(header)
  })

  it('omits error attributes without an error, and scope when there are none', () => {
    expect(bearerChallenge({ resourceMetadata: 'https://r', description: 'ignored' })).toBe(
      'Bearer resource_metadata="https://r"',
    )
  })
})

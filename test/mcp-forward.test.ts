import { randomUUID } from 'node:crypto'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'
import { Hono } from 'hono'
import { createRemoteJWKSet, decodeJwt, type JWTPayload, jwtVerify, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../src/config.js'
import type { GatedRequest } from '../src/mcp/endpoint.js'
import { createDownstreamTokens, createSessionBinder } from '../src/mcp/forward.js'
import { createMemoryStore } from '../src/store/memory.js'
import { createKeys } from '../src/tokens/keys.js'
import { createTestClock } from './support/clock.js'
import { problemsOf } from './support/config.js'
import type { TestOAuthProvider } from './support/flow.js'
import { noHang } from './support/hang.js'
import {
  accessTokenOf,
  connectClient,
  expectSessionNotFound,
  initializeMessage,
  mcpRequest,
  openSession,
  resultJson,
  serveApp,
  signedInProvider,
  toolCallMessage,
} from './support/mcp.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { Upstream } from './support/upstream.js'

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  name: 'Alice',
  org_code: 'org_acme',
  permissions: ['read:reports'],
}
const BOB = { sub: 'user-bob', email: 'bob@acme.test', name: 'Bob', org_code: 'org_globex' }
const SECRET = 'a-backend-jwt-secret-of-at-least-32-bytes!'

// ---------------------------------------------------------------------------------------
// A real Streamable HTTP MCP server (the SDK's McpServer and transport) that checks its own
// Bearer tokens, as an existing backend behind the proxy does.

interface SeenRequest {
  method: string
  headers: Record<string, string>
  identity?: JWTPayload
}

interface Backend {
  readonly url: string
  readonly mcpUrl: string
  /** Every request that reached the backend, in order. */
  readonly requests: SeenRequest[]
  /** How the backend validates a Bearer; throws to refuse it with 401. */
  authenticate: (token: string) => Promise<JWTPayload>
  /**
   * Answers a request before anything else when it returns a response (fault injection);
   * `cut` drops the connection.
   */
  fault:
    | ((request: Request, cut: () => void) => Response | Promise<Response> | undefined)
    | undefined
  /** Upstream token ids the backend no longer accepts (revoked, rotated). */
  readonly refusedJtis: Set<string>
  sessionIds(): string[]
  /** GET event streams whose client is still connected. */
  readonly openStreams: number
  /** Lets a running `slow_count` go on past its first event. */
  releaseSlowCount(): void
  readonly slowCountFinished: boolean
  close(): Promise<void>
}

async function startBackend(): Promise<Backend> {
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>()
  let openStreams = 0
  let release = () => {}
  let slowCountFinished = false

  const newServer = () => {
    const server = new McpServer({ name: 'forward-backend', version: '1.0.0' })
    server.registerTool(
      'echo_identity',
      { description: 'The identity the backend read from the token it validated.' },
      (extra) => ({
        content: [{ type: 'text', text: JSON.stringify(extra.authInfo?.extra ?? null) }],
      }),
    )
    server.registerTool(
      'slow_count',
      { description: 'Counts to three, reporting each step as progress.' },
      async (extra) => {
        const progressToken = extra._meta?.progressToken
        const progress = async (n: number) => {
          if (progressToken === undefined) return
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: n, total: 3 },
          })
        }
        slowCountFinished = false
        const released = new Promise<void>((resolve) => {
          release = resolve
          // A buffering proxy would never let the test release it: end rather than hang.
          setTimeout(resolve, 5000).unref()
        })
        await progress(1)
        await released
        await progress(2)
        await progress(3)
        slowCountFinished = true
        return { content: [{ type: 'text', text: 'counted to 3' }] }
      },
    )
    return server
  }

  const backend = {
    requests: [] as SeenRequest[],
    refusedJtis: new Set<string>(),
    fault: undefined as Backend['fault'],
    authenticate: async (_token: string): Promise<JWTPayload> => {
      throw new Error('no verifier configured')
    },
  }

  const app = new Hono()
  app.all('/mcp', async (c) => {
    const request = c.req.raw
    const seen: SeenRequest = {
      method: request.method,
      headers: Object.fromEntries(request.headers),
    }
    backend.requests.push(seen)
    const cut = () =>
      (c.env as { incoming: { socket: { destroy(): void } } }).incoming.socket.destroy()
    const fault = await backend.fault?.(request, cut)
    if (fault) return fault

    const token = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')?.[1]
    try {
      if (!token) throw new Error('no token')
      seen.identity = await backend.authenticate(token)
      if (backend.refusedJtis.has(String(seen.identity.jti))) throw new Error('revoked')
    } catch {
      return c.json({ error: 'invalid_token', trace: 'backend-secret-detail' }, 401, {
        'www-authenticate': `Bearer error="invalid_token", resource_metadata="${c.req.url}/../.well-known/oauth-protected-resource"`,
      })
    }
    const authInfo: AuthInfo = {
      token,
      clientId: 'backend',
      scopes: [],
      extra: { ...seen.identity },
    }

    const sessionId = request.headers.get('mcp-session-id')
    let transport: WebStandardStreamableHTTPServerTransport | undefined
    if (sessionId) {
      transport = transports.get(sessionId)
      if (!transport) {
        return c.json(
          { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' } },
          404,
        )
      }
    } else {
      const created: WebStandardStreamableHTTPServerTransport =
        new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: randomUUID,
          onsessioninitialized: (id) => {
            transports.set(id, created)
          },
          onsessionclosed: (id) => {
            transports.delete(id)
          },
        })
      await newServer().connect(created)
      transport = created
    }
    if (request.method === 'GET') {
      openStreams++
      request.signal.addEventListener('abort', () => openStreams--, { once: true })
    }
    return transport.handleRequest(request, { authInfo })
  })

  const served = await serveApp(app)
  let closed: Promise<void> | undefined
  // Accessors, not Object.assign (which would copy the getters' values once).
  return Object.defineProperties(backend, {
    url: { value: served.url },
    mcpUrl: { value: `${served.url}/mcp` },
    sessionIds: { value: () => [...transports.keys()] },
    openStreams: { get: () => openStreams },
    releaseSlowCount: { value: () => release() },
    slowCountFinished: { get: () => slowCountFinished },
    close: {
      value: () => {
        closed ??= served.close()
        return closed
      },
    },
  }) as Backend
}

/** Validates the upstream's JWT access tokens as a Kinde-protected backend does. */
async function upstreamJwtVerifier(upstream: Upstream) {
  const discovery = (await (
    await fetch(`${upstream.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
  ).json()) as { jwks_uri: string }
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri))
  return async (token: string) =>
    (
      await jwtVerify(token, jwks, {
        issuer: upstream.issuer,
        audience: upstream.audience,
        algorithms: ['RS256'],
      })
    ).payload
}

/** Validates HS256 tokens signed with the backend's own secret (Supabase-style). */
function sharedSecretVerifier(secret: string, issuer: string, audience: string) {
  const key = new TextEncoder().encode(secret)
  return async (token: string) =>
    (await jwtVerify(token, key, { issuer, audience, algorithms: ['HS256'] })).payload
}

function lastRequest(backend: Backend): SeenRequest {
  const last = backend.requests.at(-1)
  if (!last) throw new Error('the backend saw no request')
  return last
}

// ---------------------------------------------------------------------------------------

describe('forward mode: /mcp in front of an MCP backend that validates upstream tokens', () => {
  let backend: Backend
  let proxy: ProxyUnderTest
  let mcpUrl: string
  let alice: TestOAuthProvider
  let client: Client
  let transport: StreamableHTTPClientTransport

  beforeAll(async () => {
    backend = await startBackend()
    proxy = await startProxy({
      flavor: 'kinde',
      env: { MCP_UPSTREAM_URL: backend.mcpUrl },
      upstream: { users: [ALICE, BOB] },
    })
    backend.authenticate = await upstreamJwtVerifier(proxy.upstream)
    mcpUrl = `${proxy.url}/mcp`
    alice = await signedInProvider(proxy, { user: ALICE.sub })
    ;({ client, transport } = await connectClient(mcpUrl, alice))
  })
  afterAll(async () => {
    await client?.close()
    await proxy?.close()
    await backend?.close()
  })

  it('initializes at the backend and hands back its session id, bound to the caller', async () => {
    expect(client.getServerVersion()).toMatchObject({ name: 'forward-backend' })
    const [backendId] = backend.sessionIds()
    expect(backendId).toBeDefined()
    expect(transport.sessionId).toMatch(new RegExp(`^${backendId}\\.[\\w-]{22}$`))
  })

  it('lists the backend’s tools, not the built-in ones', async () => {
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name).sort()).toEqual(['echo_identity', 'slow_count'])
  })

  it('forwards the caller’s upstream token, never the proxy token or cookies', async () => {
    const result = await client.callTool({ name: 'echo_identity', arguments: {} })
    expect(result.isError).toBeFalsy()
    expect(resultJson(result)).toMatchObject({
      sub: ALICE.sub,
      org_code: ALICE.org_code,
      permissions: ALICE.permissions,
      iss: proxy.upstream.issuer,
    })

    const token = accessTokenOf(alice)
    const sessionId = transport.sessionId as string
    const list = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: { jsonrpc: '2.0', id: 40, method: 'tools/list' },
      headers: { cookie: 'session=secret', 'last-event-id': 'evt-1' },
    })
    expect(list.status).toBe(200)
    await list.body?.cancel()
    const { headers } = lastRequest(backend)
    expect(headers.authorization).toMatch(/^Bearer ey/)
    expect(headers.authorization).not.toContain(token)
    expect(headers.cookie).toBeUndefined()
    expect(headers['mcp-session-id']).toBe(sessionId.slice(0, sessionId.lastIndexOf('.')))
    expect(headers['mcp-protocol-version']).toBe('2025-11-25')
    expect(headers['last-event-id']).toBe('evt-1')
    expect(headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(headers['x-forwarded-proto']).toBe('http')
  })

  it('streams the backend’s events as they are written, not when the call ends', async () => {
    let finishedAtFirstEvent: boolean | undefined
    const progress: number[] = []
    const result = await client.callTool({ name: 'slow_count', arguments: {} }, undefined, {
      onprogress: ({ progress: step }) => {
        progress.push(step)
        if (step === 1) {
          finishedAtFirstEvent = backend.slowCountFinished
          backend.releaseSlowCount()
        }
      },
    })
    expect(finishedAtFirstEvent).toBe(false)
    expect(progress).toEqual([1, 2, 3])
    expect(result.content).toEqual([{ type: 'text', text: 'counted to 3' }])
  })

  it('refuses another user’s token on a session (404) without asking the backend', async () => {
    const bob = await signedInProvider(proxy, { user: BOB.sub, port: 43113 })
    const bobToken = accessTokenOf(bob)
    const sessionId = transport.sessionId as string
    const before = backend.requests.length

    await expectSessionNotFound(mcpUrl, bobToken, sessionId)
    // The backend's own id, without the binding, is no way in either.
    const bare = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      sessionId: sessionId.slice(0, sessionId.lastIndexOf('.')),
      body: { jsonrpc: '2.0', id: 6, method: 'tools/list' },
    })
    expect(bare.status).toBe(404)
    await bare.body?.cancel()
    expect(backend.requests.length).toBe(before)
    expect(backend.sessionIds()).toContain(sessionId.slice(0, sessionId.lastIndexOf('.')))
  })

  it('answers a request without a token with the proxy’s challenge, never reaching the backend', async () => {
    const before = backend.requests.length
    const response = await mcpRequest(mcpUrl, { body: initializeMessage() })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${proxy.url}/.well-known/oauth-protected-resource/mcp", scope="openid profile email"`,
    )
    await response.body?.cancel()
    expect(backend.requests.length).toBe(before)
  })

  it('refuses a POST that is not JSON with 415, never reaching the backend', async () => {
    const before = backend.requests.length
    const response = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
    })
    expect(response.status).toBe(415)
    await response.body?.cancel()
    expect(backend.requests.length).toBe(before)
  })

  it('forwards the GET event stream, and DELETE ends the backend session', async () => {
    const token = accessTokenOf(alice)
    const sessionId = await openSession(mcpUrl, token)
    const backendId = sessionId.slice(0, sessionId.lastIndexOf('.'))
    expect(backend.sessionIds()).toContain(backendId)

    const stream = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { accept: 'text/event-stream' },
    })
    expect(stream.status).toBe(200)
    expect(stream.headers.get('content-type')).toBe('text/event-stream')
    expect(stream.headers.get('mcp-session-id')).toBe(sessionId)
    expect(stream.headers.get('x-accel-buffering')).toBe('no')

    const ended = await mcpRequest(mcpUrl, { token, sessionId, method: 'DELETE' })
    expect(ended.status).toBe(200)
    await ended.body?.cancel()
    expect(lastRequest(backend).method).toBe('DELETE')
    expect(backend.sessionIds()).not.toContain(backendId)
    // Ending the session at the backend ends its event stream through the proxy too.
    expect(await stream.text()).toBe('')

    // The backend's own answer for a session it no longer has comes through.
    const after = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: { jsonrpc: '2.0', id: 7, method: 'tools/list' },
    })
    expect(after.status).toBe(404)
    await after.body?.cancel()
  })

  it('closes the backend’s event stream when the client goes away', async () => {
    const token = accessTokenOf(alice)
    const sessionId = await openSession(mcpUrl, token)
    const before = backend.openStreams
    const controller = new AbortController()
    const stream = await fetch(mcpUrl, {
      headers: {
        accept: 'text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-11-25',
      },
      signal: controller.signal,
    })
    expect(stream.status).toBe(200)
    await vi.waitFor(() => expect(backend.openStreams).toBe(before + 1))
    controller.abort()
    await vi.waitFor(() => expect(backend.openStreams).toBe(before))
  })

  it('maps the backend refusing the upstream token to the proxy’s invalid_token challenge, which a refresh cures', async () => {
    const token = accessTokenOf(alice)
    const sessionId = transport.sessionId as string
    // The backend learns that Alice's current upstream token was revoked (e.g. rotated keys).
    const probe = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: toolCallMessage('echo_identity', 41),
    })
    await probe.body?.cancel()
    const revokedJti = String(lastRequest(backend).identity?.jti)
    backend.refusedJtis.add(revokedJti)

    const refused = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: toolCallMessage('echo_identity', 42),
    })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", error_description="the MCP backend refused the upstream token; refresh the token or sign in again", resource_metadata="${proxy.url}/.well-known/oauth-protected-resource/mcp", scope="openid profile email"`,
    )
    const body = await refused.text()
    expect(JSON.parse(body)).toEqual({
      error: 'invalid_token',
      error_description:
        'the MCP backend refused the upstream token; refresh the token or sign in again',
    })
    expect(body).not.toContain('backend-secret-detail')

    // The SDK client answers the challenge by refreshing, which renews the upstream token.
    const result = await client.callTool({ name: 'echo_identity', arguments: {} })
    expect(result.isError).toBeFalsy()
    const identity = resultJson(result)
    expect(identity).toMatchObject({ sub: ALICE.sub })
    expect(identity.jti).not.toBe(revokedJti)
    expect(accessTokenOf(alice)).not.toBe(token)
  })
})

describe('forward mode: backend failures', () => {
  let backend: Backend
  let proxy: ProxyUnderTest
  let mcpUrl: string
  let alice: TestOAuthProvider
  let token: string
  const hanging: (() => void)[] = []

  beforeAll(async () => {
    backend = await startBackend()
    proxy = await startProxy({
      flavor: 'kinde',
      env: { MCP_UPSTREAM_URL: backend.mcpUrl, UPSTREAM_TIMEOUT_SECONDS: '1' },
      upstream: { users: [ALICE] },
    })
    backend.authenticate = await upstreamJwtVerifier(proxy.upstream)
    mcpUrl = `${proxy.url}/mcp`
    alice = await signedInProvider(proxy, { user: ALICE.sub })
    token = accessTokenOf(alice)
  })
  afterAll(async () => {
    for (const end of hanging) end()
    await proxy?.close()
    await backend?.close()
  })

  const initialize = () => mcpRequest(mcpUrl, { token, body: initializeMessage() })

  it('answers a backend 500 with 502 and none of the backend’s body', async () => {
    backend.fault = () => new Response('Error: boom\n    at secret.js:42', { status: 500 })
    const response = await initialize()
    backend.fault = undefined
    expect(response.status).toBe(502)
    const body = await response.text()
    expect(JSON.parse(body)).toEqual({
      error: 'server_error',
      error_description: 'the MCP backend failed (HTTP 500)',
    })
    expect(body).not.toContain('boom')
  })

  it('answers a backend 403 with the proxy’s insufficient_scope challenge', async () => {
    backend.fault = () =>
      new Response('{"error":"forbidden"}', {
        status: 403,
        headers: { 'www-authenticate': 'Bearer error="insufficient_scope", scope="admin"' },
      })
    const response = await initialize()
    backend.fault = undefined
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="the MCP backend refused this request: the signed-in account lacks a permission it needs", resource_metadata="${proxy.url}/.well-known/oauth-protected-resource/mcp", scope="openid profile email"`,
    )
    expect(await response.json()).toMatchObject({ error: 'insufficient_scope' })
  })

  it('does not follow a backend redirect with the Bearer', async () => {
    const before = backend.requests.length
    backend.fault = () =>
      new Response(null, { status: 307, headers: { location: `${backend.url}/elsewhere` } })
    const response = await initialize()
    backend.fault = undefined
    expect(response.status).toBe(502)
    expect(await response.json()).toMatchObject({ error: 'server_error' })
    expect(backend.requests.length).toBe(before + 1)
  })

  it('cuts the client’s response when the backend’s stream breaks midway', async () => {
    backend.fault = (_request, cut) => {
      const events = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('event: message\ndata: {"first":1}\n\n'))
          setTimeout(cut, 100)
        },
      })
      return new Response(events, { headers: { 'content-type': 'text/event-stream' } })
    }
    const response = await initialize()
    backend.fault = undefined
    expect(response.status).toBe(200)
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    let received = ''
    const readAll = async () => {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        received += new TextDecoder().decode(value)
      }
    }
    // A truncated response, not one that looks complete.
    await expect(readAll()).rejects.toThrow()
    expect(received).toBe('event: message\ndata: {"first":1}\n\n')
  })

  it('answers 504 when the backend sends no headers in time', async () => {
    backend.fault = () =>
      new Promise<Response>((resolve) => hanging.push(() => resolve(new Response(null))))
    const response = await noHang(initialize(), 'the proxy')
    backend.fault = undefined
    expect(response.status).toBe(504)
    // The header timeout (1 s here) ended the wait, and says so.
    expect(await response.json()).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'the MCP backend did not answer within 1 s',
    })
  })

  it('lets a streamed answer run past the header timeout', async () => {
    const { client } = await connectClient(mcpUrl, alice)
    try {
      const result = await client.callTool({ name: 'slow_count', arguments: {} }, undefined, {
        onprogress: ({ progress }) => {
          if (progress === 1) setTimeout(() => backend.releaseSlowCount(), 1500)
        },
      })
      expect(result.content).toEqual([{ type: 'text', text: 'counted to 3' }])
    } finally {
      await client.close()
    }
  })

  it('answers 502 when the backend is down', async () => {
    await backend.close()
    const response = await initialize()
    expect(response.status).toBe(502)
    expect(await response.json()).toEqual({
      error: 'server_error',
      error_description: 'the MCP backend is unreachable',
    })
  })
})

describe('forward mode with MCP_UPSTREAM_TOKEN=downstream-jwt', () => {
  let backend: Backend
  let proxy: ProxyUnderTest
  let mcpUrl: string
  let alice: TestOAuthProvider
  let client: Client

  beforeAll(async () => {
    backend = await startBackend()
    proxy = await startProxy({
      flavor: 'kinde',
      env: {
        MCP_UPSTREAM_URL: backend.mcpUrl,
        MCP_UPSTREAM_TOKEN: 'downstream-jwt',
        DOWNSTREAM_JWT_SECRET: SECRET,
      },
      upstream: { users: [ALICE] },
    })
    backend.authenticate = sharedSecretVerifier(SECRET, proxy.url, new URL(backend.url).origin)
    mcpUrl = `${proxy.url}/mcp`
    alice = await signedInProvider(proxy, { user: ALICE.sub })
    ;({ client } = await connectClient(mcpUrl, alice))
  })
  afterAll(async () => {
    await client?.close()
    await proxy?.close()
    await backend?.close()
  })

  it('sends a short HS256 JWT the backend verifies with its own secret', async () => {
    const result = await client.callTool({ name: 'echo_identity', arguments: {} })
    expect(result.isError).toBeFalsy()
    const claims = resultJson(result)
    expect(claims).toMatchObject({
      sub: ALICE.sub,
      email: ALICE.email,
      role: 'authenticated',
      actor: 'user',
      org_code: ALICE.org_code,
      iss: proxy.url,
      aud: new URL(backend.url).origin,
    })
    const lifetime = Number(claims.exp) - Number(claims.iat)
    expect(lifetime).toBeGreaterThan(0)
    expect(lifetime).toBeLessThanOrEqual(300)
  })

  it('reuses one minted token across the requests of one proxy token', async () => {
    await client.listTools()
    await client.listTools()
    const [first, second] = backend.requests.slice(-2)
    expect(first?.headers.authorization).toMatch(/^Bearer ey/)
    expect(second?.headers.authorization).toBe(first?.headers.authorization)
  })

  it('the backend refuses a token signed with another secret', async () => {
    const minted = decodeJwt(
      String(lastRequest(backend).headers.authorization).replace(/^Bearer /, ''),
    )
    const forged = await new SignJWT(minted)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .sign(new TextEncoder().encode('another-secret-that-is-also-32-bytes-long'))
    const response = await mcpRequest(backend.mcpUrl, {
      token: forged,
      body: initializeMessage(),
    })
    expect(response.status).toBe(401)
    await response.body?.cancel()
  })

  it('answers a backend refusing the minted token with 502: signing in again cannot help', async () => {
    backend.fault = () =>
      new Response('{"message":"JWSInvalidSignature"}', {
        status: 401,
        headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
      })
    const response = await mcpRequest(mcpUrl, {
      token: accessTokenOf(alice),
      body: initializeMessage(),
    })
    backend.fault = undefined
    expect(response.status).toBe(502)
    expect(response.headers.get('www-authenticate')).toBeNull()
    expect(await response.json()).toEqual({
      error: 'server_error',
      error_description: "the MCP backend refused the proxy's credentials",
    })
  })
})

// ---------------------------------------------------------------------------------------

describe('forward-mode configuration', () => {
  const BASE = {
    PUBLIC_URL: 'https://mcp.example.com',
    KINDE_ISSUER_URL: 'https://acme.kinde.com',
    KINDE_CLIENT_ID: 'id',
    KINDE_CLIENT_SECRET: 'secret',
    MCP_UPSTREAM_URL: 'https://backend.example.com/mcp',
  }

  it('forwards the upstream token by default', () => {
    const config = loadConfig(BASE)
    expect(config.mcpUpstreamUrl?.href).toBe('https://backend.example.com/mcp')
    expect(config.mcpUpstreamToken).toBe('upstream')
    expect(config.downstreamJwtSecret).toBeUndefined()
    expect(config.downstreamJwtAudience).toBeUndefined()
  })

  it('reads the downstream JWT settings', () => {
    const config = loadConfig({
      ...BASE,
      MCP_UPSTREAM_TOKEN: 'downstream-jwt',
      DOWNSTREAM_JWT_SECRET: SECRET,
      DOWNSTREAM_JWT_AUDIENCE: 'authenticated',
    })
    expect(config.mcpUpstreamToken).toBe('downstream-jwt')
    expect(config.downstreamJwtSecret).toBe(SECRET)
    expect(config.downstreamJwtAudience).toBe('authenticated')
  })

  it('refuses an unknown token mode', () => {
    expect(problemsOf({ ...BASE, MCP_UPSTREAM_TOKEN: 'jwt' })).toEqual([
      'MCP_UPSTREAM_TOKEN: must be one of upstream, downstream-jwt',
    ])
  })

  it('refuses a secret shorter than 32 bytes', () => {
    expect(
      problemsOf({ ...BASE, MCP_UPSTREAM_TOKEN: 'downstream-jwt', DOWNSTREAM_JWT_SECRET: 'short' }),
    ).toEqual(['DOWNSTREAM_JWT_SECRET: must be at least 32 bytes (HS256 needs a 256-bit key)'])
  })

  it('needs a secret and a backend for downstream-jwt, one line each', () => {
    const { MCP_UPSTREAM_URL: _, ...withoutBackend } = BASE
    expect(problemsOf({ ...withoutBackend, MCP_UPSTREAM_TOKEN: 'downstream-jwt' })).toEqual([
      'MCP_UPSTREAM_TOKEN: downstream-jwt needs MCP_UPSTREAM_URL (the backend it is for)',
      'DOWNSTREAM_JWT_SECRET: is required when MCP_UPSTREAM_TOKEN is downstream-jwt',
    ])
  })

  it('refuses downstream JWT settings without the downstream-jwt mode', () => {
    expect(
      problemsOf({ ...BASE, DOWNSTREAM_JWT_SECRET: SECRET, DOWNSTREAM_JWT_AUDIENCE: 'x' }),
    ).toEqual([
      'DOWNSTREAM_JWT_SECRET: is only used when MCP_UPSTREAM_TOKEN is downstream-jwt',
      'DOWNSTREAM_JWT_AUDIENCE: is only used when MCP_UPSTREAM_TOKEN is downstream-jwt',
    ])
  })
})

describe('forwarded session ids', () => {
  it('name the backend session only for the user and client that opened it', async () => {
    const clock = createTestClock()
    const keys = await createKeys({ store: createMemoryStore(clock), clock, rotationSeconds: 3600 })
    const binder = createSessionBinder(keys)
    const owner = { sub: 'user-1', clientId: 'client-1' }
    const id = await binder.wrap('backend.session.1', owner)
    expect(id).toMatch(/^backend\.session\.1\.[\w-]{22}$/)
    expect(await binder.unwrap(id, owner)).toBe('backend.session.1')
    expect(await binder.unwrap(id, { sub: 'user-1', clientId: 'client-2' })).toBeUndefined()
    expect(await binder.unwrap(id, { sub: 'user-2', clientId: 'client-1' })).toBeUndefined()
    const tampered = `${id.slice(0, -1)}${id.endsWith('A') ? 'B' : 'A'}`
    expect(await binder.unwrap(tampered, owner)).toBeUndefined()
    expect(await binder.unwrap('backend.session.1', owner)).toBeUndefined()
    // Another deployment (other keys) does not accept it either.
    const otherKeys = await createKeys({
      store: createMemoryStore(clock),
      clock,
      rotationSeconds: 3600,
    })
    expect(await createSessionBinder(otherKeys).unwrap(id, owner)).toBeUndefined()
  })
})

describe('downstream JWTs', () => {
  const config = {
    issuer: 'https://mcp.example.com',
    downstreamJwtSecret: SECRET,
    downstreamJwtAudience: undefined,
  }
  const target = new URL('https://backend.example.com/mcp')
  const gated = (expiresAt: number, token = 'proxy-token-1'): GatedRequest => ({
    authInfo: { token, clientId: 'client-1', scopes: [], expiresAt },
    caller: {
      sub: 'agent-1',
      email: undefined,
      orgCode: 'org_acme',
      orgId: undefined,
      permissions: [],
      actor: 'agent',
      upstreamAccessToken: 'upstream',
    },
    parsedBody: undefined,
  })

  it('never outlive the proxy token, and give agents no role beyond authenticated', async () => {
    const clock = createTestClock()
    const tokens = createDownstreamTokens(clock, config, target)
    const jwt = await tokens.token(gated(clock.now() + 90))
    const { payload, protectedHeader } = await jwtVerify(jwt, new TextEncoder().encode(SECRET), {
      issuer: config.issuer,
      audience: 'https://backend.example.com',
      currentDate: new Date(clock.now() * 1000),
    })
    expect(protectedHeader.alg).toBe('HS256')
    expect(payload).toEqual({
      sub: 'agent-1',
      role: 'authenticated',
      actor: 'agent',
      org_code: 'org_acme',
      iss: config.issuer,
      aud: 'https://backend.example.com',
      iat: clock.now(),
      exp: clock.now() + 90,
    })
  })

  it('are reused while they have a minute to live, then minted again', async () => {
    const clock = createTestClock()
    const tokens = createDownstreamTokens(clock, config, target)
    const request = gated(clock.now() + 3600)
    const first = await tokens.token(request)
    clock.advance(239)
    expect(await tokens.token(request)).toBe(first)
    expect(await tokens.token(gated(clock.now() + 3600, 'proxy-token-2'))).not.toBe(first)
    clock.advance(2)
    const renewed = await tokens.token(request)
    expect(renewed).not.toBe(first)
    expect(decodeJwt(renewed).exp).toBe(clock.now() + 300)
  })
})

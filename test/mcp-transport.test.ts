import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Hono } from 'hono'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { z } from 'zod'
import type { Deps } from '../src/deps.js'
import { createMcpEndpoint } from '../src/mcp/endpoint.js'
import { defineTool, jsonResult } from '../src/mcp/tools.js'
import { HttpServerTransport } from '../src/mcp/transport.js'
import { mintAccessToken } from '../src/tokens/access-token.js'
import {
  initializeMessage,
  mcpRequest,
  openSession,
  resultJson,
  rpcMessages,
  rpcResponse,
  serveApp,
  toolCallMessage,
} from './support/mcp.js'
import { type ProxyUnderTest, siblingServices, startProxy } from './support/proxy.js'

// The Streamable HTTP transport of /mcp (MCP 2025-11-25, basic/transports), in both modes,
// with tools that talk to the client before they answer.

let proxy: ProxyUnderTest
let deps: Deps

beforeAll(async () => {
  proxy = await startProxy({ flavor: 'kinde' })
  deps = proxy.server.deps
})
afterAll(() => proxy?.close())

/** An access token for Alice, minted as `/token` would with `mintDeps`' keys. */
async function mint(mintDeps: Deps = deps): Promise<string> {
  const { token } = await mintAccessToken(mintDeps, {
    sub: 'user-alice',
    clientId: 'client-alice',
    scopes: ['openid'],
    actor: 'user',
    upstream: { at: 'upstream-access-token', exp: mintDeps.clock.now() + 3600 },
    upstreamRefreshable: false,
  })
  return token
}

/** Reports progress `steps` times, then answers. */
const countdown = defineTool({
  name: 'countdown',
  description: 'Counts down, reporting progress.',
  inputSchema: { steps: z.number().int().min(1).max(5) },
  handler: async ({ steps }, extra) => {
    const progressToken = extra._meta?.progressToken
    for (let done = 1; done <= steps; done++) {
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress: done, total: steps },
        })
      }
    }
    return jsonResult({ counted: steps })
  },
})

/** Shows what a tool sees of the HTTP request. */
const requestHeaders = defineTool({
  name: 'request_headers',
  description: 'Returns the request headers a tool is given.',
  handler: (_args, extra) => jsonResult(extra.requestInfo?.headers ?? null),
})

/** Answers only when `release` is called: a call in flight for as long as a test needs. */
let release: () => void = () => {}
const held = defineTool({
  name: 'held',
  description: 'Answers once released.',
  handler: async () => {
    await new Promise<void>((resolve) => {
      release = resolve
    })
    return jsonResult({ released: true })
  },
})

async function serveEndpoint(mode: 'stateful' | 'stateless') {
  const endpointDeps = await siblingServices(proxy, { config: { mcpSessions: mode } })
  const endpoint = createMcpEndpoint(endpointDeps, { tools: [countdown, requestHeaders, held] })
  return serveApp(new Hono().route('/', endpoint))
}

async function sdkClient(url: string, token: string) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  })
  const client = new Client({ name: 'transport-e2e', version: '1.0.0' })
  await client.connect(transport)
  return { client, transport }
}

describe.each(['stateful', 'stateless'] as const)('the /mcp transport (%s)', (mode) => {
  let app: { url: string; close(): Promise<void> }
  let mcpUrl: string

  beforeAll(async () => {
    app = await serveEndpoint(mode)
    mcpUrl = `${app.url}/mcp`
  })
  afterAll(() => app?.close())

  it('delivers a tool’s progress notifications to the SDK client before the result', async () => {
    const { client } = await sdkClient(mcpUrl, await mint())
    try {
      const progress: number[] = []
      const result = await client.callTool(
        { name: 'countdown', arguments: { steps: 3 } },
        undefined,
        {
          onprogress: ({ progress: done }) => progress.push(done),
        },
      )
      expect(resultJson(result)).toEqual({ counted: 3 })
      expect(progress).toEqual([1, 2, 3])
    } finally {
      await client.close()
    }
  })

  it('answers a batch (protocol 2025-03-26) with every response, in order', async () => {
    const token = await mint()
    const sessionId = mode === 'stateful' ? await openSession(mcpUrl, token) : undefined
    const response = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { 'mcp-protocol-version': '2025-03-26' },
      body: [
        { jsonrpc: '2.0', id: 'b', method: 'ping' },
        { jsonrpc: '2.0', id: 'a', method: 'tools/list' },
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'x' } },
      ],
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    const answers = (await response.json()) as { id: string; result: Record<string, unknown> }[]
    expect(answers.map((answer) => answer.id)).toEqual(['b', 'a'])
    expect(answers[0]?.result).toEqual({})
    expect(JSON.stringify(answers[1]?.result)).toContain('countdown')
  })

  it('refuses what is not a JSON-RPC POST with the transport’s status codes', async () => {
    const token = await mint()
    const sessionId = mode === 'stateful' ? await openSession(mcpUrl, token) : undefined
    const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' }
    const cases: [string, Parameters<typeof mcpRequest>[1], number][] = [
      ['not JSON-RPC', { body: { jsonrpc: '1.0', id: 1, method: 'ping' } }, 400],
      ['a null id', { body: { jsonrpc: '2.0', id: null, method: 'ping' } }, 400],
      ['an unknown member', { body: { ...list, extra: true } }, 400],
      ['an empty batch', { body: [] }, 400],
      ['one id twice in a batch', { body: [list, list] }, 400],
      ['initialize in a batch', { body: [initializeMessage(), list] }, 400],
      [
        'an unknown protocol version',
        { body: list, headers: { 'mcp-protocol-version': '1999-01-01' } },
        400,
      ],
      ['an Accept without SSE', { body: list, headers: { accept: 'application/json' } }, 406],
    ]
    for (const [what, options, status] of cases) {
      const response = await mcpRequest(mcpUrl, { token, sessionId, ...options })
      expect(response.status, what).toBe(status)
      const body = (await response.json()) as { jsonrpc: string; error: { code: number } }
      expect(body.jsonrpc, what).toBe('2.0')
      expect(body.error.code, what).toBeLessThan(0)
    }
    const text = await fetch(mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json, text/event-stream',
        'content-type': 'text/plain',
        ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
      },
      body: JSON.stringify(list),
    })
    expect(text.status).toBe(415)
    expect(await text.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } })
  })

  it('refuses a 2026-07-28 header on a request without the _meta envelope (400 -32602)', async () => {
    // MCP 2026-07-28 basic/versioning: the header claims the modern era, whose requests carry
    // the per-request envelope; without it this is neither a modern nor a legacy request.
    const response = await mcpRequest(mcpUrl, {
      token: await mint(),
      headers: { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'server/discover' },
      body: { jsonrpc: '2.0', id: 1, method: 'server/discover', params: {} },
    })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32602 } })
  })

  it('hands tools/list with other params to the server, which judges them', async () => {
    const token = await mint()
    const sessionId = mode === 'stateful' ? await openSession(mcpUrl, token) : undefined
    const list = (params: unknown, id: number) =>
      mcpRequest(mcpUrl, {
        token,
        sessionId,
        body: { jsonrpc: '2.0', id, method: 'tools/list', params },
      })
    const paged = await rpcResponse(await list({ cursor: 'next' }, 9))
    expect(JSON.stringify(paged.result)).toContain('countdown')
    const wrong = (await rpcResponse(await list({ cursor: 5 }, 10))) as { error?: { code: number } }
    expect(wrong.error?.code).toBeLessThan(0)
  })

  it('gives tools the request’s headers, without the caller’s credentials', async () => {
    const token = await mint()
    const sessionId = mode === 'stateful' ? await openSession(mcpUrl, token) : undefined
    const response = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { 'x-trace': 'abc', cookie: 'session=secret' },
      body: toolCallMessage('request_headers'),
    })
    const { result } = (await rpcResponse(response)) as { result: unknown }
    const seen = resultJson(result)
    expect(seen['x-trace']).toBe('abc')
    expect(seen.authorization).toBeUndefined()
    expect(seen.cookie).toBeUndefined()
    expect(JSON.stringify(seen)).not.toContain(token)
  })
})

describe('the /mcp transport with sessions', () => {
  let app: { url: string; close(): Promise<void> }
  let mcpUrl: string

  beforeAll(async () => {
    app = await serveEndpoint('stateful')
    mcpUrl = `${app.url}/mcp`
  })
  afterAll(() => app?.close())

  it('answers tools/list with JSON carrying the session id', async () => {
    const token = await mint()
    const sessionId = await openSession(mcpUrl, token)
    const response = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      body: { jsonrpc: '2.0', id: 2, method: 'tools/list' },
    })
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(response.headers.get('mcp-session-id')).toBe(sessionId)
    const { result } = (await response.json()) as { result: { tools: { name: string }[] } }
    expect(result.tools.map((tool) => tool.name)).toEqual([
      'whoami',
      'upstream_userinfo',
      'countdown',
      'request_headers',
      'held',
    ])
  })

  it('refuses a second initialize on a session, and a second event stream', async () => {
    const token = await mint()
    const sessionId = await openSession(mcpUrl, token)
    const again = await mcpRequest(mcpUrl, { token, sessionId, body: initializeMessage(5) })
    expect(again.status).toBe(400)
    await again.body?.cancel()

    const first = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { accept: 'text/event-stream' },
    })
    expect(first.status).toBe(200)
    const second = await mcpRequest(mcpUrl, {
      token,
      sessionId,
      headers: { accept: 'text/event-stream' },
    })
    expect(second.status).toBe(409)
    await second.body?.cancel()
    await first.body?.cancel()
  })

  it('answers a call still running when the session is deleted, instead of leaving it hanging', async () => {
    const token = await mint()
    const sessionId = await openSession(mcpUrl, token)
    const call = mcpRequest(mcpUrl, { token, sessionId, body: toolCallMessage('held', 3) })
    // The call's stream opens before the tool answers.
    const response = await call
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const ended = await mcpRequest(mcpUrl, { token, sessionId, method: 'DELETE' })
    expect(ended.status).toBe(200)
    expect(await rpcMessages(response)).toEqual([
      { jsonrpc: '2.0', id: 3, error: { code: -32000, message: 'Connection closed' } },
    ])
    release()
  })

  it('refuses a request id that is still open in the session', async () => {
    const token = await mint()
    const sessionId = await openSession(mcpUrl, token)
    const first = await mcpRequest(mcpUrl, { token, sessionId, body: toolCallMessage('held', 4) })
    const again = await mcpRequest(mcpUrl, { token, sessionId, body: toolCallMessage('held', 4) })
    expect(again.status).toBe(400)
    await again.body?.cancel()
    release()
    const { result } = (await rpcResponse(first)) as { result: unknown }
    expect(resultJson(result)).toEqual({ released: true })
  })
})

describe('shutdown with MCP sessions open', () => {
  it('ends open event streams and answers running calls, so the server can stop', async () => {
    const own = await startProxy({ flavor: 'kinde' })
    try {
      const token = await mint(own.server.deps)
      const mcpUrl = `${own.url}/mcp`
      const sessionId = await openSession(mcpUrl, token)
      const stream = await mcpRequest(mcpUrl, {
        token,
        sessionId,
        headers: { accept: 'text/event-stream' },
      })
      expect(stream.status).toBe(200)
      // The server's grace for open connections is 10 s, twice this test's whole budget: only
      // ending the session's stream lets it stop in time.
      await own.server.close()
      expect(await stream.text()).toBe('')
    } finally {
      await own.close()
    }
  }, 5_000)
})

describe('the session event stream', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('tells the endpoint its client is listening at each keep-alive, until it goes away', async () => {
    vi.useFakeTimers()
    const transport = new HttpServerTransport()
    let heard = 0
    transport.onlistening = () => heard++
    const response = transport.openStream({})
    const reader = response.body?.getReader()
    vi.advanceTimersByTime(30_000)
    expect(heard).toBe(2)
    expect(new TextDecoder().decode((await reader?.read())?.value)).toBe(': keepalive\n\n')
    await reader?.cancel()
    vi.advanceTimersByTime(30_000)
    expect(heard).toBe(2)
  })
})

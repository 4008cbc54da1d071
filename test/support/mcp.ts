import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { Hono } from 'hono'
import { expect } from 'vitest'
import { signIn, TestOAuthProvider } from './flow.js'
import type { ProxyUnderTest } from './proxy.js'

/** The MCP protocol revision the SDK client negotiates. */
export const PROTOCOL_VERSION = '2025-11-25'

/**
 * Runs the whole OAuth flow as an MCP client does (discovery, DCR, PKCE, consent, upstream
 * login as `user`, code exchange) and returns the SDK provider holding the tokens.
 */
export async function signedInProvider(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  options: { user?: string; port?: number } = {},
): Promise<TestOAuthProvider> {
  const serverUrl = `${proxy.url}/mcp`
  const redirectUrl = `http://127.0.0.1:${options.port ?? 43112}/oauth/callback`
  const provider = new TestOAuthProvider(redirectUrl, {
    client_name: 'MCP endpoint e2e',
    redirect_uris: [redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  })
  if ((await auth(provider, { serverUrl })) !== 'REDIRECT') throw new Error('expected a redirect')
  const [authorizeUrl] = provider.authorizationUrls
  if (!authorizeUrl) throw new Error('no authorization URL')
  const back = await signIn(proxy, authorizeUrl, { user: options.user })
  const code = back.searchParams.get('code')
  if (!code) throw new Error(`sign-in failed: ${back.href}`)
  if ((await auth(provider, { serverUrl, authorizationCode: code })) !== 'AUTHORIZED') {
    throw new Error('code exchange failed')
  }
  return provider
}

/** The access token a signed-in provider holds. */
export function accessTokenOf(provider: TestOAuthProvider): string {
  const token = provider.saved?.access_token
  if (!token) throw new Error('no access token')
  return token
}

/** The SDK client connected (initialized) to `url` with the provider's tokens. */
export async function connectClient(
  url: string,
  provider: TestOAuthProvider,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider })
  const client = new Client({ name: 'mcp-e2e', version: '1.0.0' })
  await client.connect(transport)
  return { client, transport }
}

/** The text of a tool result's first content block, parsed as JSON. */
export function resultJson(result: unknown): Record<string, unknown> {
  const [first] = (result as { content: { type: string; text: string }[] }).content
  if (first?.type !== 'text') throw new Error('expected a text result')
  return JSON.parse(first.text) as Record<string, unknown>
}

/** A raw request to an MCP endpoint with the headers a Streamable HTTP client sends. */
export function mcpRequest(
  url: string,
  options: {
    method?: string
    token?: string
    sessionId?: string
    body?: unknown
    headers?: Record<string, string>
  } = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL_VERSION,
    ...options.headers,
  }
  if (options.token) headers.authorization = `Bearer ${options.token}`
  if (options.sessionId) headers['mcp-session-id'] = options.sessionId
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  return fetch(url, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  })
}

/**
 * The JSON-RPC messages of a POST's answer, which the server may send as one JSON body (a
 * message or a batch) or as an SSE stream of `message` events (basic/transports).
 */
export async function rpcMessages(response: Response): Promise<Record<string, unknown>[]> {
  const text = await response.text()
  if (!response.headers.get('content-type')?.startsWith('text/event-stream')) {
    const body = JSON.parse(text) as Record<string, unknown> | Record<string, unknown>[]
    return Array.isArray(body) ? body : [body]
  }
  return [...text.matchAll(/^data: (.*)$/gm)].map(
    ([, data]) => JSON.parse(data as string) as Record<string, unknown>,
  )
}

/** The JSON-RPC response in a POST's answer (the last message: notifications come first). */
export async function rpcResponse(response: Response): Promise<Record<string, unknown>> {
  const messages = await rpcMessages(response)
  const last = messages.at(-1)
  if (!last || !('id' in last)) throw new Error('no JSON-RPC response')
  return last
}

/** Opens a session with a raw `initialize` POST and returns its `Mcp-Session-Id`. */
export async function openSession(mcpUrl: string, token: string): Promise<string> {
  const opened = await mcpRequest(mcpUrl, { token, body: initializeMessage() })
  const sessionId = opened.headers.get('mcp-session-id')
  await opened.body?.cancel()
  if (opened.status !== 200 || !sessionId) throw new Error(`initialize: ${opened.status}`)
  return sessionId
}

/**
 * Expects POST, GET and DELETE with `token` on session `sessionId` to be answered as for a
 * session that does not exist: 404 `Session not found`, however the session is bound.
 */
export async function expectSessionNotFound(
  mcpUrl: string,
  token: string,
  sessionId: string,
): Promise<void> {
  const list = await mcpRequest(mcpUrl, {
    token,
    sessionId,
    body: { jsonrpc: '2.0', id: 5, method: 'tools/list' },
  })
  expect(list.status).toBe(404)
  expect(await list.json()).toEqual({
    jsonrpc: '2.0',
    error: { code: -32001, message: 'Session not found' },
    id: null,
  })
  const stream = await mcpRequest(mcpUrl, { token, sessionId })
  expect(stream.status).toBe(404)
  await stream.body?.cancel()
  const deleted = await mcpRequest(mcpUrl, { token, sessionId, method: 'DELETE' })
  expect(deleted.status).toBe(404)
  await deleted.body?.cancel()
}

/** A JSON-RPC `initialize` request. */
export function initializeMessage(id = 1) {
  return {
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'raw-e2e', version: '1.0.0' },
    },
  }
}

/** A JSON-RPC `tools/call` request. */
export function toolCallMessage(name: string, id = 2, args: Record<string, unknown> = {}) {
  return { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }
}

/** Serves a Hono app on a loopback port (for apps built around a running proxy's deps). */
export async function serveApp(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server = await new Promise<Server>((resolve) => {
    const started = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
      resolve(started as Server),
    )
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

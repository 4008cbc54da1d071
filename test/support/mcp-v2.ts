import {
  Client,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from '@modelcontextprotocol/client'
import { signIn, TestOAuthProvider } from './flow.js'
import type { ProxyUnderTest } from './proxy.js'

/** The 2026-07-28 revision: stateless, `_meta` on every request. */
export const MODERN_VERSION = '2026-07-28'

/** The v2 client's `versionNegotiation` modes: pinned to 2026-07-28, dual-era, 2025 only. */
export const NEGOTIATION_MODES = {
  pinned: { pin: MODERN_VERSION },
  auto: 'auto',
  legacy: 'legacy',
} as const

export type NegotiationMode = keyof typeof NEGOTIATION_MODES

/**
 * Signs in as an MCP client built on the v2 SDK does it: the first `connect` meets the 401,
 * the transport discovers the authorization server, registers (DCR) and sends the user to
 * `/authorize` with PKCE; the test signs in there as `user`; `finishAuth` exchanges the code.
 * Returns the provider holding the tokens.
 */
export async function signedInProviderV2(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  mode: NegotiationMode,
  options: { user?: string; port?: number } = {},
): Promise<TestOAuthProvider> {
  const redirectUrl = `http://127.0.0.1:${options.port ?? 43122}/oauth/callback`
  const provider = new TestOAuthProvider(redirectUrl, {
    client_name: `MCP v2 e2e (${mode})`,
    redirect_uris: [redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  })
  const transport = new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp`), {
    authProvider: provider,
  })
  const client = new Client(
    { name: 'mcp-v2-e2e', version: '1.0.0' },
    { versionNegotiation: { mode: NEGOTIATION_MODES[mode] } },
  )
  let refused: unknown
  try {
    await client.connect(transport)
  } catch (error) {
    refused = error
  }
  if (!(refused instanceof UnauthorizedError)) {
    throw new Error(`expected the first connect to need authorization: ${String(refused)}`)
  }
  const [authorizeUrl] = provider.authorizationUrls
  if (!authorizeUrl) throw new Error('no authorization URL')
  const back = await signIn(proxy, authorizeUrl, { user: options.user })
  const code = back.searchParams.get('code')
  if (!code) throw new Error(`sign-in failed: ${back.href}`)
  await transport.finishAuth(back.searchParams)
  await transport.close()
  return provider
}

/** The v2 client connected to `url` in `mode`, with the provider's tokens. */
export async function connectClientV2(
  url: string,
  provider: TestOAuthProvider,
  mode: NegotiationMode,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider })
  const client = new Client(
    { name: 'mcp-v2-e2e', version: '1.0.0' },
    { versionNegotiation: { mode: NEGOTIATION_MODES[mode] } },
  )
  await client.connect(transport)
  return { client, transport }
}

/** The `_meta` envelope every 2026-07-28 request carries. */
export function modernMeta(version = MODERN_VERSION) {
  return {
    'io.modelcontextprotocol/protocolVersion': version,
    'io.modelcontextprotocol/clientInfo': { name: 'raw-e2e', version: '1.0.0' },
    'io.modelcontextprotocol/clientCapabilities': {},
  }
}

/** A raw 2026-07-28 request: its body and the headers mirrored from it. */
export function modernRequest(
  method: string,
  params: Record<string, unknown> = {},
  options: { id?: number; version?: string } = {},
): { body: unknown; headers: Record<string, string> } {
  const version = options.version ?? MODERN_VERSION
  const headers: Record<string, string> = { 'mcp-protocol-version': version, 'mcp-method': method }
  const name = params.name ?? params.uri
  if (typeof name === 'string') headers['mcp-name'] = name
  return {
    body: {
      jsonrpc: '2.0',
      id: options.id ?? 1,
      method,
      params: { ...params, _meta: modernMeta(version) },
    },
    headers,
  }
}

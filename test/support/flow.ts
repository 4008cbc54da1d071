import { createHash } from 'node:crypto'
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js'
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js'
import { randomToken } from '../../src/crypto.js'
import type { ProxyUnderTest } from './proxy.js'
import { location, UserAgent } from './user-agent.js'

/** A PKCE verifier and its S256 challenge (RFC 7636). */
export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomToken(32)
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

/** A form POST to the proxy (`/token` unless `path` says otherwise), as OAuth clients send. */
export function formPost(
  url: string,
  params: Record<string, string>,
  path = '/token',
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(params),
  })
}

/** Registers a client at the proxy (RFC 7591) and returns the response body. */
export async function registerClient(
  proxyUrl: string,
  metadata: Record<string, unknown>,
): Promise<{ client_id: string; client_secret?: string; redirect_uris: string[] }> {
  const res = await fetch(`${proxyUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(metadata),
  })
  if (res.status !== 201) throw new Error(`registration failed: ${res.status} ${await res.text()}`)
  return res.json() as Promise<{
    client_id: string
    client_secret?: string
    redirect_uris: string[]
  }>
}

/** An authorization request URL at the proxy. */
export function authorizationUrl(
  proxyUrl: string,
  params: Record<string, string | undefined>,
): URL {
  const url = new URL('/authorize', proxyUrl)
  for (const [key, value] of Object.entries(params))
    if (value !== undefined) url.searchParams.set(key, value)
  return url
}

/**
 * An authorization request with PKCE (S256) for `clientId`, consented and signed in at the
 * upstream: the code it brings back with its verifier, and where the browser was sent.
 */
export async function signInForCode(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  request: {
    clientId: string
    redirectUri: string
    state: string
    scope?: string
    resource?: string
    /** The upstream user who signs in (a sub or an email); default the upstream's first. */
    user?: string
  },
): Promise<{ code: string; verifier: string; back: URL }> {
  const { verifier, challenge } = pkce()
  const back = await signIn(
    proxy,
    authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: request.clientId,
      redirect_uri: request.redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      scope: request.scope,
      resource: request.resource,
      state: request.state,
    }),
    { user: request.user },
  )
  const code = back.searchParams.get('code')
  if (!code) throw new Error(`no code in ${back.href}`)
  return { code, verifier, back }
}

/** The consent form's hidden fields, read from the page. */
export function consentFields(html: string): { requestId: string; csrfToken: string } {
  const field = (name: string) =>
    html.match(new RegExp(`name="${name}" value="([^"]+)"`))?.[1] ?? ''
  return { requestId: field('request_id'), csrfToken: field('csrf_token') }
}

/**
 * Goes through `/authorize` as a person would: answers the consent page (when shown), signs
 * in at the upstream as `user`, and returns where the browser is finally sent — the client's
 * redirect URI with a code or an error.
 */
export async function signIn(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  url: URL,
  options: { agent?: UserAgent; decision?: 'allow' | 'deny'; user?: string } = {},
): Promise<URL> {
  const agent = options.agent ?? new UserAgent()
  let response = await agent.fetch(url)
  if (response.status === 200) {
    const { requestId, csrfToken } = consentFields(await response.text())
    response = await agent.fetch(`${proxy.url}/authorize/consent`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        request_id: requestId,
        csrf_token: csrfToken,
        decision: options.decision ?? 'allow',
      }),
    })
  }
  const next = location(response)
  if (next.origin !== new URL(proxy.upstream.url).origin) return next
  const callback = await proxy.upstream.loginWith(next.href, options.user)
  return location(await agent.fetch(callback))
}

/**
 * The MCP SDK's OAuth client provider as an MCP client keeps it: client information, tokens
 * and the PKCE verifier in memory; "opening the browser" records the URL for the test.
 */
export class TestOAuthProvider implements OAuthClientProvider {
  information: OAuthClientInformationMixed | undefined
  saved: OAuthTokens | undefined
  verifier = ''
  authorizationUrls: URL[] = []

  constructor(
    readonly redirectUrl: string,
    readonly clientMetadata: OAuthClientMetadata,
  ) {}

  clientInformation() {
    return this.information
  }
  saveClientInformation(information: OAuthClientInformationMixed) {
    this.information = information
  }
  tokens() {
    return this.saved
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrls.push(url)
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier
  }
  codeVerifier() {
    return this.verifier
  }
}

import { expect } from 'vitest'
import { formPost, registerClient, signInForCode } from './flow.js'
import { initializeMessage, mcpRequest } from './mcp.js'
import type { ProxyUnderTest } from './proxy.js'
import { location, UserAgent } from './user-agent.js'

/** An MCP client a person approved: its id and the tokens it holds. */
export interface ApprovedClient {
  readonly clientId: string
  readonly redirectUri: string
  readonly accessToken: string
  readonly refreshToken: string
}

/**
 * Registers a public client named `name` and has `user` approve it and sign in (consent, the
 * upstream login, the code exchange), as an MCP client's first connection does.
 */
export async function approveClient(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  name: string,
  user?: string,
  redirectUri = 'http://127.0.0.1:45556/callback',
): Promise<ApprovedClient> {
  const client = await registerClient(proxy.url, {
    client_name: name,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
  })
  const { code, verifier } = await signInForCode(proxy, {
    clientId: client.client_id,
    redirectUri,
    state: 'approve',
    scope: 'openid profile email',
    user,
  })
  const res = await formPost(proxy.url, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: client.client_id,
  })
  expect(res.status).toBe(200)
  const tokens = (await res.json()) as { access_token: string; refresh_token: string }
  return {
    clientId: client.client_id,
    redirectUri,
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
  }
}

/** The status `/mcp` answers an `initialize` carrying `token` with (200 in, 401 refused). */
export async function mcpStatus(proxy: Pick<ProxyUnderTest, 'url'>, token: string) {
  const res = await mcpRequest(`${proxy.url}/mcp`, { token, body: initializeMessage() })
  await res.body?.cancel()
  return res.status
}

/** What `/token` answers a refresh of `client`'s refresh token with: 200, or the error code. */
export async function refreshOutcome(
  proxy: Pick<ProxyUnderTest, 'url'>,
  client: Pick<ApprovedClient, 'clientId' | 'refreshToken'>,
): Promise<number | string> {
  const res = await formPost(proxy.url, {
    grant_type: 'refresh_token',
    refresh_token: client.refreshToken,
    client_id: client.clientId,
  })
  if (res.status === 200) return 200
  return ((await res.json()) as { error: string }).error
}

/** A signed-in `/account` session without a browser: the agent holding its cookie, and its CSRF token. */
export async function signInToAccount(
  proxy: Pick<ProxyUnderTest, 'url' | 'upstream'>,
  user?: string,
  agent = new UserAgent(),
): Promise<{ agent: UserAgent; csrfToken: string; html: string }> {
  const toUpstream = location(await agent.fetch(`${proxy.url}/account/sign-in`))
  const callback = await proxy.upstream.loginWith(toUpstream.href, user)
  const back = await agent.fetch(callback)
  expect(back.status).toBe(303)
  expect(location(back).href).toBe(`${proxy.url}/account`)
  const page = await agent.fetch(`${proxy.url}/account`)
  const html = await page.text()
  const csrfToken = html.match(/name="csrf_token" value="([^"]+)"/)?.[1]
  if (!csrfToken) throw new Error('the account page has no CSRF token')
  return { agent, csrfToken, html }
}

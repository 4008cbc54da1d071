import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SealedUpstream } from '../src/tokens/access-token.js'
import { unseal } from '../src/tokens/seal.js'
import { formPost, signIn, TestOAuthProvider } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { UpstreamFlavor } from './support/upstream.js'

const CASES: [UpstreamFlavor, 'memory' | 'redis'][] = [
  ['kinde', 'memory'],
  ['kinde', 'redis'],
  ['auth0', 'memory'],
  ['auth0', 'redis'],
]

describe.each(CASES)(
  'the MCP SDK client signs in through a %s upstream (%s store)',
  (flavor, store) => {
    let proxy: ProxyUnderTest
    const user = {
      sub: 'user-alice',
      email: 'alice@acme.test',
      name: 'Alice',
      org_code: 'org_acme',
      org_id: 'org_auth0_acme',
      permissions: ['read:reports'],
    }
    beforeAll(async () => {
      proxy = await startProxy({ flavor, store, upstream: { users: [user] } })
    })
    afterAll(() => proxy.close())

    it('discovers, registers, consents, signs in, exchanges, refreshes and revokes', async () => {
      const serverUrl = `${proxy.url}/mcp`
      const redirectUrl = 'http://127.0.0.1:43111/oauth/callback'
      const provider = new TestOAuthProvider(redirectUrl, {
        client_name: 'SDK e2e',
        redirect_uris: [redirectUrl],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      })

      // Discovery and dynamic registration, then the browser is sent to /authorize.
      expect(await auth(provider, { serverUrl })).toBe('REDIRECT')
      expect(provider.information?.client_id).toBeTruthy()
      const [authorizeUrl] = provider.authorizationUrls
      expect(authorizeUrl?.origin).toBe(proxy.url)
      expect(authorizeUrl?.searchParams.get('resource')).toBe(serverUrl)

      // Consent, upstream login, callback: back at the client with a code and our issuer.
      const back = await signIn(proxy, authorizeUrl as URL)
      expect(back.origin + back.pathname).toBe(redirectUrl)
      expect(back.searchParams.get('iss')).toBe(proxy.url)
      expect(back.searchParams.get('state')).toBe(authorizeUrl?.searchParams.get('state'))
      const code = back.searchParams.get('code') as string
      expect(code).toMatch(/^[\w-]{43}$/)

      expect(await auth(provider, { serverUrl, authorizationCode: code })).toBe('AUTHORIZED')
      const first = provider.saved
      expect(first).toMatchObject({ token_type: 'Bearer', scope: 'openid profile email' })
      expect(first?.refresh_token).toBeTruthy()
      expect(first?.expires_in).toBeGreaterThan(0)

      // The access token is ours: RFC 9068, ES256, bound to the MCP resource.
      const accessToken = first?.access_token as string
      expect(decodeProtectedHeader(accessToken)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' })
      const jwks = createRemoteJWKSet(new URL(`${proxy.url}/.well-known/jwks.json`))
      const { payload } = await jwtVerify(accessToken, jwks, {
        issuer: proxy.url,
        audience: serverUrl,
        typ: 'at+jwt',
      })
      expect(payload).toMatchObject({
        sub: 'user-alice',
        client_id: provider.information?.client_id,
        scope: 'openid profile email',
        actor: 'user',
        email: 'alice@acme.test',
        permissions: ['read:reports'],
        ...(flavor === 'kinde' ? { org_code: 'org_acme' } : { org_id: 'org_auth0_acme' }),
      })
      expect(payload.exp).toBeGreaterThan(payload.iat as number)

      // The upstream token rides inside, encrypted: not readable from the JWT.
      const sealed = await unseal<SealedUpstream>(proxy.server.deps.keys, payload.upt as string)
      expect(sealed.at.split('.')).toHaveLength(3)
      const readable = Buffer.from(accessToken.split('.')[1] as string, 'base64url').toString()
      expect(readable).not.toContain(sealed.at)
      expect(readable).not.toContain(sealed.at.split('.')[1])

      // Refresh rotates the refresh token and gives a new access token.
      expect(await auth(provider, { serverUrl })).toBe('AUTHORIZED')
      const second = provider.saved
      expect(second?.refresh_token).toBeTruthy()
      expect(second?.refresh_token).not.toBe(first?.refresh_token)
      expect(second?.access_token).not.toBe(first?.access_token)

      // Revocation ends the family: the refresh token no longer works.
      const revoked = await fetch(`${proxy.url}/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          token: second?.refresh_token as string,
          client_id: provider.information?.client_id as string,
        }),
      })
      expect(revoked.status).toBe(200)
      const after = await formPost(proxy.url, {
        grant_type: 'refresh_token',
        refresh_token: second?.refresh_token as string,
        client_id: provider.information?.client_id as string,
      })
      expect(after.status).toBe(400)
      expect(await after.json()).toEqual({
        error: 'invalid_grant',
        error_description: 'the refresh token is invalid, expired or revoked',
      })
    })
  },
)

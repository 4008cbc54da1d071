import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAccessTokenDenied } from '../src/tokens/grants.js'
import { createTestClock } from './support/clock.js'
import { pkce, registerClient, signInForCode } from './support/flow.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy } from './support/proxy.js'

// POST /token and POST /revoke refusals: the exact RFC 6749 §5.2 / RFC 7009 §2.2.1 codes and
// statuses, `Cache-Control: no-store` on every answer, and nothing secret or internal in a body.

type Client = Awaited<ReturnType<typeof registerClient>>
type Body = Record<string, unknown>

interface Answer {
  status: number
  headers: Headers
  body: Body
}

/** Every secret a response body must never contain: the clients' and the proxy's upstream one. */
const SECRETS = new Set<string>([PROXY_CLIENT.client_secret])

/**
 * POSTs to the proxy and checks what every answer of these endpoints must satisfy: no caching,
 * and no stack trace, source path or secret in the body.
 */
async function post(
  proxy: ProxyUnderTest,
  path: '/token' | '/revoke',
  params: Record<string, string> | URLSearchParams,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const res = await fetch(`${proxy.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    body: options.body ?? new URLSearchParams(params),
  })
  const text = await res.text()
  expect(res.headers.get('cache-control')).toBe('no-store')
  expect(text).not.toMatch(/\n\s+at |node:internal|node_modules|\.ts:\d+/)
  for (const secret of SECRETS) expect(text).not.toContain(secret)
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Body) : {} }
}

/** Expects an OAuth error answer with exactly this status and code (RFC 6749 §5.2). */
function expectError(answer: Answer, status: number, error: string): void {
  expect({ status: answer.status, error: answer.body.error }).toEqual({ status, error })
  expect(answer.body.error_description).toEqual(expect.any(String))
}

/** `Authorization: Basic` as RFC 6749 §2.3.1 builds it (form-encode, then base64). */
function basic(id: string, secret: string): Record<string, string> {
  const credentials = `${encodeURIComponent(id)}:${encodeURIComponent(secret)}`
  return { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` }
}

async function register(proxy: ProxyUnderTest, metadata: Record<string, unknown>) {
  const client = await registerClient(proxy.url, metadata)
  if (client.client_secret) SECRETS.add(client.client_secret)
  return client
}

/** A public native client on a loopback redirect URI; `name` keeps registrations apart. */
function registerPublic(proxy: ProxyUnderTest, name: string, extra: Record<string, unknown> = {}) {
  return register(proxy, {
    client_name: name,
    redirect_uris: ['http://127.0.0.1:7101/cb'],
    token_endpoint_auth_method: 'none',
    ...extra,
  })
}

interface IssuedCode {
  code: string
  verifier: string
  redirectUri: string
}

/** Runs /authorize, consent and the upstream login for `client`; returns the code it gets. */
async function obtainCode(
  proxy: ProxyUnderTest,
  client: Client,
  scope?: string,
): Promise<IssuedCode> {
  const redirectUri = client.redirect_uris[0] as string
  const { code, verifier } = await signInForCode(proxy, {
    clientId: client.client_id,
    redirectUri,
    scope,
    resource: `${proxy.url}/mcp`,
    state: 'token-test',
  })
  return { code, verifier, redirectUri }
}

/** The authorization_code token request for `issued`, as a public client sends it. */
function codeRequest(
  client: Client,
  issued: IssuedCode,
  overrides: Record<string, string | undefined> = {},
): Record<string, string> {
  const params: Record<string, string | undefined> = {
    grant_type: 'authorization_code',
    code: issued.code,
    code_verifier: issued.verifier,
    redirect_uri: issued.redirectUri,
    client_id: client.client_id,
    ...overrides,
  }
  return Object.fromEntries(
    Object.entries(params).filter((entry): entry is [string, string] => Boolean(entry[1])),
  )
}

function refreshRequest(
  client: Client,
  refreshToken: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: client.client_id,
    ...overrides,
  }
}

function jti(accessToken: unknown): string {
  return decodeJwt(accessToken as string).jti as string
}

describe.each(['memory', 'redis'] as const)('code replay and refresh (%s store)', (store) => {
  let proxy: ProxyUnderTest
  let client: Client

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', store })
    client = await registerPublic(proxy, `Replay and refresh (${store})`)
  })
  afterAll(() => proxy.close())

  it('rejects a reused authorization code with invalid_grant and revokes what it issued', async () => {
    const issued = await obtainCode(proxy, client)
    const first = await post(proxy, '/token', codeRequest(client, issued))
    expect(first.status).toBe(200)
    expect(first.body).toMatchObject({ token_type: 'Bearer', refresh_token: expect.any(String) })

    const replay = await post(proxy, '/token', codeRequest(client, issued))
    expectError(replay, 400, 'invalid_grant')

    const refresh = await post(
      proxy,
      '/token',
      refreshRequest(client, first.body.refresh_token as string),
    )
    expectError(refresh, 400, 'invalid_grant')
    expect(await isAccessTokenDenied(proxy.server.deps, jti(first.body.access_token))).toBe(true)
  })

  it('revokes what a code issued even when replays race the first exchange', async () => {
    const issued = await obtainCode(proxy, client)
    const answers = await Promise.all(
      [1, 2, 3].map(() => post(proxy, '/token', codeRequest(client, issued))),
    )
    // The grant's lock orders them: the first redeems, every later one is a replay.
    const granted = answers.filter((answer) => answer.status === 200)
    expect(granted).toHaveLength(1)
    for (const refused of answers.filter((answer) => answer.status !== 200))
      expectError(refused, 400, 'invalid_grant')
    for (const { body } of granted) {
      const refresh = await post(
        proxy,
        '/token',
        refreshRequest(client, body.refresh_token as string),
      )
      expectError(refresh, 400, 'invalid_grant')
      expect(await isAccessTokenDenied(proxy.server.deps, jti(body.access_token))).toBe(true)
    }
  })

  it('narrows a refreshed access token to the scope asked for', async () => {
    const issued = await obtainCode(proxy, client)
    const tokens = (await post(proxy, '/token', codeRequest(client, issued))).body
    expect(tokens.scope).toBe('openid profile email')

    const narrowed = await post(
      proxy,
      '/token',
      refreshRequest(client, tokens.refresh_token as string, { scope: 'openid' }),
    )
    expect(narrowed.status).toBe(200)
    expect(narrowed.body.scope).toBe('openid')
    expect(decodeJwt(narrowed.body.access_token as string).scope).toBe('openid')
    expect(narrowed.body.refresh_token).not.toBe(tokens.refresh_token)
  })

  it('refuses to widen the scope with invalid_scope and leaves the refresh token unrotated', async () => {
    const issued = await obtainCode(proxy, client, 'openid email')
    const tokens = (await post(proxy, '/token', codeRequest(client, issued))).body
    const refreshToken = tokens.refresh_token as string

    for (const scope of ['openid profile', 'openid admin']) {
      const widened = await post(proxy, '/token', refreshRequest(client, refreshToken, { scope }))
      expectError(widened, 400, 'invalid_scope')
    }

    const after = await post(proxy, '/token', refreshRequest(client, refreshToken))
    expect(after.status).toBe(200)
    expect(after.body.scope).toBe('openid email')
  })
})

describe('POST /token', () => {
  let proxy: ProxyUnderTest
  let publicClient: Client
  let otherPublicClient: Client
  let noRefreshClient: Client
  let basicClient: Client
  let postClient: Client

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde' })
    publicClient = await registerPublic(proxy, 'Public')
    otherPublicClient = await registerPublic(proxy, 'Another public client')
    noRefreshClient = await registerPublic(proxy, 'No refresh', {
      grant_types: ['authorization_code'],
    })
    basicClient = await register(proxy, {
      client_name: 'Confidential (basic)',
      redirect_uris: ['https://app.example.com/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    })
    postClient = await register(proxy, {
      client_name: 'Confidential (post)',
      redirect_uris: ['https://app.example.com/cb'],
      token_endpoint_auth_method: 'client_secret_post',
    })
  })
  afterAll(() => proxy.close())

  describe('request shape', () => {
    it('refuses a body that is not form-encoded with invalid_request', async () => {
      const answer = await post(
        proxy,
        '/token',
        {},
        {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ grant_type: 'authorization_code', code: 'x' }),
        },
      )
      expectError(answer, 400, 'invalid_request')
    })

    it('refuses a repeated parameter with invalid_request', async () => {
      const params = new URLSearchParams(
        codeRequest(publicClient, {
          code: 'x',
          verifier: 'y',
          redirectUri: 'http://127.0.0.1:7101/cb',
        }),
      )
      params.append('code', 'z')
      expectError(await post(proxy, '/token', params), 400, 'invalid_request')
    })

    it('refuses a request without grant_type with invalid_request', async () => {
      const answer = await post(proxy, '/token', { code: 'x', client_id: publicClient.client_id })
      expectError(answer, 400, 'invalid_request')
    })

    it.each([
      'password',
      'implicit',
      'urn:ietf:params:oauth:grant-type:device_code',
      'constructor',
      'toString',
      '__proto__',
      'hasOwnProperty',
    ])('answers grant_type=%s with unsupported_grant_type', async (grantType) => {
      const answer = await post(proxy, '/token', {
        grant_type: grantType,
        client_id: publicClient.client_id,
      })
      expectError(answer, 400, 'unsupported_grant_type')
    })
  })

  describe('authorization_code', () => {
    it('refuses a code_verifier that does not match the challenge with invalid_grant', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { code_verifier: pkce().verifier }),
      )
      expectError(answer, 400, 'invalid_grant')
    })

    it('refuses a missing code_verifier with invalid_request', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { code_verifier: undefined }),
      )
      expectError(answer, 400, 'invalid_request')
    })

    it.each([
      ['too short', 'a'.repeat(42)],
      ['too long', 'a'.repeat(129)],
      ['outside the unreserved characters', `${'a'.repeat(42)}+/`],
    ])('refuses a code_verifier %s with invalid_request', async (_case, verifier) => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { code_verifier: verifier }),
      )
      expectError(answer, 400, 'invalid_request')
    })

    it('refuses a redirect_uri other than the one the code was issued for with invalid_grant', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { redirect_uri: 'http://127.0.0.1:7102/cb' }),
      )
      expectError(answer, 400, 'invalid_grant')
    })

    it('refuses a missing redirect_uri when /authorize had one with invalid_grant', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { redirect_uri: undefined }),
      )
      expectError(answer, 400, 'invalid_grant')
    })

    it('refuses a resource other than the MCP server with invalid_target', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(
        proxy,
        '/token',
        codeRequest(publicClient, issued, { resource: 'https://other.example/mcp' }),
      )
      expectError(answer, 400, 'invalid_target')
      const queried = await post(
        proxy,
        '/token',
        codeRequest(publicClient, await obtainCode(proxy, publicClient), {
          resource: `${proxy.url}/mcpx?a=b`,
        }),
      )
      expectError(queried, 400, 'invalid_target')
    })

    it('accepts the MCP resource, with or without a trailing slash or a query', async () => {
      for (const resource of [`${proxy.url}/mcp`, `${proxy.url}/mcp/`, `${proxy.url}/mcp?a=b`]) {
        const issued = await obtainCode(proxy, publicClient)
        const answer = await post(proxy, '/token', codeRequest(publicClient, issued, { resource }))
        expect(answer.status).toBe(200)
        expect(decodeJwt(answer.body.access_token as string).aud).toBe(`${proxy.url}/mcp`)
      }
    })

    it('refuses the code of another client with invalid_grant', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const answer = await post(proxy, '/token', codeRequest(otherPublicClient, issued))
      expectError(answer, 400, 'invalid_grant')
    })

    it('refuses a missing code with invalid_request and an unknown one with invalid_grant', async () => {
      const issued = {
        code: 'x',
        verifier: pkce().verifier,
        redirectUri: 'http://127.0.0.1:7101/cb',
      }
      expectError(
        await post(proxy, '/token', codeRequest(publicClient, issued, { code: undefined })),
        400,
        'invalid_request',
      )
      expectError(
        await post(proxy, '/token', codeRequest(publicClient, issued, { code: 'never-issued' })),
        400,
        'invalid_grant',
      )
    })
  })

  describe('client authentication', () => {
    it('exchanges a code for a client_secret_basic client', async () => {
      const issued = await obtainCode(proxy, basicClient)
      const { client_id: _id, ...params } = codeRequest(basicClient, issued)
      const answer = await post(proxy, '/token', params, {
        headers: basic(basicClient.client_id, basicClient.client_secret as string),
      })
      expect(answer.status).toBe(200)
      expect(answer.body).toMatchObject({ token_type: 'Bearer', refresh_token: expect.any(String) })
      expect(decodeJwt(answer.body.access_token as string).client_id).toBe(basicClient.client_id)
    })

    it('exchanges a code for a client_secret_post client', async () => {
      const issued = await obtainCode(proxy, postClient)
      const answer = await post(proxy, '/token', {
        ...codeRequest(postClient, issued),
        client_secret: postClient.client_secret as string,
      })
      expect(answer.status).toBe(200)
      expect(decodeJwt(answer.body.access_token as string).client_id).toBe(postClient.client_id)
    })

    // Client authentication comes before the code is looked at, so any code will do here.
    const someCode = {
      code: 'x',
      verifier: pkce().verifier,
      redirectUri: 'https://app.example.com/cb',
    }

    it('refuses a wrong Basic secret with 401 invalid_client and a Basic challenge', async () => {
      const { client_id: _id, ...params } = codeRequest(basicClient, someCode)
      const answer = await post(proxy, '/token', params, {
        headers: basic(basicClient.client_id, 'wrong-secret'),
      })
      expectError(answer, 401, 'invalid_client')
      expect(answer.headers.get('www-authenticate')).toMatch(/^Basic /)
    })

    it('refuses a wrong client_secret in the body with 401 invalid_client', async () => {
      const answer = await post(proxy, '/token', {
        ...codeRequest(postClient, someCode),
        client_secret: 'wrong-secret',
      })
      expectError(answer, 401, 'invalid_client')
      expect(answer.headers.get('www-authenticate')).toBeNull()
    })

    it('refuses a confidential client that sends no secret with 401 invalid_client', async () => {
      for (const client of [basicClient, postClient]) {
        const answer = await post(proxy, '/token', codeRequest(client, someCode))
        expectError(answer, 401, 'invalid_client')
      }
    })

    it('refuses a client_secret_basic client that sends its secret in the body', async () => {
      const answer = await post(proxy, '/token', {
        ...codeRequest(basicClient, someCode),
        client_secret: basicClient.client_secret as string,
      })
      expectError(answer, 401, 'invalid_client')
    })

    it('refuses a client_secret_post client that sends its secret by Basic', async () => {
      const { client_id: _id, ...params } = codeRequest(postClient, someCode)
      const answer = await post(proxy, '/token', params, {
        headers: basic(postClient.client_id, postClient.client_secret as string),
      })
      expectError(answer, 401, 'invalid_client')
      expect(answer.headers.get('www-authenticate')).toMatch(/^Basic /)
    })

    it('refuses Basic and a body secret together with 400 invalid_request', async () => {
      const answer = await post(
        proxy,
        '/token',
        {
          ...codeRequest(basicClient, someCode),
          client_secret: basicClient.client_secret as string,
        },
        { headers: basic(basicClient.client_id, basicClient.client_secret as string) },
      )
      expectError(answer, 400, 'invalid_request')
    })

    it('refuses an unknown client with 401 invalid_client', async () => {
      const byBody = await post(proxy, '/token', {
        ...codeRequest(publicClient, someCode),
        client_id: 'never-registered',
      })
      expectError(byBody, 401, 'invalid_client')
      const { client_id: _id, ...params } = codeRequest(publicClient, someCode)
      const byBasic = await post(proxy, '/token', params, {
        headers: basic('never-registered', 'whatever'),
      })
      expectError(byBasic, 401, 'invalid_client')
      expect(byBasic.headers.get('www-authenticate')).toMatch(/^Basic /)
    })

    it('refuses a request that names no client with 401 invalid_client', async () => {
      const { client_id: _id, ...params } = codeRequest(publicClient, someCode)
      expectError(await post(proxy, '/token', params), 401, 'invalid_client')
    })

    it('refuses a public client that sends a secret with 401 invalid_client', async () => {
      const byBody = await post(proxy, '/token', {
        ...codeRequest(publicClient, someCode),
        client_secret: 'made-up',
      })
      expectError(byBody, 401, 'invalid_client')
      const { client_id: _id, ...params } = codeRequest(publicClient, someCode)
      const byBasic = await post(proxy, '/token', params, {
        headers: basic(publicClient.client_id, 'made-up'),
      })
      expectError(byBasic, 401, 'invalid_client')
    })

    it('does not burn the code when client authentication fails', async () => {
      const issued = await obtainCode(proxy, postClient)
      const wrong = await post(proxy, '/token', {
        ...codeRequest(postClient, issued),
        client_secret: 'wrong-secret',
      })
      expectError(wrong, 401, 'invalid_client')
      const right = await post(proxy, '/token', {
        ...codeRequest(postClient, issued),
        client_secret: postClient.client_secret as string,
      })
      expect(right.status).toBe(200)
    })
  })

  describe('a client registered without the refresh_token grant', () => {
    it('gets no refresh token and may not use the refresh_token grant', async () => {
      const issued = await obtainCode(proxy, noRefreshClient)
      const tokens = await post(proxy, '/token', codeRequest(noRefreshClient, issued))
      expect(tokens.status).toBe(200)
      expect(tokens.body.access_token).toEqual(expect.any(String))
      expect(tokens.body).not.toHaveProperty('refresh_token')

      const refresh = await post(proxy, '/token', refreshRequest(noRefreshClient, 'anything'))
      expectError(refresh, 400, 'unauthorized_client')
    })
  })

  describe('POST /revoke (RFC 7009)', () => {
    it('refuses a request without token with invalid_request', async () => {
      const answer = await post(proxy, '/revoke', { client_id: publicClient.client_id })
      expectError(answer, 400, 'invalid_request')
    })

    it('answers 200 for a token it does not know', async () => {
      for (const token of ['not-a-token', 'a.b.c']) {
        const answer = await post(proxy, '/revoke', { token, client_id: publicClient.client_id })
        expect(answer.status).toBe(200)
      }
    })

    it('puts a revoked access token on the deny-list', async () => {
      const issued = await obtainCode(proxy, publicClient)
      const tokens = (await post(proxy, '/token', codeRequest(publicClient, issued))).body
      const accessJti = jti(tokens.access_token)
      expect(await isAccessTokenDenied(proxy.server.deps, accessJti)).toBe(false)

      const answer = await post(proxy, '/revoke', {
        token: tokens.access_token as string,
        token_type_hint: 'access_token',
        client_id: publicClient.client_id,
      })
      expect(answer.status).toBe(200)
      expect(await isAccessTokenDenied(proxy.server.deps, accessJti)).toBe(true)
    })

    it("answers 200 to another client revoking a client's refresh token, which keeps working", async () => {
      const issued = await obtainCode(proxy, publicClient)
      const tokens = (await post(proxy, '/token', codeRequest(publicClient, issued))).body
      const refreshToken = tokens.refresh_token as string

      const answer = await post(proxy, '/revoke', {
        token: refreshToken,
        client_id: otherPublicClient.client_id,
      })
      expect(answer.status).toBe(200)
      expect(await isAccessTokenDenied(proxy.server.deps, jti(tokens.access_token))).toBe(false)

      const refreshed = await post(proxy, '/token', refreshRequest(publicClient, refreshToken))
      expect(refreshed.status).toBe(200)
    })

    it('refuses a body that is not form-encoded with invalid_request', async () => {
      const answer = await post(
        proxy,
        '/revoke',
        {},
        {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token: 'x', client_id: publicClient.client_id }),
        },
      )
      expectError(answer, 400, 'invalid_request')
    })

    it('refuses a confidential client with a wrong secret with 401 invalid_client', async () => {
      const answer = await post(
        proxy,
        '/revoke',
        { token: 'anything' },
        { headers: basic(basicClient.client_id, 'wrong-secret') },
      )
      expectError(answer, 401, 'invalid_client')
      expect(answer.headers.get('www-authenticate')).toMatch(/^Basic /)
    })

    it('answers GET with 405 and Allow', async () => {
      const res = await fetch(`${proxy.url}/revoke`)
      expect(res.status).toBe(405)
      expect(res.headers.get('allow')).toContain('POST')
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(((await res.json()) as Body).error).toBe('method_not_allowed')
    })
  })

  it('never puts a stack trace or a client secret in a response body', async () => {
    // `post` checks every body of this file; these are the inputs most likely to leak.
    const secret = basicClient.client_secret as string
    const answers = [
      await post(proxy, '/token', {}, { body: '%E0%A4%A=broken&grant_type=authorization_code' }),
      await post(
        proxy,
        '/token',
        { grant_type: 'authorization_code' },
        {
          headers: { authorization: `Basic ${secret}` },
        },
      ),
      await post(
        proxy,
        '/token',
        { grant_type: 'refresh_token', refresh_token: secret },
        {
          headers: basic(basicClient.client_id, secret),
        },
      ),
      await post(proxy, '/token', {
        grant_type: 'client_credentials',
        client_id: 'x',
        client_secret: secret,
      }),
      await post(proxy, '/revoke', {
        token: secret,
        client_id: basicClient.client_id,
        client_secret: secret,
      }),
    ]
    for (const answer of answers) {
      expect(JSON.stringify(answer.body)).not.toContain(secret)
      expect(answer.status).toBeLessThan(500)
    }
  })
})

describe('an authorization code past AUTH_CODE_TTL_SECONDS', () => {
  // The memory store keeps the proxy's time: the code's minute passes when the test says so.
  const clock = createTestClock(Math.floor(Date.now() / 1000))
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', clock })
  })
  afterAll(() => proxy.close())

  it('is refused with invalid_grant', async () => {
    const client = await registerPublic(proxy, 'Expiry')
    const issued = await obtainCode(proxy, client)
    clock.advance(proxy.server.config.authCodeTtlSeconds)
    const answer = await post(proxy, '/token', codeRequest(client, issued))
    expectError(answer, 400, 'invalid_grant')
    expect(answer.body.error_description).toBe('the authorization code is invalid or has expired')
  })
})

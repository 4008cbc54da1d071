import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { authorizationUrl, consentFields, pkce, registerClient, signIn } from './support/flow.js'
import { noHang } from './support/hang.js'
import { freePort } from './support/net.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { UpstreamUser } from './support/upstream.js'
import { location, UserAgent } from './support/user-agent.js'

// GET /authorize fails in two phases (RFC 6749 §4.1.2.1): until client_id and
// redirect_uri are trusted the user sees an error page, never a redirect; afterwards every
// error goes back to the client with `error`, `state` and `iss` (RFC 9207).

const WEB_CALLBACK = 'https://app.example.com/cb'

/** Asserts the phase-one answer: a 400 page naming `error`, unframeable, uncached, no redirect. */
async function expectErrorPage(res: Response, error: string): Promise<string> {
  expect(res.status).toBe(400)
  expect(res.headers.get('location')).toBeNull()
  expect(res.headers.get('content-type')).toMatch(/^text\/html/)
  expect(res.headers.get('x-frame-options')).toBe('DENY')
  expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
  expect(res.headers.get('cache-control')).toBe('no-store')
  const html = await res.text()
  expect(html).toContain(`<code id="error-code">${error}</code>`)
  return html
}

/** Asserts a phase-two answer: a redirect to `redirectUri` carrying exactly the error params. */
function expectErrorRedirect(
  res: Response,
  proxy: ProxyUnderTest,
  expected: { redirectUri: string; error: string; state?: string; description?: string },
): void {
  expect(res.status).toBe(302)
  const to = location(res)
  expect(to.origin + to.pathname).toBe(expected.redirectUri)
  expect(Object.fromEntries(to.searchParams)).toEqual({
    error: expected.error,
    error_description: expected.description ?? expect.stringMatching(/\S/),
    ...(expected.state === undefined ? {} : { state: expected.state }),
    iss: proxy.url,
  })
}

/** GET without following redirects, as the browser's first hop. */
function get(url: string | URL): Promise<Response> {
  return fetch(url, { redirect: 'manual' })
}

/**
 * Opens the authorization request, answers the consent page with Allow, and returns where the
 * browser is sent next (the upstream's login, or the client with an error).
 */
async function consent(proxy: ProxyUnderTest, url: URL, agent: UserAgent): Promise<URL> {
  const page = await agent.fetch(url)
  expect(page.status).toBe(200)
  const { requestId, csrfToken } = consentFields(await page.text())
  const answer = await agent.fetch(`${proxy.url}/authorize/consent`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: proxy.url },
    body: new URLSearchParams({ request_id: requestId, csrf_token: csrfToken, decision: 'allow' }),
  })
  return location(answer)
}

describe('GET /authorize', () => {
  let proxy: ProxyUnderTest
  let webClient: string
  let twoCallbacksClient: string
  let loopbackIpClient: string
  let localhostClient: string

  /** A complete, valid request of `webClient`; tests override or delete single parameters. */
  const valid = (overrides: Record<string, string | undefined> = {}) =>
    authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: webClient,
      redirect_uri: WEB_CALLBACK,
      code_challenge: pkce().challenge,
      code_challenge_method: 'S256',
      scope: 'openid profile',
      resource: `${proxy.url}/mcp`,
      state: 'client-state-123',
      ...overrides,
    })

  beforeAll(async () => {
    // Every case of this file signs in from 127.0.0.1: far more than a person's minute.
    proxy = await startProxy({ flavor: 'kinde', env: { AUTHORIZE_RATE_LIMIT: '0' } })
    const register = async (name: string, redirectUris: string[]) =>
      (
        await registerClient(proxy.url, {
          client_name: name,
          redirect_uris: redirectUris,
          token_endpoint_auth_method: 'none',
        })
      ).client_id
    webClient = await register('Web app', [WEB_CALLBACK])
    twoCallbacksClient = await register('Two callbacks', [
      WEB_CALLBACK,
      'https://app.example.com/other-cb',
    ])
    loopbackIpClient = await register('Loopback IP', ['http://127.0.0.1:1234/cb'])
    localhostClient = await register('Localhost', ['http://localhost/cb'])
  })
  afterAll(() => proxy.close())

  describe('before client_id and redirect_uri are trusted: an error page, never a redirect', () => {
    it('refuses a request without client_id', async () => {
      await expectErrorPage(await get(valid({ client_id: undefined })), 'invalid_request')
    })

    it('refuses a repeated client_id', async () => {
      const url = valid()
      url.searchParams.append('client_id', twoCallbacksClient)
      await expectErrorPage(await get(url), 'invalid_request')
    })

    it('refuses an unknown client_id', async () => {
      await expectErrorPage(await get(valid({ client_id: 'never-registered' })), 'invalid_client')
    })

    it.each([
      ['a path that is not registered', 'https://app.example.com/elsewhere'],
      ['another port of a non-loopback https host', 'https://app.example.com:8443/cb'],
      ['plain http for a registered https URI', 'http://app.example.com/cb'],
      ['a trailing slash added', 'https://app.example.com/cb/'],
      ['a query added', 'https://app.example.com/cb?x=1'],
      ['userinfo naming the registered host', 'https://app.example.com@evil.example/cb'],
      [
        'the registered host as userinfo with a port',
        'https://app.example.com:443@evil.example/cb',
      ],
      ['credentials in front of the registered host', 'https://user:pass@app.example.com/cb'],
      ['a backslash confusing the authority', 'https://evil.example\\@app.example.com/cb'],
      ['a fragment', 'https://app.example.com/cb#fragment'],
      ['an empty fragment', 'https://app.example.com/cb#'],
    ])('refuses a redirect_uri with %s', async (_case, redirectUri) => {
      await expectErrorPage(await get(valid({ redirect_uri: redirectUri })), 'invalid_request')
    })

    it.each([
      ['userinfo in front of a loopback host', 'http://user@127.0.0.1:5555/cb'],
      ['a loopback-looking userinfo naming another host', 'http://127.0.0.1:1234@evil.example/cb'],
      ['a fragment on another port', 'http://127.0.0.1:5555/cb#x'],
      ['another loopback host name', 'http://localhost:1234/cb'],
      ['another path', 'http://127.0.0.1:5555/other'],
      // Each parses to the registered URL on another port, but is not the registered string.
      ['a short form of the loopback address', 'http://127.1:5555/cb'],
      ['an upper-case scheme', 'HTTP://127.0.0.1:5555/cb'],
      ['a port with a leading zero', 'http://127.0.0.1:05555/cb'],
      ['dot segments in the path', 'http://127.0.0.1:5555/x/../cb'],
      ['a port out of range', 'http://127.0.0.1:65536/cb'],
    ])('refuses a loopback redirect_uri with %s', async (_case, redirectUri) => {
      const url = valid({ client_id: loopbackIpClient, redirect_uri: redirectUri })
      await expectErrorPage(await get(url), 'invalid_request')
    })

    it('refuses a repeated redirect_uri', async () => {
      const url = valid({ client_id: twoCallbacksClient })
      url.searchParams.append('redirect_uri', 'https://app.example.com/other-cb')
      await expectErrorPage(await get(url), 'invalid_request')
    })

    it('requires redirect_uri when the client registered two', async () => {
      const url = valid({ client_id: twoCallbacksClient, redirect_uri: undefined })
      const html = await expectErrorPage(await get(url), 'invalid_request')
      expect(html).toContain('redirect_uri is required')
    })

    it.each(['https://localhost/mcp-client.json', 'https://127.0.0.1/mcp-client.json'])(
      'refuses a metadata document client_id %s that cannot be fetched with invalid_client',
      async (clientId) => {
        const html = await expectErrorPage(
          await get(valid({ client_id: clientId })),
          'invalid_client',
        )
        expect(html).toMatch(/not a public address|non-public address/)
      },
    )

    it('shows the error page even when the rest of the request is also wrong', async () => {
      const url = authorizationUrl(proxy.url, {
        client_id: webClient,
        redirect_uri: 'https://evil.example/cb',
        response_type: 'token',
        state: 'client-state-123',
      })
      await expectErrorPage(await get(url), 'invalid_request')
    })
  })

  describe('redirect_uri matching that is accepted', () => {
    it('uses the only registered redirect_uri when the request has none', async () => {
      const back = await signIn(proxy, valid({ redirect_uri: undefined }))
      expect(back.origin + back.pathname).toBe(WEB_CALLBACK)
      expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
      expect(back.searchParams.get('state')).toBe('client-state-123')
    })

    it('lets a registered loopback IP redirect URI come back on any port (RFC 8252 §7.3)', async () => {
      const url = valid({ client_id: loopbackIpClient, redirect_uri: 'http://127.0.0.1:5555/cb' })
      const back = await signIn(proxy, url)
      expect(back.origin + back.pathname).toBe('http://127.0.0.1:5555/cb')
      expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
    })

    it('lets http://localhost/cb registered without a port come back on any port', async () => {
      const url = valid({ client_id: localhostClient, redirect_uri: 'http://localhost:49152/cb' })
      const back = await signIn(proxy, url)
      expect(back.origin + back.pathname).toBe('http://localhost:49152/cb')
      expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
    })
  })

  describe('after both are trusted: errors redirect to the client with state and iss', () => {
    it.each([
      ['invalid_request', 'response_type is missing', { response_type: undefined }],
      ['unsupported_response_type', 'response_type is token', { response_type: 'token' }],
      [
        'unsupported_response_type',
        'response_type is code id_token',
        { response_type: 'code id_token' },
      ],
      ['invalid_request', 'code_challenge is missing', { code_challenge: undefined }],
      ['invalid_request', 'code_challenge_method is plain', { code_challenge_method: 'plain' }],
      ['invalid_request', 'code_challenge_method is missing', { code_challenge_method: undefined }],
      ['invalid_request', 'code_challenge is too short', { code_challenge: 'abc' }],
      ['invalid_request', 'code_challenge is too long', { code_challenge: 'a'.repeat(44) }],
      [
        'invalid_request',
        'code_challenge is not base64url',
        { code_challenge: `${'a'.repeat(42)}+` },
      ],
      ['invalid_scope', 'a scope is unknown', { scope: 'openid admin' }],
      [
        'invalid_target',
        'resource names another server',
        { resource: 'https://other.example/mcp' },
      ],
      ['invalid_target', 'resource names another path here', { resource: 'PROXY/other' }],
      [
        'invalid_target',
        'resource names another path with a query',
        { resource: 'PROXY/mcp-admin?x=1' },
      ],
      ['invalid_target', 'resource carries a fragment', { resource: 'PROXY/mcp#frag' }],
      [
        'invalid_target',
        'resource names another server with the MCP path in its query',
        { resource: 'https://other.example/?u=PROXY/mcp' },
      ],
      ['interaction_required', 'prompt is none', { prompt: 'none' }],
      ['interaction_required', 'prompt includes none', { prompt: 'login none' }],
    ])('redirects %s to the client when %s', async (error, _case, overrides) => {
      const params = Object.fromEntries(
        Object.entries(overrides).map(([k, v]) => [k, v?.replace('PROXY', proxy.url)]),
      )
      expectErrorRedirect(await get(valid(params)), proxy, {
        redirectUri: WEB_CALLBACK,
        error,
        state: 'client-state-123',
      })
    })

    it('refuses a repeated scope with invalid_request', async () => {
      const url = valid()
      url.searchParams.append('scope', 'email')
      expectErrorRedirect(await get(url), proxy, {
        redirectUri: WEB_CALLBACK,
        error: 'invalid_request',
        state: 'client-state-123',
        description: 'scope is repeated',
      })
    })

    it('refuses a repeated state with invalid_request and echoes neither value', async () => {
      const url = valid()
      url.searchParams.append('state', 'another-state')
      expectErrorRedirect(await get(url), proxy, {
        redirectUri: WEB_CALLBACK,
        error: 'invalid_request',
        description: 'state is repeated',
      })
    })

    it('omits state from the error redirect when the request had none', async () => {
      const res = await get(valid({ state: undefined, response_type: 'token' }))
      expectErrorRedirect(res, proxy, {
        redirectUri: WEB_CALLBACK,
        error: 'unsupported_response_type',
      })
      expect(location(res).searchParams.has('state')).toBe(false)
    })

    it('completes a request without state, returning the code without state', async () => {
      const back = await signIn(proxy, valid({ state: undefined }))
      expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
      expect(back.searchParams.has('state')).toBe(false)
      expect(back.searchParams.get('iss')).toBe(proxy.url)
    })

    it('accepts the MCP resource with a trailing slash', async () => {
      const res = await get(valid({ resource: `${proxy.url}/mcp/` }))
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('name="request_id"')
    })

    it('accepts the MCP resource with a query, as ChatGPT sends it', async () => {
      const res = await get(valid({ resource: `${proxy.url}/mcp?workspace=w1&v=2` }))
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('name="request_id"')
    })

    it('accepts the MCP resource given twice (RFC 8707 allows several resource parameters)', async () => {
      const url = valid()
      url.searchParams.append('resource', `${proxy.url}/mcp`)
      expect((await get(url)).status).toBe(200)
    })

    it('refuses a second resource naming another server with invalid_target', async () => {
      const url = valid()
      url.searchParams.append('resource', 'https://other.example/mcp')
      expectErrorRedirect(await get(url), proxy, {
        redirectUri: WEB_CALLBACK,
        error: 'invalid_target',
        state: 'client-state-123',
        description: `resource must be ${proxy.url}/mcp`,
      })
    })

    it('refuses an overlong state without echoing it', async () => {
      const res = await get(valid({ state: 's'.repeat(2049) }))
      expectErrorRedirect(res, proxy, {
        redirectUri: WEB_CALLBACK,
        error: 'invalid_request',
        description: 'state is too long',
      })
      expect(location(res).searchParams.has('state')).toBe(false)
    })

    it('answers a consent form once, and keeps nothing in the store until it is answered', async () => {
      const agent = new UserAgent()
      const page = await agent.fetch(valid())
      const { requestId, csrfToken } = consentFields(await page.text())
      // The pending request rides sealed in the form: opaque, and not a key of the store.
      expect(requestId).toMatch(/^[\w-]+\.\.[\w-]+\.[\w-]+\.[\w-]+$/)
      const answer = () =>
        agent.fetch(`${proxy.url}/authorize/consent`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: proxy.url },
          body: new URLSearchParams({
            request_id: requestId,
            csrf_token: csrfToken,
            decision: 'allow',
          }),
        })
      expect(location(await answer()).origin).toBe(proxy.upstream.url)
      const again = await answer()
      expect(again.status).toBe(400)
      expect(await again.text()).toContain('this consent request expired or was already answered')
    })

    it('sends the user back with access_denied when they deny consent', async () => {
      const back = await signIn(proxy, valid(), { decision: 'deny' })
      expect(back.origin + back.pathname).toBe(WEB_CALLBACK)
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'access_denied',
        error_description: 'the user denied the request',
        state: 'client-state-123',
        iss: proxy.url,
      })
    })
  })

  describe('GET /callback from the upstream', () => {
    it('sends access_denied, the client state and iss when the user refuses at the upstream', async () => {
      const agent = new UserAgent()
      const upstreamLogin = await consent(proxy, valid(), agent)
      expect(upstreamLogin.origin).toBe(proxy.upstream.url)
      const state = upstreamLogin.searchParams.get('state') as string
      const callback = new URL('/callback', proxy.url)
      callback.search = new URLSearchParams({
        error: 'access_denied',
        error_description: 'The user cancelled',
        state,
      }).toString()
      const back = location(await agent.fetch(callback))
      expect(back.origin + back.pathname).toBe(WEB_CALLBACK)
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'access_denied',
        error_description: 'the identity provider answered access_denied',
        state: 'client-state-123',
        iss: proxy.url,
      })
    })

    it('forwards an error the upstream itself redirects with', async () => {
      const agent = new UserAgent()
      const upstreamLogin = await consent(proxy, valid(), agent)
      // prompt=none without an upstream session: oidc-provider answers login_required.
      upstreamLogin.searchParams.set('prompt', 'none')
      const callback = await proxy.upstream.loginWith(upstreamLogin.href)
      expect(callback.searchParams.get('error')).toBe('login_required')
      const back = location(await agent.fetch(callback))
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'login_required',
        error_description: 'the identity provider answered login_required',
        state: 'client-state-123',
        iss: proxy.url,
      })
    })

    it('maps an upstream error the client cannot act on to access_denied', async () => {
      const agent = new UserAgent()
      const state = (await consent(proxy, valid(), agent)).searchParams.get('state') as string
      const back = location(
        await agent.fetch(`${proxy.url}/callback?error=invalid_scope&state=${state}`),
      )
      expect(back.searchParams.get('error')).toBe('access_denied')
      expect(back.searchParams.get('state')).toBe('client-state-123')
    })

    it('shows an error page for an unknown state', async () => {
      await expectErrorPage(
        await get(`${proxy.url}/callback?code=abc&state=not-a-state-we-issued`),
        'invalid_request',
      )
    })

    it('shows an error page for a callback without state', async () => {
      await expectErrorPage(await get(`${proxy.url}/callback?code=abc`), 'invalid_request')
    })

    it('shows an error page when the same callback is replayed', async () => {
      const agent = new UserAgent()
      const upstreamLogin = await consent(proxy, valid(), agent)
      const callback = await proxy.upstream.loginWith(upstreamLogin.href)
      const first = location(await agent.fetch(callback))
      expect(first.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
      const html = await expectErrorPage(await agent.fetch(callback), 'invalid_request')
      expect(html).toContain('expired or was already completed')
    })
  })
})

describe('user policy (ALLOWED_EMAIL_DOMAINS, ALLOWED_ORG_CODES, REQUIRED_PERMISSIONS)', () => {
  let proxy: ProxyUnderTest
  let client: string
  const CALLBACK = 'http://127.0.0.1:7001/cb'
  const allowed: UpstreamUser = {
    sub: 'user-ok',
    email: 'ok@acme.test',
    org_code: 'org_acme',
    permissions: ['read:reports'],
  }
  const users: UpstreamUser[] = [
    allowed,
    {
      sub: 'user-other-domain',
      email: 'eve@other.test',
      org_code: 'org_acme',
      permissions: ['read:reports'],
    },
    {
      sub: 'user-other-org',
      email: 'bob@acme.test',
      org_code: 'org_other',
      permissions: ['read:reports'],
    },
    { sub: 'user-no-org', email: 'nina@acme.test', permissions: ['read:reports'] },
    { sub: 'user-no-permission', email: 'pat@acme.test', org_code: 'org_acme', permissions: [] },
  ]

  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      upstream: { users },
      env: {
        ALLOWED_EMAIL_DOMAINS: 'acme.test',
        ALLOWED_ORG_CODES: 'org_acme',
        REQUIRED_PERMISSIONS: 'read:reports',
      },
    })
    client = (
      await registerClient(proxy.url, {
        client_name: 'Policy test',
        redirect_uris: [CALLBACK],
        token_endpoint_auth_method: 'none',
      })
    ).client_id
  })
  afterAll(() => proxy.close())

  const request = () =>
    authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: client,
      redirect_uri: CALLBACK,
      code_challenge: pkce().challenge,
      code_challenge_method: 'S256',
      state: 'policy-state',
    })

  it('lets a user who meets every rule through', async () => {
    const back = await signIn(proxy, request(), { user: allowed.sub })
    expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
  })

  it.each([
    [
      'an email domain that is not allowed',
      'user-other-domain',
      'email addresses at other.test may not use this server',
    ],
    [
      'an organization that is not allowed',
      'user-other-org',
      'organization org_other may not use this server',
    ],
    ['no organization', 'user-no-org', 'membership of an allowed organization is required'],
    [
      'a required permission missing',
      'user-no-permission',
      'missing required permission: read:reports',
    ],
  ])('refuses a user with %s with access_denied', async (_case, user, description) => {
    const back = await signIn(proxy, request(), { user })
    expect(back.origin + back.pathname).toBe(CALLBACK)
    expect(Object.fromEntries(back.searchParams)).toEqual({
      error: 'access_denied',
      error_description: description,
      state: 'policy-state',
      iss: proxy.url,
    })
  })
})

describe('an unreachable or slow upstream', () => {
  const CALLBACK = 'http://127.0.0.1:7002/cb'

  async function registerAndRequest(proxy: ProxyUnderTest): Promise<URL> {
    const { client_id } = await registerClient(proxy.url, {
      client_name: 'Outage test',
      redirect_uris: [CALLBACK],
      token_endpoint_auth_method: 'none',
    })
    return authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id,
      redirect_uri: CALLBACK,
      code_challenge: pkce().challenge,
      code_challenge_method: 'S256',
      state: 'outage-state',
    })
  }

  it('redirects temporarily_unavailable after consent when the upstream is down', async () => {
    // Down since start-up: an upstream discovered once has its endpoints known, and the
    // browser is sent on to them whether they answer or not.
    const proxy = await startProxy({
      flavor: 'kinde',
      env: {
        UPSTREAM_TIMEOUT_SECONDS: '1',
        KINDE_ISSUER_URL: `http://127.0.0.1:${await freePort()}`,
      },
    })
    try {
      const url = await registerAndRequest(proxy)
      // Nothing listens at the issuer: answered, without waiting for anything.
      const back = await noHang(consent(proxy, url, new UserAgent()), 'consent')
      expect(back.origin + back.pathname).toBe(CALLBACK)
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'temporarily_unavailable',
        error_description: 'the identity provider is unavailable; try again shortly',
        state: 'outage-state',
        iss: proxy.url,
      })
    } finally {
      await proxy.close()
    }
  })

  it('redirects temporarily_unavailable from /callback when the upstream went down after login', async () => {
    const proxy = await startProxy({ flavor: 'kinde', env: { UPSTREAM_TIMEOUT_SECONDS: '1' } })
    try {
      const agent = new UserAgent()
      const upstreamLogin = await consent(proxy, await registerAndRequest(proxy), agent)
      const callback = await proxy.upstream.loginWith(upstreamLogin.href)
      await proxy.upstream.close()
      const back = location(await noHang(agent.fetch(callback), '/callback'))
      expect(back.searchParams.get('error')).toBe('temporarily_unavailable')
      expect(back.searchParams.get('state')).toBe('outage-state')
      expect(back.searchParams.get('iss')).toBe(proxy.url)
    } finally {
      await proxy.server.close()
    }
  })

  it('gives up on an upstream token endpoint that never answers after UPSTREAM_TIMEOUT_SECONDS', async () => {
    /** Why each held token request ended: only the proxy's own deadline may end it. */
    const aborts: string[] = []
    // Holds the upstream token request open until the proxy's own deadline aborts it.
    const hangOnTokenEndpoint: typeof fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input))
      if (url.pathname !== '/oauth2/token') return fetch(input, init)
      const signal = init?.signal
      if (!signal)
        throw new Error('the proxy called the upstream token endpoint without a deadline')
      return new Promise<Response>((_resolve, reject) => {
        signal.addEventListener(
          'abort',
          () => {
            aborts.push((signal.reason as Error | undefined)?.name ?? String(signal.reason))
            reject(signal.reason)
          },
          { once: true },
        )
      })
    }
    const proxy = await startProxy({
      flavor: 'kinde',
      env: { UPSTREAM_TIMEOUT_SECONDS: '1' },
      fetch: hangOnTokenEndpoint,
    })
    try {
      const agent = new UserAgent()
      const upstreamLogin = await consent(proxy, await registerAndRequest(proxy), agent)
      const callback = await proxy.upstream.loginWith(upstreamLogin.href)
      const back = location(await noHang(agent.fetch(callback), '/callback'))
      // One request, ended by UPSTREAM_TIMEOUT_SECONDS (AbortSignal.timeout), nothing else.
      expect(aborts).toEqual(['TimeoutError'])
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'temporarily_unavailable',
        error_description: 'the identity provider is unavailable; try again shortly',
        state: 'outage-state',
        iss: proxy.url,
      })
    } finally {
      await proxy.close()
    }
  })
})

import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { type RunningServer, startServer } from '../src/server.js'
import { createTestClock } from './support/clock.js'
import {
  authorizationUrl,
  consentFields,
  formPost,
  pkce,
  registerClient,
  signIn,
} from './support/flow.js'
import { HANG_MS, noHang } from './support/hang.js'
import {
  accessTokenOf,
  initializeMessage,
  mcpRequest,
  openSession,
  signedInProvider,
  toolCallMessage,
} from './support/mcp.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import { type RedisServer, startRedisServer } from './support/redis-server.js'
import { location, UserAgent } from './support/user-agent.js'

// Faults around the proxy: Redis killed or frozen under a running proxy, the proxy itself
// restarted in the middle of a sign-in, and an upstream that is slow or answers garbage.
// Every failure must be a clean OAuth answer, never a 500 or a hang, and the proxy must
// recover on its own once the fault is gone. Answers are awaited through a hang detector,
// not timed: a test that measures milliseconds fails on a loaded machine, not on a bug.

const AGENT = { client_id: 'agent-faults', client_secret: 'agent-faults-secret', org_code: 'org_f' }
const REDIRECT_URI = 'http://127.0.0.1:7401/cb'

interface Answer {
  status: number
  headers: Headers
  text: string
}

/** Fetches, reading the whole body; fails if the proxy never answers. */
async function answered(request: Promise<Response>): Promise<Answer> {
  const res = await noHang(request, 'the proxy')
  const text = await noHang(res.text(), 'the response body')
  return { status: res.status, headers: res.headers, text }
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

function clientCredentials(url: string): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basic(AGENT.client_id, AGENT.client_secret),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  })
}

function register(url: string): Promise<Response> {
  return fetch(`${url}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Faults',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
    }),
  })
}

/** Expects the outage answer: 503 `temporarily_unavailable` with `Retry-After`. */
function expectUnavailable(answer: Answer): void {
  expect({ status: answer.status, body: JSON.parse(answer.text) }).toEqual({
    status: 503,
    body: { error: 'temporarily_unavailable', error_description: expect.any(String) },
  })
  expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
}

describe('Redis going away under a running proxy', () => {
  // Time stands still in the proxy unless the test moves it: the verifier's cache window
  // ends when the test says so, not when the machine gets round to it.
  const clock = createTestClock(Math.floor(Date.now() / 1000))
  let redis: RedisServer
  let proxy: ProxyUnderTest
  let mcpUrl: string

  beforeAll(async () => {
    // Persisted (append-only, fsync per write), so stop and start keep the data like a
    // restarted production Redis would, and recovery can be asserted for existing families.
    redis = await startRedisServer({ persist: true })
    proxy = await startProxy({
      flavor: 'kinde',
      clock,
      env: { REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'faults:', REDIS_TIMEOUT_MS: '500' },
      upstream: { m2mClients: [AGENT] },
    })
    mcpUrl = `${proxy.url}/mcp`
  })
  afterAll(async () => {
    await proxy?.close()
    await redis?.dispose()
  })

  it('answers 503 while Redis is down, serves tokens verified just before, and recovers when it returns', async () => {
    const provider = await signedInProvider(proxy)
    const clientId = provider.information?.client_id as string
    const sessionToken = accessTokenOf(provider)
    // The gate caches this token's verification from here, for its TTL (5 s).
    const sessionId = await openSession(mcpUrl, sessionToken)
    const call = (token = sessionToken) =>
      answered(mcpRequest(mcpUrl, { token, sessionId, body: toolCallMessage('whoami') }))
    expect((await call()).status).toBe(200)
    // A second family member, never shown to /mcp: nothing about it is cached there.
    const rotated = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token: provider.saved?.refresh_token as string,
      client_id: clientId,
    })
    expect(rotated.status).toBe(200)
    const next = (await rotated.json()) as { access_token: string; refresh_token: string }
    const refresh = () =>
      answered(
        formPost(proxy.url, {
          grant_type: 'refresh_token',
          refresh_token: next.refresh_token,
          client_id: clientId,
        }),
      )
    const seen: number[] = []
    const note = (answer: Answer) => {
      seen.push(answer.status)
      return answer
    }

    await redis.stop()

    // The bearer gate answers a token it verified within its cache TTL (5 s) from memory;
    // the session lives in this process, so the tool call goes through.
    const cached = note(await call())
    expect(cached.status).toBe(200)
    expect(cached.text).toContain('"result"')

    // Anything that needs the store is refused as temporarily unavailable, fast.
    expectUnavailable(note(await call(next.access_token)))
    expectUnavailable(note(await answered(register(proxy.url))))
    expectUnavailable(note(await refresh()))
    expectUnavailable(note(await answered(clientCredentials(proxy.url))))
    expectUnavailable(
      note(
        await answered(
          formPost(proxy.url, { token: next.refresh_token, client_id: clientId }, '/revoke'),
        ),
      ),
    )
    const authorize = note(
      await answered(
        fetch(
          authorizationUrl(proxy.url, {
            response_type: 'code',
            client_id: clientId,
            redirect_uri: provider.redirectUrl,
            code_challenge: pkce().challenge,
            code_challenge_method: 'S256',
          }),
          { redirect: 'manual' },
        ),
      ),
    )
    expectUnavailable(authorize)
    const ready = note(await answered(fetch(`${proxy.url}/readyz`)))
    expect([ready.status, JSON.parse(ready.text)]).toEqual([
      503,
      // The upstream answers: readiness is the store's alone.
      { status: 'unavailable', reason: 'store does not answer', upstream: 'ok' },
    ])
    // Liveness and discovery need no store (the keys are held in memory between reloads).
    for (const path of [
      '/healthz',
      '/.well-known/oauth-authorization-server',
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/jwks.json',
    ]) {
      expect(note(await answered(fetch(`${proxy.url}${path}`))).status).toBe(200)
    }

    // Past the verifier's TTL even the cached token needs the deny-list, and is refused.
    clock.advance(5)
    expectUnavailable(note(await call()))

    await redis.start()
    // ioredis reconnects on its own (retrying at most every 2 s): no restart of the proxy.
    await expect
      .poll(async () => note(await answered(fetch(`${proxy.url}/readyz`))).status, {
        timeout: HANG_MS,
        interval: 100,
      })
      .toBe(200)

    // Nothing was lost and nothing needs a restart: the family refreshes, both tokens work,
    // the session goes on, the registration stands, new clients and agents get through.
    const after = note(await refresh())
    expect(after.status).toBe(200)
    expect(JSON.parse(after.text).refresh_token).not.toBe(next.refresh_token)
    expect(note(await call()).status).toBe(200)
    expect(note(await call(next.access_token)).status).toBe(200)
    expect(note(await answered(register(proxy.url))).status).toBe(201)
    expect(note(await answered(clientCredentials(proxy.url))).status).toBe(200)
    const back = await signIn(
      proxy,
      authorizationUrl(proxy.url, {
        response_type: 'code',
        client_id: clientId,
        redirect_uri: provider.redirectUrl,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
      }),
    )
    expect(back.searchParams.get('code')).toBeTruthy()

    expect(seen.filter((status) => status >= 500 && status !== 503)).toEqual([])
  })

  it('answers 503 within the command timeout while Redis hangs, and recovers when it wakes', async () => {
    const provider = await signedInProvider(proxy, { port: 43115 })
    const clientId = provider.information?.client_id as string
    const refreshToken = provider.saved?.refresh_token as string

    redis.pause()
    try {
      // Frozen, not gone: the connection stays open and only the command timeout ends a wait.
      const [ready, ...answers] = await Promise.all([
        answered(fetch(`${proxy.url}/readyz`)),
        answered(register(proxy.url)),
        answered(
          formPost(proxy.url, {
            grant_type: 'refresh_token',
            refresh_token: refreshToken,
            client_id: clientId,
          }),
        ),
        answered(clientCredentials(proxy.url)),
        answered(
          mcpRequest(`${proxy.url}/mcp`, {
            token: accessTokenOf(provider),
            body: initializeMessage(),
          }),
        ),
      ])
      // REDIS_TIMEOUT_MS is 500 here: well inside the default 2 s a hang would otherwise cost.
      // Only the command timeout (REDIS_TIMEOUT_MS) can end these waits: each is answered.
      for (const answer of answers) expectUnavailable(answer)
      expect(ready?.status).toBe(503)
    } finally {
      redis.resume()
    }

    await expect
      .poll(async () => (await fetch(`${proxy.url}/readyz`)).status, { timeout: HANG_MS })
      .toBe(200)
    const refreshed = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    })
    expect(refreshed.status).toBe(200)
  })
})

describe('a proxy restarted mid-flow (Redis store)', () => {
  let proxy: ProxyUnderTest
  let current: RunningServer

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', store: 'redis' })
    current = proxy.server
  })
  afterAll(async () => {
    await current?.close()
    await proxy?.close()
  })

  /** Stops the proxy process's server and starts a new one: same port, environment, store. */
  async function restart(): Promise<void> {
    await current.close()
    current = await startServer(loadConfig(proxy.env), { logger: pino({ level: 'silent' }) })
    expect(current.url).toBe(proxy.url)
  }

  async function registerPublic(): Promise<string> {
    const client = await registerClient(proxy.url, {
      client_name: 'Restarts',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
    })
    return client.client_id
  }

  function request(clientId: string, challenge: string): URL {
    return authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'restart',
    })
  }

  function exchange(clientId: string, code: string, verifier: string) {
    return formPost(proxy.url, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
    })
  }

  it('redeems a code issued before a restart, and keeps the registration and the family', async () => {
    const clientId = await registerPublic()
    const { verifier, challenge } = pkce()
    const back = await signIn(proxy, request(clientId, challenge))
    const code = back.searchParams.get('code') as string
    expect(code).toBeTruthy()

    await restart()
    const exchanged = await exchange(clientId, code, verifier)
    expect(exchanged.status).toBe(200)
    const tokens = (await exchanged.json()) as { access_token: string; refresh_token: string }

    await restart()
    // Tokens from the previous process: the access token verifies, the refresh token rotates.
    const opened = await mcpRequest(`${proxy.url}/mcp`, {
      token: tokens.access_token,
      body: initializeMessage(),
    })
    expect(opened.status).toBe(200)
    await opened.body?.cancel()
    const refreshed = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: clientId,
    })
    expect(refreshed.status).toBe(200)
    // The registration stands: the client signs in again without registering.
    const again = await signIn(proxy, request(clientId, pkce().challenge))
    expect(again.searchParams.get('code')).toBeTruthy()
  })

  it('completes a sign-in that restarts interrupted at the consent page and at the IdP', async () => {
    const clientId = await registerPublic()
    const { verifier, challenge } = pkce()
    const agent = new UserAgent()
    const page = await agent.fetch(request(clientId, challenge))
    expect(page.status).toBe(200)
    const { requestId, csrfToken } = consentFields(await page.text())

    await restart()
    const consented = await agent.fetch(`${proxy.url}/authorize/consent`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: proxy.url },
      body: new URLSearchParams({
        request_id: requestId,
        csrf_token: csrfToken,
        decision: 'allow',
      }),
    })
    const toUpstream = location(consented)
    expect(toUpstream.origin).toBe(new URL(proxy.upstream.url).origin)
    const callback = await proxy.upstream.loginWith(toUpstream.href)

    // The upstream transaction (state, nonce, PKCE verifier) waits in the store.
    await restart()
    const back = location(await agent.fetch(callback))
    expect(back.origin + back.pathname).toBe(REDIRECT_URI)
    const code = back.searchParams.get('code')
    expect(code).toBeTruthy()
    expect((await exchange(clientId, code as string, verifier)).status).toBe(200)
  })
})

type Fault = 'text' | 'bad-json' | 'html-502' | 'no-access-token' | 'invalid-grant' | 'hang'

/**
 * The proxy's outbound fetch with the upstream token endpoint replaced by `fault` while one is
 * set; everything else (discovery, JWKS, userinfo) reaches the real upstream.
 */
function faultyTokenEndpoint() {
  let fault: Fault | undefined
  const aborts: string[] = []
  const respond = (kind: Fault, signal: AbortSignal | null | undefined): Promise<Response> => {
    switch (kind) {
      case 'text':
        return Promise.resolve(
          new Response('not json', { headers: { 'content-type': 'text/plain' } }),
        )
      case 'bad-json':
        return Promise.resolve(
          new Response('{"access_token": ', { headers: { 'content-type': 'application/json' } }),
        )
      case 'html-502':
        return Promise.resolve(
          new Response('<html><body><h1>502 Bad Gateway</h1></body></html>', {
            status: 502,
            headers: { 'content-type': 'text/html' },
          }),
        )
      case 'no-access-token':
        return Promise.resolve(Response.json({ token_type: 'Bearer', expires_in: 3600 }))
      case 'invalid-grant':
        return Promise.resolve(
          Response.json(
            { error: 'invalid_grant', error_description: 'refresh token revoked' },
            { status: 400 },
          ),
        )
      case 'hang':
        // Never answers: only the proxy's own deadline ends the request.
        return new Promise<Response>((_resolve, reject) => {
          if (!signal) throw new Error('the proxy called the token endpoint without a deadline')
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
  }
  const wrapped: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    if (fault && url.pathname === '/oauth2/token') return respond(fault, init?.signal)
    return fetch(input, init)
  }
  return {
    fetch: wrapped,
    set: (next: Fault | undefined) => {
      fault = next
    },
    /** Why each hung request was aborted (the abort reason's name). */
    aborts: () => [...aborts],
  }
}

describe('an upstream token endpoint that is slow or answers garbage', () => {
  const upstream = faultyTokenEndpoint()
  let proxy: ProxyUnderTest
  let clientId: string

  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      env: { UPSTREAM_TIMEOUT_SECONDS: '1', TOKEN_RATE_LIMIT: '0' },
      upstream: { m2mClients: [AGENT] },
      fetch: upstream.fetch,
    })
    ;({ client_id: clientId } = await registerClient(proxy.url, {
      client_name: 'Garbage',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
    }))
  })
  afterAll(() => proxy?.close())

  /** Consent and upstream login; returns the agent and the callback the upstream sent it to. */
  async function upToCallback() {
    const { verifier, challenge } = pkce()
    const agent = new UserAgent()
    const page = await agent.fetch(
      authorizationUrl(proxy.url, {
        response_type: 'code',
        client_id: clientId,
        redirect_uri: REDIRECT_URI,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        state: 'garbage',
      }),
    )
    const { requestId, csrfToken } = consentFields(await page.text())
    const consented = await agent.fetch(`${proxy.url}/authorize/consent`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: proxy.url },
      body: new URLSearchParams({
        request_id: requestId,
        csrf_token: csrfToken,
        decision: 'allow',
      }),
    })
    const callback = await proxy.upstream.loginWith(location(consented).href)
    return { agent, callback, verifier }
  }

  /** A fresh family's refresh token. */
  async function refreshToken(): Promise<string> {
    const { agent, callback, verifier } = await upToCallback()
    const code = location(await agent.fetch(callback)).searchParams.get('code') as string
    const res = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
    })
    expect(res.status).toBe(200)
    return ((await res.json()) as { refresh_token: string }).refresh_token
  }

  const refresh = (token: string) =>
    answered(
      formPost(proxy.url, {
        grant_type: 'refresh_token',
        refresh_token: token,
        client_id: clientId,
      }),
    )

  const GARBAGE: Fault[] = ['text', 'bad-json', 'html-502', 'no-access-token']

  it.each(GARBAGE)(
    'sends the user back with temporarily_unavailable from /callback (%s)',
    async (fault) => {
      const { agent, callback } = await upToCallback()
      upstream.set(fault)
      let answer: Response
      try {
        answer = await agent.fetch(callback)
      } finally {
        upstream.set(undefined)
      }
      expect(answer.status).toBe(302)
      const back = location(answer)
      expect(back.origin + back.pathname).toBe(REDIRECT_URI)
      expect(Object.fromEntries(back.searchParams)).toEqual({
        error: 'temporarily_unavailable',
        error_description: 'the identity provider is unavailable; try again shortly',
        state: 'garbage',
        iss: proxy.url,
      })
    },
  )

  it.each(GARBAGE)('answers a refresh with 503 and keeps the family (%s)', async (fault) => {
    const token = await refreshToken()
    upstream.set(fault)
    let failed: Answer
    try {
      failed = await refresh(token)
    } finally {
      upstream.set(undefined)
    }
    expectUnavailable(failed)
    // Garbage is no verdict on the session: the same token refreshes once the upstream behaves.
    expect((await refresh(token)).status).toBe(200)
  })

  it('ends the family when the upstream itself answers invalid_grant to a refresh', async () => {
    const token = await refreshToken()
    upstream.set('invalid-grant')
    let refused: Answer
    try {
      refused = await refresh(token)
    } finally {
      upstream.set(undefined)
    }
    expect([refused.status, JSON.parse(refused.text).error]).toEqual([400, 'invalid_grant'])
    expect((await refresh(token)).status).toBe(400)
  })

  it.each(GARBAGE)('answers client_credentials with 503 (%s)', async (fault) => {
    upstream.set(fault)
    try {
      expectUnavailable(await answered(clientCredentials(proxy.url)))
    } finally {
      upstream.set(undefined)
    }
    expect((await clientCredentials(proxy.url)).status).toBe(200)
  })

  it('gives up on a token endpoint that never answers after UPSTREAM_TIMEOUT_SECONDS', async () => {
    const token = await refreshToken()
    upstream.set('hang')
    try {
      const [refreshed, agent] = await Promise.all([
        refresh(token),
        answered(clientCredentials(proxy.url)),
      ])
      for (const answer of [refreshed, agent]) expectUnavailable(answer)
      // Ended by the proxy's own deadline (UPSTREAM_TIMEOUT_SECONDS), not by anything else.
      expect(upstream.aborts()).toEqual(['TimeoutError', 'TimeoutError'])
    } finally {
      upstream.set(undefined)
    }
    expect((await refresh(token)).status).toBe(200)
  })
})

import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sha256 } from '../src/crypto.js'
import { validateClientMetadata } from '../src/oauth/client-metadata.js'
import { createClients } from '../src/oauth/clients.js'
import { createTestApp, type TestApp } from './support/app.js'
import { createTestRedisStore, REDIS_URL } from './support/redis.js'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp()
})

function register(body: unknown, init: { app?: TestApp; headers?: Record<string, string> } = {}) {
  return (init.app ?? t).app.request('/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

const LOOPBACK_CLIENT = {
  client_name: 'MCP Inspector',
  redirect_uris: ['http://localhost:6274/oauth/callback'],
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
}

describe('POST /register (RFC 7591)', () => {
  it('registers a public native client with a loopback redirect URI', async () => {
    const res = await register(LOOPBACK_CLIENT)
    expect(res.status).toBe(201)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = await res.json()
    expect(body).toEqual({
      client_id: expect.stringMatching(/^[\w-]{22}$/),
      client_id_issued_at: Math.floor(t.clock.now()),
      client_name: 'MCP Inspector',
      redirect_uris: ['http://localhost:6274/oauth/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'native',
    })
  })

  it.each(['client_secret_basic', 'client_secret_post'])(
    'registers a confidential %s client and returns its secret once',
    async (method) => {
      const res = await register({
        client_name: 'Claude',
        redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
        token_endpoint_auth_method: method,
      })
      expect(res.status).toBe(201)
      const body = (await res.json()) as Record<string, unknown>
      expect(body).toMatchObject({
        token_endpoint_auth_method: method,
        application_type: 'web',
        client_secret_expires_at: 0,
        grant_types: ['authorization_code', 'refresh_token'],
      })
      expect(body.client_secret).toMatch(/^[\w-]{43}$/)
      const stored = await t.store.get<Record<string, unknown>>(`client:${body.client_id}`)
      expect(stored?.clientSecretHash).toBe(sha256(body.client_secret as string))
      expect(JSON.stringify(stored)).not.toContain(body.client_secret as string)
    },
  )

  it('defaults to client_secret_basic as RFC 7591 §2 says', async () => {
    const body = await (await register({ redirect_uris: ['https://app.example.com/cb'] })).json()
    expect(body).toMatchObject({
      token_endpoint_auth_method: 'client_secret_basic',
      client_secret: expect.any(String),
    })
  })

  it.each([
    ['http://localhost/callback', 'native'],
    ['http://localhost:33418/callback', 'native'],
    ['http://127.0.0.1:8080/oauth/callback', 'native'],
    ['http://[::1]:9000/cb', 'native'],
    ['cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback', 'native'],
    ['vscode://vscode.github-authentication/did-authenticate', 'native'],
    ['https://claude.ai/api/mcp/auth_callback', 'web'],
  ])('accepts %s and infers a %s client', async (uri, type) => {
    const res = await register({ redirect_uris: [uri], token_endpoint_auth_method: 'none' })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ redirect_uris: [uri], application_type: type })
  })

  it('accepts an explicit native client with an https redirect URI', async () => {
    const res = await register({
      redirect_uris: ['https://app.example.com/cb'],
      application_type: 'native',
      token_endpoint_auth_method: 'none',
    })
    expect(await res.json()).toMatchObject({ application_type: 'native' })
  })

  it('ignores metadata it does not understand and never stores a client-chosen id or secret', async () => {
    const res = await register({
      ...LOOPBACK_CLIENT,
      client_id: 'chosen',
      client_secret: 'chosen',
      jwks: {},
      extra: 1,
    })
    const body = (await res.json()) as Record<string, unknown>
    expect(body.client_id).not.toBe('chosen')
    expect(body).not.toHaveProperty('extra')
    expect(body).not.toHaveProperty('client_secret')
  })

  it.each([
    [
      { redirect_uris: ['javascript:alert(1)'] },
      'invalid_redirect_uri',
      'redirect_uris: javascript:alert(1) must not use the javascript: scheme',
    ],
    [
      { redirect_uris: ['data:text/html,hi'] },
      'invalid_redirect_uri',
      'redirect_uris: data:text/html,hi must not use the data: scheme',
    ],
    [
      { redirect_uris: ['file:///etc/passwd'] },
      'invalid_redirect_uri',
      'redirect_uris: file:///etc/passwd must not use the file: scheme',
    ],
    [
      { redirect_uris: ['https://app.example.com/cb#frag'] },
      'invalid_redirect_uri',
      'redirect_uris: https://app.example.com/cb#frag must not contain a fragment',
    ],
    [
      { redirect_uris: ['http://app.example.com/cb'] },
      'invalid_redirect_uri',
      'redirect_uris: http://app.example.com/cb must use https (plain http only on loopback)',
    ],
    [
      { redirect_uris: ['https://good.example@evil.example/cb'] },
      'invalid_redirect_uri',
      'redirect_uris: https://good.example@evil.example/cb must not contain user credentials',
    ],
    [
      // RFC 6749 §5.2 keeps a backslash out of error_description: the echo shows `?`.
      { redirect_uris: ['https://good.example\\@evil.example/cb'] },
      'invalid_redirect_uri',
      'redirect_uris: https://good.example?@evil.example/cb must not contain whitespace, control characters or backslashes',
    ],
    [
      { redirect_uris: ['/relative/cb'] },
      'invalid_redirect_uri',
      'redirect_uris: /relative/cb is not an absolute URI',
    ],
    [
      { redirect_uris: ['http://localhost:3000/cb'], application_type: 'web' },
      'invalid_redirect_uri',
      'redirect_uris: http://localhost:3000/cb web clients must not use loopback redirect URIs',
    ],
    [
      { redirect_uris: ['https://localhost/cb'], application_type: 'web' },
      'invalid_redirect_uri',
      'redirect_uris: https://localhost/cb web clients must not use loopback redirect URIs',
    ],
    [
      { redirect_uris: ['cursor://cb'], application_type: 'web' },
      'invalid_redirect_uri',
      'redirect_uris: cursor://cb web clients must use https redirect URIs',
    ],
    [{}, 'invalid_redirect_uri', 'redirect_uris: is required'],
    [
      { redirect_uris: [] },
      'invalid_redirect_uri',
      'redirect_uris: must list at least one redirect URI',
    ],
    [
      { redirect_uris: 'https://a.example/cb' },
      'invalid_redirect_uri',
      'redirect_uris: Invalid input: expected array, received string',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], token_endpoint_auth_method: 'private_key_jwt' },
      'invalid_client_metadata',
      'jwks_uri: private_key_jwt needs the client keys, in jwks_uri or jwks',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], token_endpoint_auth_method: 'tls_client_auth' },
      'invalid_client_metadata',
      'token_endpoint_auth_method: must be none, client_secret_basic, client_secret_post or private_key_jwt',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], grant_types: ['implicit'] },
      'invalid_client_metadata',
      'grant_types: unsupported grant type implicit',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], grant_types: ['client_credentials'] },
      'invalid_client_metadata',
      'grant_types: client_credentials is for the upstream M2M applications, not registered clients',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], grant_types: ['refresh_token'] },
      'invalid_client_metadata',
      'grant_types: must include authorization_code (refresh_token alone cannot obtain a first token)',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], response_types: ['token'] },
      'invalid_client_metadata',
      "response_types: only 'code' is supported",
    ],
    [
      { redirect_uris: ['https://a.example/cb'], application_type: 'desktop' },
      'invalid_client_metadata',
      'application_type: must be native or web',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], client_uri: 'javascript:alert(1)' },
      'invalid_client_metadata',
      'client_uri: must be an https URL',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], logo_uri: 'http://a.example/logo.png' },
      'invalid_client_metadata',
      'logo_uri: must be an https URL',
    ],
    [
      { redirect_uris: ['https://a.example/cb'], client_name: 'x'.repeat(201) },
      'invalid_client_metadata',
      'client_name: Too big: expected string to have <=200 characters',
    ],
    [[LOOPBACK_CLIENT], 'invalid_client_metadata', 'the request body must be a JSON object'],
  ])('rejects %j with %s', async (body, error, description) => {
    const res = await register(body)
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toEqual({ error, error_description: description })
  })

  it('rejects a body that is not JSON', async () => {
    const res = await register('{"redirect_uris":')
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'invalid_client_metadata',
      error_description: 'the request body is not valid JSON',
    })
  })

  it('rejects a form-encoded body', async () => {
    const res = await register('redirect_uris=https://a.example/cb', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'invalid_client_metadata',
      error_description: 'the request body must be JSON (Content-Type: application/json)',
    })
  })

  it('refuses a body over 16 KiB with 413', async () => {
    const res = await register({ ...LOOPBACK_CLIENT, padding: 'x'.repeat(17 * 1024) })
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  })

  it('answers GET with 405 and a CORS preflight with 204', async () => {
    const get = await t.app.request('/register')
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST, OPTIONS')
    const preflight = await t.app.request('/register', {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:6274',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*')
  })

  it('gives identical public registrations one client id instead of piling them up', async () => {
    const a = (await (await register(LOOPBACK_CLIENT)).json()) as { client_id: string }
    const b = (await (await register(LOOPBACK_CLIENT)).json()) as { client_id: string }
    const other = (await (await register({ ...LOOPBACK_CLIENT, client_name: 'Other' })).json()) as {
      client_id: string
    }
    expect(b.client_id).toBe(a.client_id)
    expect(other.client_id).not.toBe(a.client_id)
  })

  it('gives each confidential registration its own id and secret', async () => {
    const body = {
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      token_endpoint_auth_method: 'client_secret_post',
    }
    const a = (await (await register(body)).json()) as Record<string, string>
    const b = (await (await register(body)).json()) as Record<string, string>
    expect(a.client_id).not.toBe(b.client_id)
    expect(a.client_secret).not.toBe(b.client_secret)
  })
})

describe('registration lifetime', () => {
  it('forgets a registration never used within a day, keeps a used one for the idle TTL', async () => {
    const app = await createTestApp()
    const clients = createClients(app.deps)
    const { client: unused } = await clients.register(
      validateClientMetadata({ redirect_uris: ['https://a.example/cb'] }),
    )
    const { client: used } = await clients.register(
      validateClientMetadata({ redirect_uris: ['https://b.example/cb'] }),
    )
    await clients.touch(used)
    app.clock.advance(86_401)
    expect(await clients.find(unused.clientId)).toBeUndefined()
    expect(await clients.find(used.clientId)).toMatchObject({ clientId: used.clientId })
    app.clock.advance(app.config.clientIdleTtlSeconds)
    expect(await clients.find(used.clientId)).toBeUndefined()
  })

  it('serves static clients from configuration with their secret hashed', async () => {
    const app = await createTestApp({
      env: {
        STATIC_CLIENTS: JSON.stringify([
          {
            client_id: 'first-party',
            client_secret: 'sesame',
            redirect_uris: ['https://app.example.com/cb'],
          },
        ]),
      },
    })
    const client = await createClients(app.deps).find('first-party')
    expect(client).toMatchObject({
      source: 'static',
      clientSecretHash: sha256('sesame'),
      tokenEndpointAuthMethod: 'client_secret_basic',
    })
  })
})

describe('registration rate limit', () => {
  it('answers 429 with Retry-After past REGISTER_RATE_LIMIT a minute per IP, and recovers next minute', async () => {
    const app = await createTestApp({ env: { REGISTER_RATE_LIMIT: '2', TRUST_PROXY: 'true' } })
    const from = (ip: string) => ({ app, headers: { 'x-forwarded-for': `203.0.113.9, ${ip}` } })
    expect((await register(LOOPBACK_CLIENT, from('198.51.100.1'))).status).toBe(201)
    expect((await register(LOOPBACK_CLIENT, from('198.51.100.1'))).status).toBe(201)
    const limited = await register(LOOPBACK_CLIENT, from('198.51.100.1'))
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await limited.json()).toMatchObject({ error: 'temporarily_unavailable' })
    expect((await register(LOOPBACK_CLIENT, from('198.51.100.2'))).status).toBe(201)
    app.clock.advance(60)
    expect((await register(LOOPBACK_CLIENT, from('198.51.100.1'))).status).toBe(201)
  })

  it('is off at 0', async () => {
    const app = await createTestApp({ env: { REGISTER_RATE_LIMIT: '0' } })
    for (let i = 0; i < 5; i++) expect((await register(LOOPBACK_CLIENT, { app })).status).toBe(201)
  })
})

describe('registration on Redis', () => {
  let redisApp: TestApp
  let prefix: string
  beforeAll(async () => {
    const store = await createTestRedisStore('register')
    prefix = store.prefix
    redisApp = await createTestApp({ store })
  })
  afterAll(() => redisApp.store.close())

  it('keeps only the hash of a client secret in Redis', async () => {
    const body = (await (
      await register(
        {
          redirect_uris: ['https://a.example/cb'],
          token_endpoint_auth_method: 'client_secret_post',
        },
        { app: redisApp },
      )
    ).json()) as Record<string, string>
    const redis = new Redis(REDIS_URL)
    try {
      const raw = await redis.get(`${prefix}client:${body.client_id}`)
      expect(raw).toContain(sha256(body.client_secret as string))
      expect(raw).not.toContain(body.client_secret)
      expect(await redis.pttl(`${prefix}client:${body.client_id}`)).toBeGreaterThan(0)
    } finally {
      redis.disconnect()
    }
    const found = await createClients(redisApp.deps).find(body.client_id as string)
    expect(found).toMatchObject({
      clientId: body.client_id,
      tokenEndpointAuthMethod: 'client_secret_post',
    })
  })
})

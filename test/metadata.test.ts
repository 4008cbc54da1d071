import { beforeAll, describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/store/redis.js'
import { createTestApp, type TestApp } from './support/app.js'
import { startRedisServer } from './support/redis-server.js'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp({ env: { SCOPES: 'openid profile email tools:read' } })
})

const ISSUER = 'https://mcp.example.test'

describe('protected-resource metadata (RFC 9728)', () => {
  it.each(['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp'])(
    'serves the MCP resource at %s',
    async (path) => {
      const res = await t.app.request(path)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      expect(await res.json()).toEqual({
        resource: `${ISSUER}/mcp`,
        authorization_servers: [ISSUER],
        scopes_supported: ['openid', 'profile', 'email', 'tools:read'],
        bearer_methods_supported: ['header'],
        resource_name: 'MCP server',
        dpop_signing_alg_values_supported: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
        dpop_bound_access_tokens_required: false,
      })
    },
  )
})

describe('authorization-server metadata (RFC 8414, OIDC Discovery)', () => {
  it.each(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])(
    'serves every field at %s',
    async (path) => {
      const res = await t.app.request(path)
      expect(res.status).toBe(200)
      const body = await res.json()
      expect(body).toEqual({
        issuer: ISSUER,
        authorization_endpoint: `${ISSUER}/authorize`,
        token_endpoint: `${ISSUER}/token`,
        registration_endpoint: `${ISSUER}/register`,
        revocation_endpoint: `${ISSUER}/revoke`,
        jwks_uri: `${ISSUER}/.well-known/jwks.json`,
        response_types_supported: ['code'],
        response_modes_supported: ['query'],
        grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: [
          'none',
          'client_secret_basic',
          'client_secret_post',
          'private_key_jwt',
        ],
        token_endpoint_auth_signing_alg_values_supported: [
          'ES256',
          'ES384',
          'RS256',
          'PS256',
          'EdDSA',
        ],
        revocation_endpoint_auth_methods_supported: [
          'none',
          'client_secret_basic',
          'client_secret_post',
          'private_key_jwt',
        ],
        revocation_endpoint_auth_signing_alg_values_supported: [
          'ES256',
          'ES384',
          'RS256',
          'PS256',
          'EdDSA',
        ],
        scopes_supported: ['openid', 'profile', 'email', 'tools:read', 'offline_access'],
        client_id_metadata_document_supported: true,
        authorization_response_iss_parameter_supported: true,
        resource_indicators_supported: true,
        dpop_signing_alg_values_supported: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
      })
    },
  )

  it('has an issuer equal to the URL the well-known path was derived from (RFC 8414 §3.3)', async () => {
    const body = (await (
      await t.app.request('/.well-known/oauth-authorization-server')
    ).json()) as { issuer: string }
    expect(new URL('/.well-known/oauth-authorization-server', body.issuer).href).toBe(
      `${ISSUER}/.well-known/oauth-authorization-server`,
    )
  })

  it('says DPoP-bound tokens are required when DPOP_REQUIRED is set (RFC 9449 §5.1)', async () => {
    const strict = await createTestApp({ env: { DPOP_REQUIRED: 'true' } })
    const prm = await (await strict.app.request('/.well-known/oauth-protected-resource/mcp')).json()
    expect(prm).toMatchObject({ dpop_bound_access_tokens_required: true })
  })

  it('reports client_id_metadata_document_supported false when CIMD is off', async () => {
    const off = await createTestApp({ env: { CLIENT_ID_METADATA_DOCUMENTS: 'false' } })
    const body = await (await off.app.request('/.well-known/oauth-authorization-server')).json()
    expect(body).toMatchObject({ client_id_metadata_document_supported: false })
  })
})

describe('JWKS (RFC 7517)', () => {
  it('serves the ES256 public signing key and nothing private', async () => {
    const res = await t.app.request('/.well-known/jwks.json')
    expect(res.status).toBe(200)
    const { keys } = (await res.json()) as { keys: Record<string, string>[] }
    expect(keys).toHaveLength(1)
    const [key] = keys
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
    expect(key?.kid).toMatch(/^[\w-]{43}$/)
    expect(key).not.toHaveProperty('d')
    expect((await t.deps.keys.current()).signing.kid).toBe(key?.kid)
  })
})

const DISCOVERY_PATHS = [
  '/.well-known/oauth-protected-resource',
  '/.well-known/oauth-protected-resource/mcp',
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
  '/.well-known/jwks.json',
]

describe('discovery over HTTP', () => {
  it.each(DISCOVERY_PATHS)('allows any origin to read %s (CORS)', async (path) => {
    const res = await t.app.request(path, { headers: { origin: 'http://localhost:6274' } })
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
  })

  it.each(DISCOVERY_PATHS)('answers a CORS preflight for %s', async (path) => {
    const res = await t.app.request(path, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:6274',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'mcp-protocol-version',
      },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-allow-methods')).toContain('GET')
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain(
      'mcp-protocol-version',
    )
  })

  it.each(DISCOVERY_PATHS)('answers HEAD for %s without a body', async (path) => {
    const res = await t.app.request(path, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.text()).toBe('')
  })

  it.each(DISCOVERY_PATHS)('answers other methods on %s with 405 and Allow', async (path) => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await t.app.request(path, { method })
      expect(res.status).toBe(405)
      expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS')
      expect(await res.json()).toMatchObject({ error: 'method_not_allowed' })
    }
  })

  it('answers an unknown path with a JSON 404', async () => {
    const res = await t.app.request('/nope')
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: 'not_found', error_description: 'no such endpoint' })
  })
})

describe('health', () => {
  it('is live and ready when the store answers', async () => {
    expect((await t.app.request('/healthz')).status).toBe(200)
    const ready = await t.app.request('/readyz')
    expect(ready.status).toBe(200)
    // The test upstream's address answers nothing; readiness is the store's alone.
    expect(await ready.json()).toEqual({ status: 'ready', store: 'memory', upstream: 'checking' })
  })

  it('turns unready while Redis is down and ready again when it returns', async () => {
    const redis = await startRedisServer()
    const store = await createRedisStore({
      url: redis.url,
      keyPrefix: 'readyz:',
      commandTimeoutMs: 500,
    })
    try {
      const withRedis = await createTestApp({ store })
      expect((await withRedis.app.request('/readyz')).status).toBe(200)
      await redis.stop()
      const down = await withRedis.app.request('/readyz')
      expect(down.status).toBe(503)
      // The upstream's state rides along (this test app's upstream answers nothing).
      expect(await down.json()).toMatchObject({
        status: 'unavailable',
        reason: 'store does not answer',
      })
      await redis.start()
      await expect
        .poll(async () => (await withRedis.app.request('/readyz')).status, { timeout: 10_000 })
        .toBe(200)
    } finally {
      await store.close()
      await redis.stop()
    }
  })
})

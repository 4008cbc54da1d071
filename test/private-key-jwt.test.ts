import { randomUUID } from 'node:crypto'
import {
  type AddClientAuthentication,
  auth,
  Client,
  createPrivateKeyJwtAuth,
  DpopSession,
  StreamableHTTPClientTransport,
} from '@modelcontextprotocol/client'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { boundJkt, DpopClientProvider } from './support/dpop.js'
import { formPost, registerClient, signIn, signInForCode } from './support/flow.js'
import { type HttpsTestServer, jsonRoute, startHttpsServer } from './support/https-server.js'
import { resultJson } from './support/mcp.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const STATIC_ID = 'static-agentic-app'
const STATIC_REDIRECT = 'https://app.example.test/callback'

interface KeyPair {
  readonly privateJwk: JWK
  readonly publicJwk: JWK
}

async function keyPair(kid?: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const tag = kid ? { kid } : {}
  return {
    privateJwk: { ...(await exportJWK(privateKey)), ...tag },
    publicJwk: { ...(await exportJWK(publicKey)), ...tag, alg: 'ES256', use: 'sig' },
  }
}

/** The v2 SDK's private_key_jwt client authentication for `clientId`, read when it runs. */
function sdkAssertions(clientId: () => string, key: KeyPair): AddClientAuthentication {
  return (headers, params, url, metadata) =>
    createPrivateKeyJwtAuth({
      issuer: clientId(),
      subject: clientId(),
      privateKey: key.privateJwk as Record<string, unknown>,
      alg: 'ES256',
    })(headers, params, url, metadata)
}

/** An assertion built by hand, for what the SDK would never sign. */
async function handmadeAssertion(
  key: KeyPair,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const { importJWK } = await import('jose')
  return new SignJWT({ jti: randomUUID(), iat: now, exp: now + 120, ...claims })
    .setProtectedHeader({
      alg: 'ES256',
      typ: 'JWT',
      ...(key.privateJwk.kid ? { kid: key.privateJwk.kid } : {}),
      ...header,
    })
    .sign(await importJWK(key.privateJwk, 'ES256'))
}

let https: HttpsTestServer
let proxy: ProxyUnderTest
let mcpUrl: string
let tokenUrl: string
let staticKey: KeyPair

beforeAll(async () => {
  https = await startHttpsServer()
  staticKey = await keyPair()
  proxy = await startProxy({
    flavor: 'kinde',
    store: 'redis',
    env: {
      STATIC_CLIENTS: JSON.stringify([
        {
          client_id: STATIC_ID,
          client_name: 'Agentic app',
          redirect_uris: [STATIC_REDIRECT],
          jwks: { keys: [staticKey.publicJwk] },
        },
      ]),
    },
    metadataDocuments: { allowPrivateAddresses: true, ca: https.ca },
  })
  mcpUrl = `${proxy.url}/mcp`
  tokenUrl = `${proxy.url}/token`
})
afterAll(async () => {
  await proxy?.close()
  await https?.close()
})

/** The v2 SDK's whole sign-in for `provider`; the redirect may go anywhere (never followed). */
async function sdkSignIn(provider: DpopClientProvider): Promise<void> {
  expect(await auth(provider, { serverUrl: mcpUrl })).toBe('REDIRECT')
  const [authorizeUrl] = provider.authorizationUrls
  if (!authorizeUrl) throw new Error('no authorization URL')
  const back = await signIn(proxy, authorizeUrl)
  const code = back.searchParams.get('code')
  if (!code) throw new Error(`sign-in failed: ${back.href}`)
  const iss = back.searchParams.get('iss') ?? undefined
  expect(await auth(provider, { serverUrl: mcpUrl, authorizationCode: code, iss })).toBe(
    'AUTHORIZED',
  )
}

async function whoami(provider: DpopClientProvider): Promise<Record<string, unknown>> {
  const client = new Client({ name: 'pkj-e2e', version: '1.0.0' })
  await client.connect(
    new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }),
  )
  try {
    return resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
  } finally {
    await client.close()
  }
}

describe('a ChatGPT-shaped Client ID Metadata Document with private_key_jwt', () => {
  it('signs in end to end: CIMD, jwks_uri, assertions by the SDK, DPoP, tool calls', async () => {
    const key = await keyPair('chatgpt-1')
    const clientId = `${https.base}/chatgpt/oauth/client.json`
    const redirect = 'https://chatgpt.com/connector/oauth/c0nn3ct0r'
    https.routes.set(
      '/chatgpt/oauth/client.json',
      jsonRoute(() => ({
        client_id: clientId,
        client_name: 'ChatGPT',
        client_uri: 'https://chatgpt.com',
        redirect_uris: [redirect],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks_uri: `${https.base}/chatgpt/oauth/jwks.json`,
      })),
    )
    https.routes.set(
      '/chatgpt/oauth/jwks.json',
      jsonRoute(() => ({ keys: [key.publicJwk] }), { 'cache-control': 'max-age=300' }),
    )
    const session = await DpopSession.create()
    const provider = new DpopClientProvider(
      redirect,
      {
        client_name: 'ChatGPT',
        redirect_uris: [redirect],
        token_endpoint_auth_method: 'private_key_jwt',
      },
      session,
      {
        clientMetadataUrl: clientId,
        addClientAuthentication: sdkAssertions(() => clientId, key),
      },
    )
    await sdkSignIn(provider)
    expect(provider.information?.client_id).toBe(clientId)
    expect(provider.saved?.token_type).toBe('DPoP')
    expect(boundJkt(provider.saved?.access_token ?? '')).toBe(session.thumbprint)
    expect(await whoami(provider)).toMatchObject({ actor: 'user' })

    // Refreshing is authenticated by a new assertion (a confidential client: not key-bound).
    const refreshed = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token: provider.saved?.refresh_token ?? '',
      client_assertion_type: JWT_BEARER,
      client_assertion: await handmadeAssertion(key, {
        iss: clientId,
        sub: clientId,
        aud: proxy.url,
      }),
    })
    expect(refreshed.status).toBe(200)
    expect(await refreshed.json()).toMatchObject({ token_type: 'Bearer' })
  })
})

describe('private_key_jwt clients registered by DCR', () => {
  it('registers jwks without a secret and signs in with SDK assertions (two keys, no kid)', async () => {
    const [first, second] = [await keyPair(), await keyPair()]
    const redirect = 'http://127.0.0.1:43201/callback'
    const provider = new DpopClientProvider(
      redirect,
      {
        client_name: 'pkj inline',
        redirect_uris: [redirect],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [first.publicJwk, second.publicJwk] },
      } as never,
      undefined,
    )
    provider.addClientAuthentication = sdkAssertions(
      () => provider.information?.client_id ?? '',
      second,
    )
    await sdkSignIn(provider)
    expect(provider.information).not.toHaveProperty('client_secret')
    expect(provider.information).toMatchObject({
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [first.publicJwk, second.publicJwk] },
    })
    expect(provider.saved?.token_type).toBe('Bearer')
    expect(await whoami(provider)).toMatchObject({ actor: 'user' })
  })

  it('fetches jwks_uri, re-fetches once on an unknown kid, and not again within the minute', async () => {
    const old = await keyPair('2026-11')
    const rotated = await keyPair('2026-12')
    let published = [old.publicJwk]
    https.routes.set(
      '/dcr/jwks.json',
      jsonRoute(() => ({ keys: published }), { 'cache-control': 'max-age=3600' }),
    )
    const redirect = 'http://127.0.0.1:43202/callback'
    const registered = await registerClient(proxy.url, {
      client_name: 'pkj uri',
      redirect_uris: [redirect],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks_uri: `${https.base}/dcr/jwks.json`,
    })
    expect(registered).not.toHaveProperty('client_secret')
    const clientId = registered.client_id
    const assert = (key: KeyPair) =>
      handmadeAssertion(key, { iss: clientId, sub: clientId, aud: tokenUrl })

    const { code, verifier } = await signInForCode(proxy, {
      clientId,
      redirectUri: redirect,
      state: 's',
    })
    const exchanged = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: redirect,
      client_id: clientId,
      client_assertion_type: JWT_BEARER,
      client_assertion: await assert(old),
    })
    expect(exchanged.status).toBe(200)
    const { refresh_token } = (await exchanged.json()) as { refresh_token: string }
    expect(https.hits.get('/dcr/jwks.json')).toBe(1)

    // The client rotated its key: the cached set lacks the kid, so it is fetched again, once.
    published = [rotated.publicJwk]
    const refreshed = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token,
      client_assertion_type: JWT_BEARER,
      client_assertion: await assert(rotated),
    })
    expect(refreshed.status).toBe(200)
    expect(https.hits.get('/dcr/jwks.json')).toBe(2)

    const stranger = await keyPair('unknown')
    const refused = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token: 'whatever',
      client_assertion_type: JWT_BEARER,
      client_assertion: await assert(stranger),
    })
    expect(refused.status).toBe(401)
    expect(await refused.json()).toEqual({
      error: 'invalid_client',
      error_description: 'the client assertion is signed by a key the client has not registered',
    })
    expect(https.hits.get('/dcr/jwks.json')).toBe(2)
  })

  it.each([
    [
      {
        jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] },
        jwks_uri: 'https://a.example/jwks.json',
      },
      'jwks: must not be sent together with jwks_uri',
    ],
    [{ jwks_uri: 'http://a.example/jwks.json' }, 'jwks_uri: must be an https URL'],
    [{ jwks: { keys: [] } }, 'jwks: must hold at least one key'],
    [{ jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, 'jwks: kty must be EC, RSA or OKP'],
    [
      { jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' }] } },
      'jwks: must hold public keys only (no private members)',
    ],
    [
      { jwks_uri: 'https://a.example/jwks.json', token_endpoint_auth_signing_alg: 'HS256' },
      'token_endpoint_auth_signing_alg: must be one of ES256, ES384, RS256, PS256, EdDSA',
    ],
  ])('refuses the registration %j', async (extra, description) => {
    const response = await fetch(`${proxy.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: ['https://a.example/cb'],
        token_endpoint_auth_method: 'private_key_jwt',
        ...extra,
      }),
    })
    expect(response.status).toBe(400)
    expect(await response.json()).toEqual({
      error: 'invalid_client_metadata',
      error_description: description,
    })
  })
})

describe('STATIC_CLIENTS with jwks', () => {
  it('signs in with an SDK assertion instead of a secret, and revokes with one', async () => {
    const { code, verifier } = await signInForCode(proxy, {
      clientId: STATIC_ID,
      redirectUri: STATIC_REDIRECT,
      state: 'st',
    })
    const params = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: STATIC_REDIRECT,
      client_id: STATIC_ID,
    })
    await sdkAssertions(() => STATIC_ID, staticKey)(new Headers(), params, tokenUrl, {
      issuer: proxy.url,
    } as never)
    const response = await formPost(proxy.url, Object.fromEntries(params))
    expect(response.status).toBe(200)
    const { refresh_token } = (await response.json()) as { refresh_token: string }

    // /revoke authenticates the same way (RFC 7009 §2.1), and without it refuses.
    const unauthenticated = await formPost(
      proxy.url,
      { token: refresh_token, client_id: STATIC_ID },
      '/revoke',
    )
    expect(unauthenticated.status).toBe(401)
    const revoked = await formPost(
      proxy.url,
      {
        token: refresh_token,
        client_assertion_type: JWT_BEARER,
        client_assertion: await handmadeAssertion(staticKey, {
          iss: STATIC_ID,
          sub: STATIC_ID,
          aud: proxy.url,
        }),
      },
      '/revoke',
    )
    expect(revoked.status).toBe(200)
    const refresh = await formPost(proxy.url, {
      grant_type: 'refresh_token',
      refresh_token,
      client_assertion_type: JWT_BEARER,
      client_assertion: await handmadeAssertion(staticKey, {
        iss: STATIC_ID,
        sub: STATIC_ID,
        aud: tokenUrl,
      }),
    })
    expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' })
  })
})

describe('client assertions the token endpoint refuses with 401 invalid_client', () => {
  const exchange = (params: Record<string, string>) =>
    formPost(proxy.url, {
      grant_type: 'authorization_code',
      code: 'not-a-code',
      code_verifier: 'v'.repeat(43),
      redirect_uri: STATIC_REDIRECT,
      client_id: STATIC_ID,
      client_assertion_type: JWT_BEARER,
      ...params,
    })
  const claims = () => ({ iss: STATIC_ID, sub: STATIC_ID, aud: proxy.url })
  const now = () => Math.floor(Date.now() / 1000)

  it.each([
    [
      'iss and sub of another client',
      () => handmadeAssertion(staticKey, { ...claims(), iss: 'other', sub: 'other' }),
      'the client assertion iss claim is missing or invalid',
    ],
    [
      'an audience elsewhere',
      () => handmadeAssertion(staticKey, { ...claims(), aud: 'https://other.example' }),
      'the client assertion aud claim is missing or invalid',
    ],
    [
      'an exp an hour ahead',
      () => handmadeAssertion(staticKey, { ...claims(), exp: now() + 3600 }),
      'the client assertion exp must be at most 600 s ahead',
    ],
    [
      'an expired assertion',
      () => handmadeAssertion(staticKey, { ...claims(), iat: now() - 600, exp: now() - 300 }),
      'the client assertion has expired',
    ],
    [
      'no jti',
      () => handmadeAssertion(staticKey, { ...claims(), jti: undefined }),
      'the client assertion jti claim is missing or invalid',
    ],
    [
      'a key the client never registered',
      async () => handmadeAssertion(await keyPair(), claims()),
      'the client assertion signature or format is invalid',
    ],
    [
      'an HS256 assertion',
      () =>
        new SignJWT({ ...claims(), jti: randomUUID(), exp: now() + 60 })
          .setProtectedHeader({ alg: 'HS256' })
          .sign(new Uint8Array(32)),
      'the client assertion must be signed with one of ES256, ES384, RS256, PS256, EdDSA',
    ],
    ['garbage', async () => 'garbage', 'the client assertion is not a well-formed JWT'],
  ])('%s', async (_name, build, description) => {
    const response = await exchange({ client_assertion: await build() })
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({
      error: 'invalid_client',
      error_description: description,
    })
  })

  it('refuses a replayed assertion (jti)', async () => {
    const assertion = await handmadeAssertion(staticKey, claims())
    const first = await exchange({ client_assertion: assertion })
    expect(await first.json()).toMatchObject({ error: 'invalid_grant' })
    const again = await exchange({ client_assertion: assertion })
    expect(again.status).toBe(401)
    expect(await again.json()).toEqual({
      error: 'invalid_client',
      error_description: 'the client assertion was already used (jti)',
    })
  })

  it('refuses another assertion type, a missing assertion, and a secret beside it', async () => {
    const assertion = await handmadeAssertion(staticKey, claims())
    const wrongType = await exchange({ client_assertion: assertion, client_assertion_type: 'x' })
    expect(wrongType.status).toBe(401)
    expect(await wrongType.json()).toEqual({
      error: 'invalid_client',
      error_description: `client_assertion_type must be ${JWT_BEARER}`,
    })
    const none = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code: 'c',
      client_id: STATIC_ID,
    })
    expect(none.status).toBe(401)
    expect(await none.json()).toEqual({
      error: 'invalid_client',
      error_description: 'this client must authenticate with private_key_jwt',
    })
    const both = await exchange({ client_assertion: assertion, client_secret: 's' })
    expect(both.status).toBe(400)
    expect(await both.json()).toMatchObject({ error: 'invalid_request' })
  })
})

describe('jwks_uri and the SSRF guards of the document fetcher', () => {
  it('never fetches a jwks_uri on a private address (without the test hook)', async () => {
    const guarded = await startProxy({ flavor: 'kinde' })
    try {
      const registered = await registerClient(guarded.url, {
        redirect_uris: ['https://a.example/cb'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks_uri: `${https.base.replace('localhost', '127.0.0.1')}/dcr/jwks.json`,
      })
      const id = registered.client_id
      const key = await keyPair('k')
      const before = https.hits.get('/dcr/jwks.json') ?? 0
      const response = await formPost(guarded.url, {
        grant_type: 'authorization_code',
        code: 'c',
        client_id: id,
        client_assertion_type: JWT_BEARER,
        client_assertion: await handmadeAssertion(key, { iss: id, sub: id, aud: guarded.url }),
      })
      expect(response.status).toBe(401)
      expect(await response.json()).toEqual({
        error: 'invalid_client',
        error_description:
          'jwks_uri: the JWK Set could not be fetched (127.0.0.1 is not a public address; metadata documents are only fetched from public addresses)',
      })
      expect(https.hits.get('/dcr/jwks.json') ?? 0).toBe(before)
    } finally {
      await guarded.close()
    }
  })
})

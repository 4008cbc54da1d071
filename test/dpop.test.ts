import { randomUUID } from 'node:crypto'
import {
  auth,
  Client,
  DpopSession,
  StreamableHTTPClientTransport,
  withDpop,
} from '@modelcontextprotocol/client'
import { exportJWK, generateKeyPair, type JWTHeaderParameters, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { boundJkt, DpopClientProvider } from './support/dpop.js'
import { formPost, signIn } from './support/flow.js'
import { initializeMessage, mcpRequest, resultJson } from './support/mcp.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

let proxy: ProxyUnderTest
let mcpUrl: string
let tokenUrl: string

beforeAll(async () => {
  proxy = await startProxy({ flavor: 'kinde', store: 'redis' })
  mcpUrl = `${proxy.url}/mcp`
  tokenUrl = `${proxy.url}/token`
})
afterAll(() => proxy?.close())

const DPOP_ALGS = 'ES256 ES384 RS256 PS256 EdDSA'
const metadataUrl = () => `${proxy.url}/.well-known/oauth-protected-resource/mcp`

/** The exact challenge pair of a DPoP refusal at /mcp (RFC 9449 §7.1, next to Bearer). */
const dpopChallenge = (error: string, description: string) =>
  `Bearer resource_metadata="${metadataUrl()}", scope="openid profile email", DPoP algs="${DPOP_ALGS}", error="${error}", error_description="${description}"`

/** Discovery, DCR (public client), PKCE and the code exchange by the v2 SDK with DPoP. */
async function signInWithDpop(session: DpopSession, port = 43190): Promise<DpopClientProvider> {
  const redirectUrl = `http://127.0.0.1:${port}/oauth/callback`
  const provider = new DpopClientProvider(
    redirectUrl,
    {
      client_name: 'DPoP e2e',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    session,
  )
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
  return provider
}

/** A raw `/mcp` POST with `Authorization: DPoP` and the given proof. */
function dpopPost(token: string, proof: string | undefined, scheme = 'DPoP') {
  return mcpRequest(mcpUrl, {
    body: initializeMessage(),
    headers: {
      authorization: `${scheme} ${token}`,
      ...(proof === undefined ? {} : { dpop: proof }),
    },
  })
}

describe('DPoP for a public client, end to end with the v2 SDK client', () => {
  let session: DpopSession
  let provider: DpopClientProvider
  let token: string

  beforeAll(async () => {
    session = await DpopSession.create()
    provider = await signInWithDpop(session)
    token = provider.saved?.access_token ?? ''
  })

  it('issues a DPoP-bound access token (token_type DPoP, cnf.jkt of the client key)', () => {
    expect(provider.saved?.token_type).toBe('DPoP')
    expect(boundJkt(token)).toBe(session.thumbprint)
    expect(provider.saved?.refresh_token).toBeTruthy()
  })

  it('lets the SDK client call tools with the bound token and a fresh proof per request', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
      authProvider: provider,
    })
    const client = new Client({ name: 'dpop-e2e', version: '1.0.0' })
    await client.connect(transport)
    try {
      const { tools } = await client.listTools()
      expect(tools.map((tool) => tool.name)).toContain('whoami')
      const whoami = resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
      expect(whoami).toMatchObject({ actor: 'user' })
      // The same token again: the verification cache may skip the token, never the proof.
      expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    } finally {
      await client.close()
    }
  })

  it('refuses the bound token presented as Bearer', async () => {
    const response = await dpopPost(token, undefined, 'Bearer')
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      dpopChallenge(
        'invalid_token',
        'this access token is DPoP-bound; present it with the DPoP scheme and a proof',
      ),
    )
    expect(await response.json()).toMatchObject({ error: 'invalid_token' })
  })

  it('refuses the bound token with the DPoP scheme but no proof', async () => {
    const response = await dpopPost(token, undefined)
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      dpopChallenge('invalid_dpop_proof', 'a DPoP proof is required'),
    )
  })

  it("refuses a thief's key: a valid proof of another key is not the binding", async () => {
    const thief = await DpopSession.create()
    const stolen = withDpop(thief, () => token)(fetch)
    const response = await stolen(mcpUrl, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
      },
      body: JSON.stringify(initializeMessage()),
    })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(
      dpopChallenge(
        'invalid_token',
        'the DPoP proof is signed by another key than the token is bound to',
      ),
    )
  })

  it('refuses a replayed proof', async () => {
    const proof = await session.buildProof({ htm: 'POST', htu: mcpUrl, accessToken: token })
    const first = await dpopPost(token, proof)
    expect(first.status).toBe(200)
    await first.body?.cancel()
    const again = await dpopPost(token, proof)
    expect(again.status).toBe(401)
    expect(again.headers.get('www-authenticate')).toBe(
      dpopChallenge('invalid_dpop_proof', 'the DPoP proof was already used; sign a new proof'),
    )
  })

  it('refuses a proof for another method, another URL, or without ath', async () => {
    const cases: [string, Parameters<DpopSession['buildProof']>[0], string][] = [
      [
        'method',
        { htm: 'GET', htu: mcpUrl, accessToken: token },
        'the DPoP proof htm must be POST',
      ],
      [
        'url',
        { htm: 'POST', htu: `${proxy.url}/other`, accessToken: token },
        `the DPoP proof htu must be ${mcpUrl}`,
      ],
      ['ath', { htm: 'POST', htu: mcpUrl }, 'the DPoP proof ath does not match the access token'],
    ]
    for (const [name, request, description] of cases) {
      const response = await dpopPost(token, await session.buildProof(request))
      expect(response.status, name).toBe(401)
      expect(response.headers.get('www-authenticate'), name).toBe(
        dpopChallenge('invalid_dpop_proof', description),
      )
    }
  })

  it('accepts a proof whose htu carries a query (ignored, RFC 9449 §4.3)', async () => {
    const proof = await session.buildProof({ htm: 'POST', htu: mcpUrl, accessToken: token })
    const response = await mcpRequest(`${mcpUrl}?x=1`, {
      body: initializeMessage(),
      headers: { authorization: `DPoP ${token}`, dpop: proof },
    })
    expect(response.status).toBe(200)
    await response.body?.cancel()
  })

  it('binds the refresh token to the key: refreshing needs a proof of it', async () => {
    const refreshToken = provider.saved?.refresh_token ?? ''
    const clientId = provider.information?.client_id ?? ''
    const form = { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }

    const bare = await formPost(proxy.url, form)
    expect(bare.status).toBe(400)
    expect(await bare.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'the refresh token is bound to a DPoP key; send a DPoP proof of that key',
    })

    const thief = await DpopSession.create()
    const stolen = await formPost(proxy.url, form, '/token', {
      dpop: await thief.buildProof({ htm: 'POST', htu: tokenUrl }),
    })
    expect(stolen.status).toBe(400)
    expect(await stolen.json()).toEqual({
      error: 'invalid_grant',
      error_description:
        'the DPoP proof is signed by another key than the refresh token is bound to',
    })

    // The rightful client, through the SDK's own refresh (auth() with a refresh token).
    provider.saved = { ...provider.saved, access_token: 'expired' } as typeof provider.saved
    expect(await auth(provider, { serverUrl: mcpUrl })).toBe('AUTHORIZED')
    expect(provider.saved?.token_type).toBe('DPoP')
    expect(provider.saved?.refresh_token).not.toBe(refreshToken)
    expect(boundJkt(provider.saved?.access_token ?? '')).toBe(session.thumbprint)
  })

  it('refuses a replayed proof at /token with invalid_dpop_proof', async () => {
    const proof = await session.buildProof({ htm: 'POST', htu: tokenUrl })
    const form = {
      grant_type: 'refresh_token',
      refresh_token: provider.saved?.refresh_token ?? '',
      client_id: provider.information?.client_id ?? '',
    }
    const first = await formPost(proxy.url, form, '/token', { dpop: proof })
    expect(first.status).toBe(200)
    expect(await first.json()).toMatchObject({ token_type: 'DPoP' })
    const again = await formPost(proxy.url, form, '/token', { dpop: proof })
    expect(again.status).toBe(400)
    expect(await again.json()).toEqual({
      error: 'invalid_dpop_proof',
      error_description: 'the DPoP proof was already used; sign a new proof',
    })
  })
})

/** A proof built by hand, for what no well-behaved client sends. */
async function handmadeProof(
  options: {
    header?: Record<string, unknown>
    claims?: Record<string, unknown>
    alg?: 'ES256' | 'RS256' | 'EdDSA'
    signWith?: CryptoKey
  } = {},
): Promise<string> {
  const alg = options.alg ?? 'ES256'
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  return new SignJWT({
    jti: randomUUID(),
    htm: 'POST',
    htu: tokenUrl,
    iat: Math.floor(Date.now() / 1000),
    ...options.claims,
  })
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk, ...options.header })
    .sign(options.signWith ?? privateKey)
}

describe('/token refuses a bad DPoP proof with 400 invalid_dpop_proof', () => {
  const exchange = (headers: Record<string, string> | Headers) =>
    fetch(tokenUrl, {
      method: 'POST',
      headers,
      body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: 'y' }),
    })
  const refusal = async (response: Response) => {
    expect(response.status).toBe(400)
    expect(response.headers.get('cache-control')).toBe('no-store')
    const body = (await response.json()) as { error: string; error_description: string }
    expect(body.error).toBe('invalid_dpop_proof')
    return body.error_description
  }
  const form = { 'content-type': 'application/x-www-form-urlencoded' }

  it.each([
    ['not a JWT', async () => 'not-a-jwt', 'the DPoP proof is not a well-formed JWT'],
    [
      'typ JWT',
      () => handmadeProof({ header: { typ: 'JWT' } }),
      'the DPoP proof typ must be dpop+jwt',
    ],
    [
      'an HS256 proof',
      async () =>
        new SignJWT({ jti: 'j', htm: 'POST', htu: tokenUrl, iat: Math.floor(Date.now() / 1000) })
          .setProtectedHeader({
            alg: 'HS256',
            typ: 'dpop+jwt',
            // A symmetric key is what jose's types (rightly) keep out of a jwk header.
            jwk: { kty: 'oct', k: 'AAAA' } as unknown as JWTHeaderParameters['jwk'],
          })
          .sign(new Uint8Array(32)),
      'the DPoP proof must be signed with one of ES256, ES384, RS256, PS256, EdDSA',
    ],
    [
      'a private jwk',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true })
        return handmadeProof({ header: { jwk: await exportJWK(privateKey) } })
      },
      'the DPoP proof jwk must be a public key, without private members',
    ],
    [
      'a signature by another key than the jwk',
      async () => {
        const { privateKey } = await generateKeyPair('ES256')
        return handmadeProof({ signWith: privateKey })
      },
      'the DPoP proof signature, type or key is invalid',
    ],
    ['htm GET', () => handmadeProof({ claims: { htm: 'GET' } }), 'the DPoP proof htm must be POST'],
    [
      'htu of another server',
      () => handmadeProof({ claims: { htu: 'https://evil.example/token' } }),
      'the DPoP proof htu must be TOKEN_URL',
    ],
    [
      'an iat an hour old',
      () => handmadeProof({ claims: { iat: Math.floor(Date.now() / 1000) - 3600 } }),
      'the DPoP proof iat is not recent; sign a new proof',
    ],
    [
      'no jti',
      () => handmadeProof({ claims: { jti: undefined } }),
      'the DPoP proof jti claim is missing or invalid',
    ],
  ])('%s', async (_name, build, description) => {
    const text = await refusal(await exchange({ ...form, dpop: await build() }))
    expect(text).toBe(description.replace('TOKEN_URL', tokenUrl))
  })

  it('refuses two DPoP headers', async () => {
    const headers = new Headers(form)
    headers.append('dpop', await handmadeProof())
    headers.append('dpop', await handmadeProof())
    expect(await refusal(await exchange(headers))).toBe('send exactly one DPoP header')
  })

  it('accepts an RS256 and an EdDSA proof (the grant is then judged as usual)', async () => {
    for (const alg of ['RS256', 'EdDSA'] as const) {
      const response = await exchange({ ...form, dpop: await handmadeProof({ alg }) })
      expect((await response.json()) as object, alg).toMatchObject({ error: 'invalid_client' })
    }
  })
})

describe('DPoP for agents (client_credentials)', () => {
  it('binds an agent token to its key, which then calls /mcp with DPoP', async () => {
    const agent = await startProxy({
      flavor: 'kinde',
      upstream: {
        m2mClients: [
          { client_id: 'agent-dpop', client_secret: 'agent-dpop-secret', org_code: 'org_acme' },
        ],
      },
    })
    try {
      const session = await DpopSession.create()
      const issued = await formPost(
        agent.url,
        {
          grant_type: 'client_credentials',
          client_id: 'agent-dpop',
          client_secret: 'agent-dpop-secret',
        },
        '/token',
        { dpop: await session.buildProof({ htm: 'POST', htu: `${agent.url}/token` }) },
      )
      expect(issued.status).toBe(200)
      const body = (await issued.json()) as { access_token: string; token_type: string }
      expect(body.token_type).toBe('DPoP')
      expect(boundJkt(body.access_token)).toBe(session.thumbprint)

      const transport = new StreamableHTTPClientTransport(new URL(`${agent.url}/mcp`), {
        fetch: withDpop(session, () => body.access_token)(fetch),
      })
      const client = new Client({ name: 'dpop-agent', version: '1.0.0' })
      await client.connect(transport)
      try {
        const whoami = resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
        expect(whoami).toMatchObject({ actor: 'agent', orgCode: 'org_acme' })
      } finally {
        await client.close()
      }
    } finally {
      await agent.close()
    }
  })
})

describe('DPOP_REQUIRED=true', () => {
  it('refuses a token request without a proof, and issues bound tokens with one', async () => {
    const strict = await startProxy({
      flavor: 'kinde',
      env: { DPOP_REQUIRED: 'true' },
      upstream: {
        m2mClients: [
          { client_id: 'agent-s', client_secret: 'agent-s-secret', org_code: 'org_acme' },
        ],
      },
    })
    try {
      const form = {
        grant_type: 'client_credentials',
        client_id: 'agent-s',
        client_secret: 'agent-s-secret',
      }
      const bare = await formPost(strict.url, form)
      expect(bare.status).toBe(400)
      expect(await bare.json()).toEqual({
        error: 'invalid_dpop_proof',
        error_description: 'this server issues DPoP-bound tokens only; send a DPoP proof',
      })
      const session = await DpopSession.create()
      const bound = await formPost(strict.url, form, '/token', {
        dpop: await session.buildProof({ htm: 'POST', htu: `${strict.url}/token` }),
      })
      expect(await bound.json()).toMatchObject({ token_type: 'DPoP' })
    } finally {
      await strict.close()
    }
  })
})

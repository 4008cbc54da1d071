import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Clock } from '../src/clock.js'
import { OAuthError } from '../src/errors.js'
import {
  createMetadataDocumentFetches,
  isMetadataDocumentUrl,
  isPublicAddress,
  type MetadataDocumentOptions,
  resolveMetadataDocumentClient,
} from '../src/oauth/client-metadata-document.js'
import { createMemoryStore } from '../src/store/memory.js'
import type { Store } from '../src/store/store.js'
import { selfSignedCertificate } from './support/https-server.js'
import { freePort } from './support/net.js'

const START = 1_700_000_000
const CALLBACK = 'http://127.0.0.1:3000/callback'

type Handler = (req: IncomingMessage, res: ServerResponse, clientId: string) => void

/** A document whose client_id is the URL it was requested at, plus `extra`. */
function document(
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Handler {
  return (_req, res, clientId) => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers })
    res.end(
      JSON.stringify({
        client_id: clientId,
        client_name: 'Test Client',
        redirect_uris: [CALLBACK],
        ...extra,
      }),
    )
  }
}

const routes: Record<string, Handler> = {
  '/valid': document(),
  '/web': document({
    redirect_uris: ['https://app.example/callback'],
    client_uri: 'https://app.example',
    token_endpoint_auth_method: 'none',
    scope: 'openid profile',
  }),
  '/vnd-json': document({}, { 'content-type': 'application/vnd.example+json; charset=utf-8' }),
  '/no-store': document({}, { 'cache-control': 'no-store' }),
  '/no-cache': document({}, { 'cache-control': 'no-cache' }),
  '/max-age-60': document({}, { 'cache-control': 'public, max-age=60' }),
  '/max-age-huge': document({}, { 'cache-control': 'max-age=999999' }),
  '/mismatch': document({ client_id: 'https://other.example/client.json' }),
  '/secret': document({ client_secret: 'shh' }),
  '/secret-expires': document({ client_secret_expires_at: 0 }),
  '/auth-basic': document({ token_endpoint_auth_method: 'client_secret_basic' }),
  '/auth-private-key-jwt': document({ token_endpoint_auth_method: 'private_key_jwt' }),
  '/no-name': document({ client_name: undefined }),
  '/no-redirect-uris': document({ redirect_uris: undefined }),
  '/bad-redirect-uri': document({ redirect_uris: ['http://evil.example/cb'] }),
  '/array': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('[]')
  },
  '/not-json': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"client_id": ')
  },
  '/html': (_req, res, clientId) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(JSON.stringify({ client_id: clientId }))
  },
  '/status-404': (_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":"not found"}')
  },
  '/redirect': (_req, res) => {
    res.writeHead(302, { location: '/valid' })
    res.end()
  },
  '/too-large-length': (_req, res) => {
    const body = JSON.stringify({ padding: 'x'.repeat(6000) })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  },
  '/too-large-chunked': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    for (let i = 0; i < 4; i++) res.write(`${' '.repeat(2048)}`)
    res.end('{}')
  },
  '/hang': (req) => {
    hungSocketClosed = new Promise((resolve) => req.socket.once('close', resolve))
  },
}

/** Documents under /slow/ are answered only when the test releases them. */
const held: (() => void)[] = []
const slow: Handler = (req, res, clientId) => {
  held.push(() => document()(req, res, clientId))
}
function releaseSlow() {
  for (const answer of held.splice(0)) answer()
}

let certPem: string
let server: Server
let base: string
let port: number
let connections = 0
const hits = new Map<string, number>()
let hungSocketClosed: Promise<unknown> | undefined

beforeAll(async () => {
  const { key, cert } = selfSignedCertificate()
  certPem = cert
  server = createServer({ key, cert: certPem }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://x').pathname
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const handler = routes[path] ?? (path.startsWith('/slow/') ? slow : undefined)
    if (!handler) {
      res.writeHead(404)
      res.end()
      return
    }
    handler(req, res, `https://${req.headers.host}${req.url}`)
  })
  server.on('connection', () => {
    connections++
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
  base = `https://127.0.0.1:${port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

let clock: Clock & { t: number }
let store: Store
let testOptions: Partial<MetadataDocumentOptions>

beforeEach(() => {
  hits.clear()
  connections = 0
  clock = {
    t: START,
    now() {
      return this.t
    },
  }
  store = createMemoryStore(clock)
  testOptions = { allowPrivateAddresses: true, ca: certPem }
})

const resolve = (clientId: string, options: Partial<MetadataDocumentOptions> = testOptions) =>
  resolveMetadataDocumentClient(clientId, { store, clock }, options)

async function expectInvalidClient(promise: Promise<unknown>, description: string) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(OAuthError)
  expect(error).toMatchObject({ code: 'invalid_client', status: 401, description })
}

describe('resolveMetadataDocumentClient', () => {
  it('resolves a valid document into a public native client', async () => {
    const clientId = `${base}/valid`
    expect(await resolve(clientId)).toEqual({
      clientId,
      source: 'metadata-document',
      tokenEndpointAuthMethod: 'none',
      applicationType: 'native',
      redirectUris: [CALLBACK],
      grantTypes: ['authorization_code', 'refresh_token'],
      responseTypes: ['code'],
      clientName: 'Test Client',
      clientIdIssuedAt: START,
    })
  })

  it('infers a web client from https redirect URIs and keeps the metadata it understands', async () => {
    const client = await resolve(`${base}/web`)
    expect(client).toMatchObject({
      applicationType: 'web',
      tokenEndpointAuthMethod: 'none',
      redirectUris: ['https://app.example/callback'],
      clientUri: 'https://app.example',
      scope: 'openid profile',
    })
  })

  it('resolves a localhost URL through DNS when private addresses are allowed', async () => {
    const clientId = `https://localhost:${port}/valid`
    expect(await resolve(clientId)).toMatchObject({ clientId, clientName: 'Test Client' })
  })

  it('accepts a +json media type', async () => {
    expect(await resolve(`${base}/vnd-json`)).toMatchObject({ clientName: 'Test Client' })
  })

  it('serves a second resolution from the cache without contacting the server', async () => {
    const first = await resolve(`${base}/valid`)
    const second = await resolve(`${base}/valid`)
    expect(second).toEqual(first)
    expect(hits.get('/valid')).toBe(1)
  })

  it('caches for the default 300 s when the response has no max-age', async () => {
    await resolve(`${base}/valid`)
    clock.t = START + 299
    await resolve(`${base}/valid`)
    expect(hits.get('/valid')).toBe(1)
    clock.t = START + 301
    expect(await resolve(`${base}/valid`)).toMatchObject({ clientIdIssuedAt: START + 301 })
    expect(hits.get('/valid')).toBe(2)
  })

  it('does not cache a document served with Cache-Control: no-store', async () => {
    await resolve(`${base}/no-store`)
    await resolve(`${base}/no-store`)
    expect(hits.get('/no-store')).toBe(2)
  })

  it('does not cache a document served with Cache-Control: no-cache', async () => {
    await resolve(`${base}/no-cache`)
    await resolve(`${base}/no-cache`)
    expect(hits.get('/no-cache')).toBe(2)
  })

  it('refetches once max-age has passed', async () => {
    await resolve(`${base}/max-age-60`)
    clock.t = START + 59
    await resolve(`${base}/max-age-60`)
    expect(hits.get('/max-age-60')).toBe(1)
    clock.t = START + 61
    await resolve(`${base}/max-age-60`)
    expect(hits.get('/max-age-60')).toBe(2)
  })

  it('caps max-age at maxCacheSeconds', async () => {
    const options = { ...testOptions, maxCacheSeconds: 100 }
    await resolve(`${base}/max-age-huge`, options)
    clock.t = START + 99
    await resolve(`${base}/max-age-huge`, options)
    expect(hits.get('/max-age-huge')).toBe(1)
    clock.t = START + 101
    await resolve(`${base}/max-age-huge`, options)
    expect(hits.get('/max-age-huge')).toBe(2)
  })

  it('caches a refusal for a minute, so a failing document is fetched once', async () => {
    const description = 'client_id: must equal the URL the document was fetched from'
    await expectInvalidClient(resolve(`${base}/mismatch`), description)
    await expectInvalidClient(resolve(`${base}/mismatch`), description)
    await expectInvalidClient(resolve(`${base}/status-404`), expect.any(String) as never)
    await expectInvalidClient(resolve(`${base}/status-404`), expect.any(String) as never)
    expect([hits.get('/mismatch'), hits.get('/status-404')]).toEqual([1, 1])
    clock.t += 61
    await expectInvalidClient(resolve(`${base}/mismatch`), description)
    expect(hits.get('/mismatch')).toBe(2)
  })

  it('refuses a client_id URL with a query before fetching, so no variant bypasses the cache', async () => {
    await resolve(`${base}/valid`)
    for (const variant of [`${base}/valid?v=1`, `${base}/valid?`, `${base}/valid?v=2&x=y`]) {
      await expectInvalidClient(resolve(variant), 'client_id: must not contain a query')
    }
    expect(hits.get('/valid')).toBe(1)
    expect(connections).toBe(1)
  })

  it('bounds the fetches running at once', async () => {
    const fetches = createMetadataDocumentFetches({
      maxConcurrentFetches: 2,
      perHostPerMinute: 100,
    })
    const bounded = (path: string) =>
      resolveMetadataDocumentClient(`${base}${path}`, { store, clock, fetches }, testOptions)
    const first = bounded('/slow/1')
    const second = bounded('/slow/2')
    await vi.waitFor(() => expect(held).toHaveLength(2))
    await expectInvalidClient(
      bounded('/slow/3'),
      'the client metadata document cannot be fetched right now; try again shortly',
    )
    releaseSlow()
    await expect(Promise.all([first, second])).resolves.toHaveLength(2)
    // A slot is free again; the refusal was not cached.
    const third = bounded('/slow/3')
    await vi.waitFor(() => expect(held).toHaveLength(1))
    releaseSlow()
    await expect(third).resolves.toMatchObject({ clientName: 'Test Client' })
    expect(hits.get('/slow/3')).toBe(1)
  })

  it('bounds the fetches a minute to one host', async () => {
    const fetches = createMetadataDocumentFetches({ maxConcurrentFetches: 8, perHostPerMinute: 3 })
    const bounded = (path: string) =>
      resolveMetadataDocumentClient(`${base}${path}`, { store, clock, fetches }, testOptions)
    for (let i = 0; i < 3; i++) await bounded('/no-store')
    await expectInvalidClient(
      bounded('/no-store'),
      'the client metadata document cannot be fetched right now; try again shortly',
    )
    expect(hits.get('/no-store')).toBe(3)
    clock.t += 60
    await bounded('/no-store')
    expect(hits.get('/no-store')).toBe(4)
  })

  it('answers every network failure with one generic description (no port-scan oracle)', async () => {
    const closed = await freePort()
    await expectInvalidClient(
      resolve(`https://127.0.0.1:${closed}/client.json`),
      'the client metadata document could not be fetched',
    )
  })

  it('logs a rejection with its reason', async () => {
    const warnings: object[] = []
    const logger = { warn: (obj: object) => warnings.push(obj) }
    await expect(
      resolveMetadataDocumentClient(`${base}/status-404`, { store, clock, logger }, testOptions),
    ).rejects.toThrow(OAuthError)
    expect(warnings).toEqual([
      {
        clientId: `${base}/status-404`,
        reason: 'the client metadata document URL answered HTTP 404, expected 200',
        cause: undefined,
      },
    ])
  })
})

describe('resolveMetadataDocumentClient validation', () => {
  it.each([
    ['/mismatch', 'client_id: must equal the URL the document was fetched from'],
    [
      '/secret',
      'client_secret: must not appear in a client metadata document (no shared secret can be established)',
    ],
    [
      '/secret-expires',
      'client_secret_expires_at: must not appear in a client metadata document (no shared secret can be established)',
    ],
    [
      '/auth-basic',
      'token_endpoint_auth_method: client_secret methods need a shared secret, which a metadata document cannot establish; use none or private_key_jwt',
    ],
    [
      '/auth-private-key-jwt',
      'jwks_uri: private_key_jwt needs the client keys, in jwks_uri or jwks',
    ],
    ['/no-name', 'client_name: is required'],
    ['/no-redirect-uris', 'redirect_uris: is required'],
    [
      '/bad-redirect-uri',
      'redirect_uris: http://evil.example/cb must use https (plain http only on loopback)',
    ],
    ['/array', 'the client metadata document must be a JSON object'],
    ['/not-json', 'the client metadata document is not valid JSON'],
    ['/html', 'the client metadata document must be served as application/json'],
  ])('rejects %s with invalid_client', async (path, description) => {
    await expectInvalidClient(resolve(`${base}${path}`), description)
  })
})

describe('resolveMetadataDocumentClient fetch guards', () => {
  it('rejects a status other than 200', async () => {
    await expectInvalidClient(
      resolve(`${base}/status-404`),
      'the client metadata document URL answered HTTP 404, expected 200',
    )
  })

  it('does not follow redirects', async () => {
    await expectInvalidClient(
      resolve(`${base}/redirect`),
      'the client metadata document URL answered HTTP 302; redirects are not followed',
    )
    expect(hits.get('/valid')).toBeUndefined()
  })

  it('rejects a document whose Content-Length exceeds maxBytes', async () => {
    await expectInvalidClient(
      resolve(`${base}/too-large-length`),
      'the client metadata document is larger than 5120 bytes',
    )
  })

  it('stops reading a chunked document once it exceeds maxBytes', async () => {
    await expectInvalidClient(
      resolve(`${base}/too-large-chunked`),
      'the client metadata document is larger than 5120 bytes',
    )
  })

  it('aborts when the server does not answer within timeoutMs', async () => {
    await expectInvalidClient(
      resolve(`${base}/hang`, { ...testOptions, timeoutMs: 300 }),
      'the client metadata document could not be fetched',
    )
    // The abort closes the connection rather than leaving it to the server's timeout.
    expect(hungSocketClosed).toBeDefined()
    await hungSocketClosed
  })

  it('keeps TLS certificate verification on', async () => {
    await expectInvalidClient(
      resolve(`${base}/valid`, { allowPrivateAddresses: true }),
      'the client metadata document could not be fetched',
    )
  })

  it('refuses a loopback IP literal by default without connecting', async () => {
    await expectInvalidClient(
      resolve(`${base}/valid`, { ca: certPem }),
      'client_id: 127.0.0.1 is not a public address; metadata documents are only fetched from public addresses',
    )
    expect(connections).toBe(0)
    expect(hits.size).toBe(0)
  })

  it('refuses a host name that resolves to loopback by default without connecting', async () => {
    await expectInvalidClient(
      resolve(`https://localhost:${port}/valid`, { ca: certPem }),
      'client_id: localhost resolves to a non-public address; metadata documents are only fetched from public addresses',
    )
    expect(connections).toBe(0)
    expect(hits.size).toBe(0)
  })

  it.each([
    ['https://10.0.0.1/client.json', '10.0.0.1'],
    ['https://169.254.169.254/latest/meta-data', '169.254.169.254'],
    ['https://[::1]/client.json', '::1'],
    ['https://[::ffff:127.0.0.1]/client.json', '::ffff:7f00:1'],
    ['https://0x7f.1/client.json', '127.0.0.1'],
  ])('refuses the private IP literal %s before any network traffic', async (clientId, host) => {
    // Reaching the network for these would time out (or hit something local); the refusal is
    // immediate, and the default options apply.
    await expectInvalidClient(
      resolveMetadataDocumentClient(clientId, { store, clock }),
      `client_id: ${host} is not a public address; metadata documents are only fetched from public addresses`,
    )
  })

  it('rejects a client_id that is not a metadata document URL', async () => {
    await expectInvalidClient(
      resolve('https://app.example/'),
      'client_id: must contain a path component',
    )
  })
})

describe('isMetadataDocumentUrl', () => {
  it.each([
    ['https://app.example/client.json', true],
    ['https://app.example/oauth/client-metadata', true],
    ['https://app.example:8443/client.json', true],
    ['https://app.example/client.json?v=1', false],
    ['http://app.example/client.json', false],
    ['https://app.example', false],
    ['https://app.example/', false],
    ['https://app.example/client.json#frag', false],
    ['https://app.example/client.json#', false],
    ['https://user:pass@app.example/client.json', false],
    ['https://user@app.example/client.json', false],
    ['https://app.example/a/../client.json', false],
    ['https://app.example/./client.json', false],
    ['https://app.example/a/%2e%2E/client.json', false],
    ['https://app.example/client.json/..', false],
    ['https://app.example\\client.json', false],
    ['client-123', false],
    ['', false],
  ])('%s -> %s', (clientId, expected) => {
    expect(isMetadataDocumentUrl(clientId)).toBe(expected)
  })
})

describe('isPublicAddress', () => {
  it.each([
    ['8.8.8.8', true],
    ['1.1.1.1', true],
    ['172.32.0.1', true],
    ['100.128.0.1', true],
    ['2606:4700:4700::1111', true],
    ['::ffff:8.8.8.8', true],
    ['64:ff9b::808:808', true],
    ['2002:808:808::1', true],
    ['0.0.0.0', false],
    ['10.1.2.3', false],
    ['100.64.0.1', false],
    ['127.0.0.1', false],
    ['127.255.255.254', false],
    ['169.254.169.254', false],
    ['172.16.0.1', false],
    ['172.31.255.255', false],
    ['192.168.1.1', false],
    ['198.18.0.1', false],
    ['224.0.0.1', false],
    ['240.0.0.1', false],
    ['255.255.255.255', false],
    ['::', false],
    ['::1', false],
    ['::ffff:127.0.0.1', false],
    ['::ffff:7f00:1', false],
    ['::ffff:10.0.0.1', false],
    ['::127.0.0.1', false],
    ['64:ff9b::a9fe:a9fe', false],
    ['2002:7f00:1::', false],
    ['2001::1', false],
    ['2001:db8::1', false],
    ['fc00::1', false],
    ['fd12:3456::1', false],
    ['fe80::1', false],
    ['fe80::1%eth0', false],
    ['ff02::1', false],
    ['localhost', false],
    ['', false],
  ])('%s -> %s', (ip, expected) => {
    expect(isPublicAddress(ip)).toBe(expected)
  })
})

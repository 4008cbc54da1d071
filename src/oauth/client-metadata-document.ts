import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import type { IncomingMessage } from 'node:http'
import { request } from 'node:https'
import { isIP, type LookupFunction } from 'node:net'
import { rootCertificates } from 'node:tls'
import type { Clock } from '../clock.js'
import { sha256 } from '../crypto.js'
import { OAuthError } from '../errors.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import type { Store } from '../store/store.js'
import type { Client } from './client.js'
import { type ValidatedClientMetadata, validateClientMetadata } from './client-metadata.js'

/** How Client ID Metadata Documents are fetched and cached. */
export interface MetadataDocumentOptions {
  /** Refuse documents larger than this (default 5 * 1024 bytes, the draft's §6.6 advice). */
  maxBytes: number
  /** Abort the whole fetch (DNS, connect, TLS, response) after this (default 5000 ms). */
  timeoutMs: number
  /** Upper bound on caching whatever Cache-Control says (default 86_400 s). */
  maxCacheSeconds: number
  /** Cache lifetime when the response has no max-age (default 300 s); no-store/no-cache: none. */
  defaultCacheSeconds: number
  /** Tests only: allow loopback/private addresses (never the default). */
  allowPrivateAddresses: boolean
  /** Tests only: extra trusted CA certificates (PEM) for the TLS connection. */
  ca?: string | undefined
  /** Fetches one instance runs at once (default 8); past it a client_id is refused for now. */
  maxConcurrentFetches: number
  /** Fetches a minute from one host, per instance (default 30). */
  perHostPerMinute: number
}

/** The defaults: 5 KiB, 5 s, cache 5 min unless told otherwise and never beyond a day. */
export const DEFAULT_METADATA_DOCUMENT_OPTIONS: MetadataDocumentOptions = Object.freeze({
  maxBytes: 5 * 1024,
  timeoutMs: 5000,
  maxCacheSeconds: 86_400,
  defaultCacheSeconds: 300,
  allowPrivateAddresses: false,
  ca: undefined,
  maxConcurrentFetches: 8,
  perHostPerMinute: 30,
})

/** What the cache holds for a client_id URL: the client, or why its document was refused. */
type Cached = Client | { readonly failure: string }

/**
 * This instance's bounds on outbound metadata document fetches: how many run at once, and how
 * many a minute go to one host. Lives as long as the app (one per `createClients`).
 */
export interface MetadataDocumentFetches {
  /** Takes a fetch slot for `host`, or throws `invalid_client` when none is free. */
  acquire(host: string, now: number): () => void
}

/** Bounds for `resolveMetadataDocumentClient`'s fetches (see `MetadataDocumentFetches`). */
export function createMetadataDocumentFetches(
  options: Pick<MetadataDocumentOptions, 'maxConcurrentFetches' | 'perHostPerMinute'>,
): MetadataDocumentFetches {
  let running = 0
  const perHost = new Map<string, { window: number; count: number }>()
  const busy = () =>
    new OAuthError(
      'invalid_client',
      'the client metadata document cannot be fetched right now; try again shortly',
    )
  return {
    acquire(host, now) {
      const window = Math.floor(now / 60)
      if (running >= options.maxConcurrentFetches) throw busy()
      const seen = perHost.get(host)
      const count = seen?.window === window ? seen.count : 0
      if (count >= options.perHostPerMinute) throw busy()
      if (perHost.size >= 10_000) {
        for (const [key, entry] of perHost) if (entry.window !== window) perHost.delete(key)
      }
      perHost.set(host, { window, count: count + 1 })
      running++
      let released = false
      return () => {
        if (released) return
        released = true
        running--
      }
    },
  }
}

const MAX_URL_LENGTH = 2048

/**
 * What is wrong with `clientId` as a Client ID Metadata Document URL, or undefined when it is
 * one (draft-ietf-oauth-client-id-metadata-document §3): https, a path other than `/`, no `.`
 * or `..` segments, no fragment, no username or password, and no query: the draft says client
 * identifier URLs SHOULD NOT have one, and accepting it would make every query variant another
 * client, fetched and cached apart. Any port is allowed.
 */
export function checkMetadataDocumentUrl(clientId: string): string | undefined {
  if (clientId.length > MAX_URL_LENGTH) return 'is too long'
  // The WHATWG parser silently rewrites these, so the URL fetched would not be the client_id.
  if (/[\s\\]/.test(clientId) || hasControlCharacters(clientId)) {
    return 'must not contain whitespace, control characters or backslashes'
  }
  if (!URL.canParse(clientId)) return 'is not an absolute URL'
  const url = new URL(clientId)
  if (url.protocol !== 'https:') return 'must use the https scheme'
  if (clientId.includes('#')) return 'must not contain a fragment'
  // `https://@host/` parses to an empty username, so look at the raw authority too.
  if (url.username || url.password || /^https:\/\/[^/?]*@/i.test(clientId)) {
    return 'must not contain a username or password'
  }
  // The parser removes dot segments (also %2e forms), so inspect the path as written.
  const rawPath = /^https:\/\/[^/?]*([^?]*)/i.exec(clientId)?.[1] ?? ''
  const segments = rawPath.split('/').map((s) => s.toLowerCase().replaceAll('%2e', '.'))
  if (segments.some((s) => s === '.' || s === '..')) return 'must not contain . or .. path segments'
  if (url.pathname === '/') return 'must contain a path component'
  if (clientId.includes('?')) return 'must not contain a query'
  return undefined
}

/**
 * Whether a `client_id` names a metadata document but breaks a rule that only metadata
 * document URLs have (a query), so it is refused as one instead of looked up as a registration.
 */
export function isRefusedMetadataDocumentUrl(clientId: string): boolean {
  return (
    /^https:\/\//i.test(clientId) &&
    checkMetadataDocumentUrl(clientId) === 'must not contain a query'
  )
}

function hasControlCharacters(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return true
  }
  return false
}

/**
 * Whether a `client_id` is a Client ID Metadata Document URL (draft §3): cheap and synchronous,
 * for routing a client_id to `resolveMetadataDocumentClient` rather than the client store.
 */
export function isMetadataDocumentUrl(clientId: string): boolean {
  return checkMetadataDocumentUrl(clientId) === undefined
}

/**
 * Resolves a client whose `client_id` is a metadata document URL (MCP 2025-11-25, draft §4):
 * from the cache (`storeKey.metadataDocument`) or by fetching the document with SSRF guards (draft
 * §6.5: public addresses only, checked on the addresses actually connected to; no redirects;
 * §6.6 size cap; one overall timeout) and validating it (§4.1: `client_id` equal to the URL, no
 * shared-secret authentication; we also require `client_name` and `redirect_uris`). Valid
 * documents are cached per Cache-Control within bounds (§4.4), refusals for a minute. Fetches
 * are bounded by `fetches` (at once, and per host a minute). Every failure is `invalid_client`
 * with a description for the client's developer — network failures without their cause, which
 * would tell a prober what answers where; the store's own failures propagate as they are,
 * since they are not the client's fault.
 */
export async function resolveMetadataDocumentClient(
  clientId: string,
  deps: {
    store: Store
    clock: Clock
    logger?: { warn(obj: object, msg: string): void }
    fetches?: MetadataDocumentFetches
  },
  options?: Partial<MetadataDocumentOptions>,
): Promise<Client> {
  const opts: MetadataDocumentOptions = { ...DEFAULT_METADATA_DOCUMENT_OPTIONS, ...options }
  const problem = checkMetadataDocumentUrl(clientId)
  if (problem)
    throw rejected(deps, clientId, new OAuthError('invalid_client', `client_id: ${problem}`))
  const key = storeKey.metadataDocument(sha256(clientId))
  const cached = await deps.store.get<Cached>(key)
  if (cached && 'failure' in cached) throw new OAuthError('invalid_client', cached.failure)
  if (cached) return cached

  const url = new URL(clientId)
  const fetches = deps.fetches ?? createMetadataDocumentFetches(opts)
  const release = fetches.acquire(url.host.toLowerCase(), deps.clock.now())
  const fetchedAt = deps.clock.now()
  let fetched: { client: Client; cacheSeconds: number }
  try {
    const response = await fetchDocument(url, opts)
    fetched = {
      client: toClient(clientId, parseJson(response.body), fetchedAt),
      cacheSeconds: cacheSeconds(response.cacheControl, opts),
    }
  } catch (error) {
    const rejection = rejected(deps, clientId, error)
    // Not fetched again for a minute: retrying on every request would let anyone make this
    // server hammer (or probe) a host at the rate of their own requests.
    await deps.store.put<Cached>(
      key,
      { failure: rejection.description ?? 'the client metadata document was refused' },
      KEY_TTL_SECONDS.metadataDocumentRefusal,
    )
    throw rejection
  } finally {
    release()
  }
  if (fetched.cacheSeconds > 0) await deps.store.put(key, fetched.client, fetched.cacheSeconds)
  return fetched.client
}

function rejected(
  deps: { logger?: { warn(obj: object, msg: string): void } },
  clientId: string,
  error: unknown,
): OAuthError {
  const rejection =
    error instanceof OAuthError
      ? error
      : new OAuthError('invalid_client', 'the client metadata document could not be fetched', {
          internal: error,
        })
  deps.logger?.warn(
    {
      clientId,
      reason: rejection.description,
      cause:
        errorCode(rejection.internal) ??
        (rejection.internal instanceof Error ? rejection.internal.message : undefined),
    },
    'client metadata document rejected',
  )
  return rejection
}

function toClient(clientId: string, doc: unknown, fetchedAt: number): Client {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new OAuthError('invalid_client', 'the client metadata document must be a JSON object')
  }
  const fields = doc as Record<string, unknown>
  // §4.1: simple string comparison (RFC 3986 §6.2.1), so no normalisation on either side.
  if (fields.client_id !== clientId) {
    throw new OAuthError(
      'invalid_client',
      'client_id: must equal the URL the document was fetched from',
    )
  }
  for (const field of ['client_secret', 'client_secret_expires_at']) {
    if (field in fields) {
      throw new OAuthError(
        'invalid_client',
        `${field}: must not appear in a client metadata document (no shared secret can be established)`,
      )
    }
  }
  const method = fields.token_endpoint_auth_method
  // private_key_jwt (ChatGPT's connector) needs no shared secret: the keys are the client's.
  if (method !== undefined && method !== 'none' && method !== 'private_key_jwt') {
    throw new OAuthError(
      'invalid_client',
      typeof method === 'string' && method.startsWith('client_secret')
        ? 'token_endpoint_auth_method: client_secret methods need a shared secret, which a metadata document cannot establish; use none or private_key_jwt'
        : 'token_endpoint_auth_method: must be none or private_key_jwt for metadata document clients',
    )
  }
  let metadata: ValidatedClientMetadata
  try {
    metadata = validateClientMetadata({ ...fields, token_endpoint_auth_method: method ?? 'none' })
  } catch (error) {
    // At /authorize and /token an unusable client_id is invalid_client (RFC 6749 §5.2), not a
    // registration error.
    if (error instanceof OAuthError) throw new OAuthError('invalid_client', error.description)
    throw error
  }
  if (!metadata.clientName) throw new OAuthError('invalid_client', 'client_name: is required')
  return {
    ...metadata,
    clientId,
    source: 'metadata-document',
    clientIdIssuedAt: Math.floor(fetchedAt),
  }
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body)
  } catch {
    throw new OAuthError('invalid_client', 'the client metadata document is not valid JSON')
  }
}

/** RFC 9111 §5.2.2: no-store and no-cache (which would need revalidation) mean no caching. */
export function cacheSeconds(
  cacheControl: string | undefined,
  opts: MetadataDocumentOptions,
): number {
  let maxAge: number | undefined
  for (const directive of (cacheControl ?? '').toLowerCase().split(',')) {
    const [name, raw] = directive.trim().split('=', 2)
    if (name === 'no-store' || name === 'no-cache') return 0
    // RFC 9111 §5.2: senders must use the token form, but recipients should accept quotes.
    const value = raw?.replace(/^"(.*)"$/, '$1')
    if (name === 'max-age' && value && /^\d+$/.test(value)) maxAge = Number(value)
  }
  return Math.min(maxAge ?? opts.defaultCacheSeconds, opts.maxCacheSeconds)
}

const JSON_MEDIA_TYPE = /^(application\/json|[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+json)$/

/**
 * One GET with every guard on: public addresses only (checked again at connect time through
 * `lookup`, so a DNS answer that changes between check and connect cannot slip through), TLS
 * verification pinned on, no redirects, a byte cap and one timer for the whole exchange.
 */
export function fetchDocument(
  url: URL,
  opts: MetadataDocumentOptions,
): Promise<{ body: string; cacheControl: string | undefined }> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  if (isIP(host) && !opts.allowPrivateAddresses && !isPublicAddress(host)) {
    return Promise.reject(
      new OAuthError(
        'invalid_client',
        `client_id: ${host} is not a public address; metadata documents are only fetched from public addresses`,
      ),
    )
  }
  return new Promise((resolve, reject) => {
    let settled = false
    const req = request({
      host,
      port: url.port || 443,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { accept: 'application/json' },
      // A fresh agent: no pooled socket from another request is ever reused.
      agent: false,
      lookup: guardedLookup(host, opts.allowPrivateAddresses),
      rejectUnauthorized: true,
      ...(opts.ca ? { ca: [...rootCertificates, opts.ca] } : {}),
    })
    // As generic as a refused connection: telling a timeout from a refusal maps ports.
    const timer = setTimeout(
      () => fail(networkError(new Error(`no answer within ${opts.timeoutMs} ms`))),
      opts.timeoutMs,
    )
    function fail(error: OAuthError) {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      reject(error)
    }
    function succeed(value: { body: string; cacheControl: string | undefined }) {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve(value)
    }
    req.on('error', (error) => fail(error instanceof OAuthError ? error : networkError(error)))
    req.on('response', (res: IncomingMessage) => {
      const problem = responseProblem(res, opts.maxBytes)
      if (problem) return fail(new OAuthError('invalid_client', problem))
      const chunks: Buffer[] = []
      let received = 0
      res.on('data', (chunk: Buffer) => {
        received += chunk.length
        if (received > opts.maxBytes) {
          fail(
            new OAuthError(
              'invalid_client',
              `the client metadata document is larger than ${opts.maxBytes} bytes`,
            ),
          )
        } else chunks.push(chunk)
      })
      res.on('end', () => {
        const cacheControl = res.headers['cache-control']
        succeed({ body: Buffer.concat(chunks).toString('utf8'), cacheControl })
      })
      res.on('error', (error) => fail(networkError(error)))
      res.on('close', () => {
        if (!res.complete) fail(networkError(new Error('connection closed mid-response')))
      })
    })
    req.end()
  })
}

function responseProblem(res: IncomingMessage, maxBytes: number): string | undefined {
  const status = res.statusCode ?? 0
  // §4.1 of the draft and SSRF: a redirect could point anywhere, including inside the network.
  if (status >= 300 && status < 400) {
    return `the client metadata document URL answered HTTP ${status}; redirects are not followed`
  }
  if (status !== 200)
    return `the client metadata document URL answered HTTP ${status}, expected 200`
  const mediaType = (res.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? ''
  if (!JSON_MEDIA_TYPE.test(mediaType)) {
    return 'the client metadata document must be served as application/json'
  }
  const length = Number(res.headers['content-length'])
  if (Number.isFinite(length) && length > maxBytes) {
    return `the client metadata document is larger than ${maxBytes} bytes`
  }
  return undefined
}

function guardedLookup(host: string, allowPrivateAddresses: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) {
        const notFound = error.code === 'ENOTFOUND' || error.code === 'ENODATA'
        return callback(
          notFound
            ? new OAuthError('invalid_client', `client_id: ${host} could not be resolved`)
            : error,
          '',
        )
      }
      // Refuse when ANY answer is non-public: connecting to a "good" one while a bad one exists
      // would make the outcome depend on address selection.
      if (!allowPrivateAddresses && addresses.some((a) => !isPublicAddress(a.address))) {
        return callback(
          new OAuthError(
            'invalid_client',
            `client_id: ${host} resolves to a non-public address; metadata documents are only fetched from public addresses`,
          ),
          '',
        )
      }
      const first = addresses[0]
      if (options.all) callback(null, addresses)
      else if (first) callback(null, first.address, first.family)
      else
        callback(new OAuthError('invalid_client', `client_id: ${host} could not be resolved`), '')
    })
  }
}

/** One description for every network failure; the cause is logged, never shown. */
function networkError(error: unknown): OAuthError {
  return new OAuthError('invalid_client', 'the client metadata document could not be fetched', {
    internal: error,
  })
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

// Non-public IPv4 ranges (RFC 6890 and its updates): [network, prefix length].
const NON_PUBLIC_IPV4: readonly (readonly [string, number])[] = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT shared address space
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata endpoints
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and 255.255.255.255 broadcast
]

/**
 * Whether `ip` (a literal IPv4 or IPv6 address) is a public unicast address a server may fetch
 * from (draft §6.5). IPv6 must be global unicast (2000::/3, less 2001::/23 and documentation);
 * IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the IPv4
 * address they carry. Anything unparseable, or with a zone index, is not public.
 */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip)
  if (family === 4) return isPublicIPv4(ipv4ToNumber(ip))
  if (family !== 6 || ip.includes('%')) return false
  const value = ipv6ToBigInt(ip)
  if (value === undefined) return false
  const inPrefix = (network: bigint, bits: number) =>
    value >> BigInt(128 - bits) === network >> BigInt(128 - bits)
  const low32 = Number(value & 0xffffffffn)
  if (inPrefix(0xffffn << 32n, 96)) return isPublicIPv4(low32)
  if (inPrefix(0x0064ff9bn << 96n, 96)) return isPublicIPv4(low32)
  if (inPrefix(0x2002n << 112n, 16)) return isPublicIPv4(Number((value >> 80n) & 0xffffffffn))
  return (
    inPrefix(0x2000n << 112n, 3) &&
    !inPrefix(0x2001n << 112n, 23) && // IETF protocol assignments, Teredo
    !inPrefix(0x20010db8n << 96n, 32) && // documentation
    !inPrefix(0x3fffn << 112n, 20) // documentation
  )
}

function isPublicIPv4(value: number): boolean {
  return !NON_PUBLIC_IPV4.some(([network, bits]) => {
    const mask = (0xffffffff << (32 - bits)) >>> 0
    return (value & mask) >>> 0 === ipv4ToNumber(network)
  })
}

function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0)
}

function ipv6ToBigInt(ip: string): bigint | undefined {
  let text = ip
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1]
  if (dotted) {
    const v4 = ipv4ToNumber(dotted)
    text = `${text.slice(0, -dotted.length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const missing = 8 - left.length - right.length
  if (tail === undefined ? missing !== 0 : missing < 1) return undefined
  const groups = [...left, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...right]
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(Number.parseInt(group, 16)), 0n)
}

import { existsSync } from 'node:fs'
import type { JSONWebKeySet } from 'jose'
import { z } from 'zod'
import { isLoopbackHost } from './loopback.js'
import { PublicJwks } from './oauth/client-keys.js'
import { checkRedirectUri } from './oauth/redirect-uri.js'
import type { RedisStoreOptions } from './store/redis.js'

/** Which upstream identity provider signs users in. */
export type UpstreamKind = 'kinde' | 'auth0' | 'oidc'

/** The upstream as configured: where it is and how the proxy authenticates to it. */
export interface UpstreamSettings {
  readonly kind: UpstreamKind
  /** The issuer exactly as the provider's discovery document states it. */
  readonly issuer: URL
  readonly clientId: string
  readonly clientSecret: string | undefined
  /** API audience sent as `audience`; Kinde and Auth0 return JWT access tokens only with it. */
  readonly audience: string | undefined
  /** How the consent page names the provider (`UPSTREAM_NAME`); default per kind. */
  readonly displayName?: string | undefined
}

/** A first-party client declared in configuration rather than registered at run time. */
export interface StaticClientSettings {
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly clientName: string
  readonly redirectUris: readonly string[]
  readonly grantTypes: readonly string[]
  /** Public keys of a `private_key_jwt` client (RFC 7523), instead of a secret. */
  readonly jwks?: JSONWebKeySet | undefined
}

/** Everything the proxy needs to know at start-up, parsed once and frozen. */
export interface Config {
  /** The public origin, e.g. `https://mcp.example.com`; every route hangs under it. */
  readonly publicUrl: URL
  /** The authorization server's issuer identifier (RFC 8414 §2): the public origin, no slash. */
  readonly issuer: string
  /** The protected MCP resource (RFC 8707, RFC 9728): `PUBLIC_URL/mcp`. */
  readonly resource: string
  readonly host: string
  readonly port: number
  readonly upstream: UpstreamSettings
  readonly redisUrl: string | undefined
  readonly redisKeyPrefix: string
  /** How long a Redis command (and connecting) may take before the store counts as down. */
  readonly redisTimeoutMs: number
  /** The Redis topology (single node, Sentinel or Cluster) and how to reach it; none: memory. */
  readonly redis: RedisStoreOptions | undefined
  readonly signingKey: string | undefined
  readonly signingKeyPrevious: string | undefined
  readonly encryptionKey: string | undefined
  /** Encrypts generated keys in the store; absent: derived from the upstream client secret. */
  readonly keysSecret: string | undefined
  /** Scopes of the MCP resource, advertised in the protected-resource metadata. */
  readonly scopes: readonly string[]
  /** Scopes of `scopes` granted to every signed-in user, like the OpenID Connect ones. */
  readonly openScopes: readonly string[]
  /**
   * For a scope, the upstream permissions or scopes besides its own name that back it
   * (`SCOPE_PERMISSIONS`); a scope neither open nor backed is left out of the grant.
   */
  readonly scopePermissions: ReadonlyMap<string, readonly string[]>
  readonly consent: 'prompt' | 'skip'
  readonly allowedEmailDomains: readonly string[]
  readonly allowedOrgCodes: readonly string[]
  readonly requiredPermissions: readonly string[]
  /** Upstream M2M client ids allowed to use client_credentials; empty allows every one. */
  readonly m2mAllowedClients: readonly string[]
  readonly staticClients: readonly StaticClientSettings[]
  readonly clientIdMetadataDocuments: boolean
  /** Requests a minute per client IP at `/register`; 0 turns the limit off. */
  readonly registerRateLimit: number
  /**
   * At `/token`, a minute: requests that proved themselves per client id, and failed requests
   * per client IP; 0 turns the limit off.
   */
  readonly tokenRateLimit: number
  /** Requests a minute per client IP at `/authorize` and its consent form; 0 turns it off. */
  readonly authorizeRateLimit: number
  readonly accessTokenTtlSeconds: number
  readonly refreshTokenTtlSeconds: number
  readonly refreshGraceSeconds: number
  readonly authCodeTtlSeconds: number
  readonly transactionTtlSeconds: number
  readonly clientIdleTtlSeconds: number
  readonly keyRotationSeconds: number
  readonly upstreamTimeoutSeconds: number
  readonly mcpUpstreamUrl: URL | undefined
  /**
   * The Bearer `/mcp` forwards to `mcpUpstreamUrl`: the caller's upstream access token, or a
   * short HS256 JWT minted with `downstreamJwtSecret` for backends that trust their own secret.
   */
  readonly mcpUpstreamToken: 'upstream' | 'downstream-jwt'
  readonly downstreamJwtSecret: string | undefined
  /** `aud` of downstream JWTs; undefined means the origin of `mcpUpstreamUrl`. */
  readonly downstreamJwtAudience: string | undefined
  readonly mcpSessions: 'stateful' | 'stateless'
  /** Browser origins besides PUBLIC_URL's and loopback that may call `/mcp`; `*` for any. */
  readonly mcpAllowedOrigins: readonly string[]
  /** Take the client address from `X-Forwarded-For` (only behind a proxy you run). */
  readonly trustProxy: boolean
  /** A request (headers and body) not received within this is cut (Node's `requestTimeout`). */
  readonly requestTimeoutMs: number
  /** Open connections an instance accepts; more are closed at once. 0: no cap. */
  readonly maxConnections: number
  readonly logLevel: string
  /** Where audit events go: a file path, or undefined for stdout with the other logs. */
  readonly auditLog: string | undefined
  /** Bearer token that `/metrics` requires; undefined leaves it open (firewall it instead). */
  readonly metricsToken: string | undefined
  /** Issue and accept DPoP-bound tokens only (RFC 9449): `/token` refuses requests without a proof. */
  readonly dpopRequired: boolean
}

/** Start-up configuration is wrong; `problems` has one line per variable. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'))
    this.name = 'ConfigError'
  }
}

/** The scopes OpenID Connect defines: granted to every signed-in user, never backed upstream. */
export const OIDC_SCOPES: readonly string[] = Object.freeze([
  'openid',
  'profile',
  'email',
  'offline_access',
])

/**
 * An absolute URL without credentials or fragment: https, or plain http on loopback (or
 * anywhere, for `httpAnywhere`, when another variable has said so explicitly).
 */
const urlSetting = (httpAnywhere: boolean) =>
  z
    .string()
    .trim()
    .transform((value, ctx) => {
      let url: URL
      try {
        url = new URL(value)
      } catch {
        ctx.addIssue({ code: 'custom', message: `"${value}" is not a URL` })
        return z.NEVER
      }
      const http = url.protocol === 'http:' && (httpAnywhere || isLoopbackHost(url.hostname))
      if (url.protocol !== 'https:' && !http) {
        ctx.addIssue({
          code: 'custom',
          message: 'must be an https URL (plain http only on loopback)',
        })
        return z.NEVER
      }
      if (url.username || url.password || url.hash) {
        ctx.addIssue({ code: 'custom', message: 'must not contain credentials or a fragment' })
        return z.NEVER
      }
      return url
    })

const secureUrl = urlSetting(false)

const publicUrl = secureUrl.superRefine((url, ctx) => {
  if ((url.pathname !== '/' && url.pathname !== '') || url.search) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be an origin without a path or query, e.g. https://mcp.example.com',
    })
  }
})

/** A bare domain (`acme.kinde.com`) means https on it, as the providers' own SDKs read it. */
const domainOrUrl = z
  .string()
  .trim()
  .transform((value) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}`))
  .pipe(secureUrl)

/** `AUTH0_DOMAIN` is `tenant.auth0.com` or a full URL; Auth0's issuer ends with a slash. */
const auth0Domain = domainOrUrl.transform(
  (url) => new URL(url.pathname.endsWith('/') ? url.href : `${url.href}/`),
)

const list = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(/[\s,]+/)
      .map((item) => item.trim())
      .filter(Boolean),
  )

const wholeNumber = (message: string) => z.coerce.number({ error: message }).int(message)

const seconds = (fallback: number) =>
  wholeNumber('must be a whole number of seconds').positive('must be positive').default(fallback)

const rate = (fallback: number) =>
  wholeNumber('must be a whole number').nonnegative('must be 0 or more').default(fallback)

const bool = (fallback: boolean) =>
  z.stringbool({ error: 'must be true or false' }).default(fallback)

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` })

const nonEmpty = z.string().trim().min(1, 'must not be empty')

/** `host:port,host:port,…` (`[::1]:port` for IPv6); a missing port is `defaultPort`. */
const hostPorts = (defaultPort: number) =>
  z.string().transform((value, ctx) => {
    const nodes = []
    for (const item of value.split(/[\s,]+/).filter(Boolean)) {
      const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/.exec(item)
      const port = Number(match?.[2] ?? defaultPort)
      if (!match?.[1] || port < 1 || port > 65_535) {
        ctx.addIssue({ code: 'custom', message: `"${item}" is not host:port` })
        return z.NEVER
      }
      nodes.push({ host: match[1].replace(/^\[|\]$/g, ''), port })
    }
    if (!nodes.length) {
      ctx.addIssue({ code: 'custom', message: 'must list at least one host:port' })
      return z.NEVER
    }
    return nodes
  })

const staticClient = z.object({
  client_id: nonEmpty,
  client_secret: nonEmpty.optional(),
  client_name: nonEmpty.optional(),
  redirect_uris: z.array(nonEmpty).min(1, 'needs at least one redirect URI'),
  grant_types: z
    .array(z.enum(['authorization_code', 'refresh_token']))
    .default(['authorization_code', 'refresh_token']),
  jwks: PublicJwks.optional(),
})

const staticClients = z
  .string()
  .optional()
  .transform((value, ctx) => {
    if (!value?.trim()) return []
    let json: unknown
    try {
      json = JSON.parse(value)
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of client objects' })
      return z.NEVER
    }
    const parsed = z.array(staticClient).safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      ctx.addIssue({ code: 'custom', message: `${issue?.path.join('.')}: ${issue?.message}` })
      return z.NEVER
    }
    for (const [i, client] of parsed.data.entries()) {
      if (client.jwks && client.client_secret) {
        ctx.addIssue({
          code: 'custom',
          message: `${i}: client_secret and jwks are two authentication methods; keep one`,
        })
        return z.NEVER
      }
      for (const uri of client.redirect_uris) {
        const problem = checkRedirectUri(uri, 'native')
        if (problem) {
          ctx.addIssue({ code: 'custom', message: `${i}.redirect_uris: ${uri}: ${problem}` })
          return z.NEVER
        }
      }
    }
    return parsed.data.map(
      (client): StaticClientSettings => ({
        clientId: client.client_id,
        clientSecret: client.client_secret,
        clientName: client.client_name ?? client.client_id,
        redirectUris: client.redirect_uris,
        grantTypes: client.grant_types,
        jwks: client.jwks as JSONWebKeySet | undefined,
      }),
    )
  })

const DAY = 86_400

const EnvSchema = z.object({
  PUBLIC_URL: publicUrl,
  HOST: z.string().trim().min(1).default('0.0.0.0'),
  PORT: wholeNumber('must be a port number')
    .min(0, 'must be a port number')
    .max(65_535, 'must be a port number')
    .default(3000),
  UPSTREAM: oneOf(['kinde', 'auth0', 'oidc']).optional(),
  KINDE_ISSUER_URL: domainOrUrl.optional(),
  KINDE_CLIENT_ID: nonEmpty.optional(),
  KINDE_CLIENT_SECRET: nonEmpty.optional(),
  KINDE_AUDIENCE: nonEmpty.optional(),
  AUTH0_DOMAIN: auth0Domain.optional(),
  AUTH0_CLIENT_ID: nonEmpty.optional(),
  AUTH0_CLIENT_SECRET: nonEmpty.optional(),
  AUTH0_AUDIENCE: nonEmpty.optional(),
  OIDC_ISSUER_URL: secureUrl.optional(),
  OIDC_CLIENT_ID: nonEmpty.optional(),
  OIDC_CLIENT_SECRET: nonEmpty.optional(),
  OIDC_AUDIENCE: nonEmpty.optional(),
  UPSTREAM_NAME: nonEmpty.optional(),
  REDIS_URL: z
    .string()
    .trim()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional(),
  REDIS_SENTINELS: hostPorts(26_379).optional(),
  REDIS_SENTINEL_MASTER: nonEmpty.optional(),
  REDIS_CLUSTER_NODES: hostPorts(6379).optional(),
  REDIS_USERNAME: nonEmpty.optional(),
  REDIS_PASSWORD: z.string().optional(),
  REDIS_TLS: bool(false),
  // Redis Cluster hashes the first {…} of a key: braces in the prefix would put every key in
  // one slot, or cut the schema's hash tags apart.
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[^{}]*$/, 'must not contain { or } (Redis Cluster reads them as a hash tag)')
    .default('mcp-oauth-proxy:'),
  REDIS_WAIT_REPLICAS: wholeNumber('must be a whole number')
    .nonnegative('must be 0 or more')
    .optional(),
  REDIS_TIMEOUT_MS: wholeNumber('must be a whole number of milliseconds')
    .positive('must be positive')
    .default(2000),
  SIGNING_KEY: nonEmpty.optional(),
  SIGNING_KEY_PREVIOUS: nonEmpty.optional(),
  ENCRYPTION_KEY: nonEmpty.optional(),
  KEYS_SECRET: z
    .string()
    .refine(
      (secret) => Buffer.byteLength(secret) >= 32,
      'must be at least 32 bytes (e.g. openssl rand -base64 32)',
    )
    .optional(),
  SCOPES: list.transform((scopes) => (scopes.length ? scopes : ['openid', 'profile', 'email'])),
  OPEN_SCOPES: list,
  SCOPE_PERMISSIONS: list,
  CONSENT: oneOf(['prompt', 'skip']).default('prompt'),
  ALLOWED_EMAIL_DOMAINS: list.transform((domains) => domains.map((d) => d.toLowerCase())),
  ALLOWED_ORG_CODES: list,
  REQUIRED_PERMISSIONS: list,
  M2M_ALLOWED_CLIENTS: list,
  STATIC_CLIENTS: staticClients,
  CLIENT_ID_METADATA_DOCUMENTS: bool(true),
  REGISTER_RATE_LIMIT: rate(120),
  TOKEN_RATE_LIMIT: rate(300),
  AUTHORIZE_RATE_LIMIT: rate(60),
  ACCESS_TOKEN_TTL_SECONDS: seconds(3600),
  REFRESH_TOKEN_TTL_SECONDS: seconds(30 * DAY),
  REFRESH_GRACE_SECONDS: seconds(60),
  AUTH_CODE_TTL_SECONDS: seconds(60),
  TRANSACTION_TTL_SECONDS: seconds(600),
  CLIENT_IDLE_TTL_SECONDS: seconds(90 * DAY),
  KEY_ROTATION_SECONDS: seconds(30 * DAY),
  UPSTREAM_TIMEOUT_SECONDS: seconds(10),
  // http to a non-loopback backend is checked against MCP_UPSTREAM_ALLOW_HTTP below.
  MCP_UPSTREAM_URL: urlSetting(true).optional(),
  MCP_UPSTREAM_ALLOW_HTTP: bool(false),
  MCP_UPSTREAM_TOKEN: oneOf(['upstream', 'downstream-jwt']).default('upstream'),
  // Used as given (UTF-8 bytes), as Supabase and most HS256 verifiers take their secret.
  DOWNSTREAM_JWT_SECRET: z
    .string()
    .refine(
      (secret) => Buffer.byteLength(secret) >= 32,
      'must be at least 32 bytes (HS256 needs a 256-bit key)',
    )
    .optional(),
  DOWNSTREAM_JWT_AUDIENCE: nonEmpty.optional(),
  MCP_SESSIONS: oneOf(['stateful', 'stateless']).default('stateful'),
  MCP_ALLOWED_ORIGINS: list.superRefine((origins, ctx) => {
    for (const origin of origins) {
      if (origin !== '*' && (!URL.canParse(origin) || new URL(origin).origin !== origin)) {
        ctx.addIssue({
          code: 'custom',
          message: `${origin} is not an origin (scheme://host[:port], no path)`,
        })
      }
    }
  }),
  TRUST_PROXY: bool(false),
  REQUEST_TIMEOUT_MS: wholeNumber('must be a whole number of milliseconds')
    .positive('must be positive')
    .default(30_000),
  MAX_CONNECTIONS: rate(10_000),
  AUDIT_LOG: nonEmpty.optional(),
  METRICS_TOKEN: z.string().trim().min(16, 'must be at least 16 characters').optional(),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DPOP_REQUIRED: bool(false),
})

type Env = z.output<typeof EnvSchema>

/** Every environment variable the proxy reads (each is documented in `.env.example`). */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(EnvSchema.shape))

/**
 * Turns the environment into a frozen `Config`. Every bad variable is reported, one line
 * each (`NAME: what is wrong`), in a single `ConfigError`. Empty strings count as unset, as
 * they do in most `.env` tooling.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''),
  )
  const parsed = EnvSchema.safeParse(present)
  const problems: string[] = []
  // Variables already reported as bad: the checks across variables below leave them alone.
  const reported = new Set<string>()
  let vars: Env | undefined = parsed.data
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment')
      const message = name in present ? issue.message : 'is required'
      problems.push(`${name}: ${message}`)
      reported.add(name)
    }
    // The rest is still checked, so that one run names every problem. PUBLIC_URL is the only
    // required variable: a stand-in lets the others parse with their defaults (it is never
    // used, the problems above are thrown).
    const rest = Object.fromEntries(Object.entries(present).filter(([name]) => !reported.has(name)))
    const again = EnvSchema.safeParse({ PUBLIC_URL: 'https://public-url.invalid', ...rest })
    vars = again.success ? again.data : undefined
  }
  const upstream = vars && pickUpstream(vars, problems, reported)
  let scopePermissions: ReadonlyMap<string, readonly string[]> = new Map()
  let redis: RedisStoreOptions | undefined
  if (vars) {
    checkForwarding(vars, problems, reported)
    checkKeys(vars, problems)
    redis = redisOptions(vars, problems)
    scopePermissions = parseScopePermissions(vars, problems)
  }
  if (problems.length || !vars || !upstream) throw new ConfigError(problems)

  const origin = vars.PUBLIC_URL.origin
  return Object.freeze({
    publicUrl: new URL(origin),
    issuer: origin,
    resource: `${origin}/mcp`,
    host: vars.HOST,
    port: vars.PORT,
    upstream: Object.freeze(upstream),
    redisUrl: vars.REDIS_URL,
    redisKeyPrefix: vars.REDIS_KEY_PREFIX,
    redisTimeoutMs: vars.REDIS_TIMEOUT_MS,
    redis,
    signingKey: vars.SIGNING_KEY,
    signingKeyPrevious: vars.SIGNING_KEY_PREVIOUS,
    encryptionKey: vars.ENCRYPTION_KEY,
    keysSecret: vars.KEYS_SECRET,
    scopes: Object.freeze(vars.SCOPES.filter((scope) => scope !== 'offline_access')),
    openScopes: Object.freeze(vars.OPEN_SCOPES),
    scopePermissions,
    consent: vars.CONSENT,
    allowedEmailDomains: Object.freeze(vars.ALLOWED_EMAIL_DOMAINS),
    allowedOrgCodes: Object.freeze(vars.ALLOWED_ORG_CODES),
    requiredPermissions: Object.freeze(vars.REQUIRED_PERMISSIONS),
    m2mAllowedClients: Object.freeze(vars.M2M_ALLOWED_CLIENTS),
    staticClients: Object.freeze(vars.STATIC_CLIENTS),
    clientIdMetadataDocuments: vars.CLIENT_ID_METADATA_DOCUMENTS,
    registerRateLimit: vars.REGISTER_RATE_LIMIT,
    tokenRateLimit: vars.TOKEN_RATE_LIMIT,
    authorizeRateLimit: vars.AUTHORIZE_RATE_LIMIT,
    accessTokenTtlSeconds: vars.ACCESS_TOKEN_TTL_SECONDS,
    refreshTokenTtlSeconds: vars.REFRESH_TOKEN_TTL_SECONDS,
    refreshGraceSeconds: vars.REFRESH_GRACE_SECONDS,
    authCodeTtlSeconds: vars.AUTH_CODE_TTL_SECONDS,
    transactionTtlSeconds: vars.TRANSACTION_TTL_SECONDS,
    clientIdleTtlSeconds: vars.CLIENT_IDLE_TTL_SECONDS,
    keyRotationSeconds: vars.KEY_ROTATION_SECONDS,
    upstreamTimeoutSeconds: vars.UPSTREAM_TIMEOUT_SECONDS,
    mcpUpstreamUrl: vars.MCP_UPSTREAM_URL,
    mcpUpstreamToken: vars.MCP_UPSTREAM_TOKEN,
    downstreamJwtSecret: vars.DOWNSTREAM_JWT_SECRET,
    downstreamJwtAudience: vars.DOWNSTREAM_JWT_AUDIENCE,
    mcpSessions: vars.MCP_SESSIONS,
    mcpAllowedOrigins: Object.freeze(vars.MCP_ALLOWED_ORIGINS),
    trustProxy: vars.TRUST_PROXY,
    requestTimeoutMs: vars.REQUEST_TIMEOUT_MS,
    maxConnections: vars.MAX_CONNECTIONS,
    logLevel: vars.LOG_LEVEL,
    auditLog: vars.AUDIT_LOG,
    metricsToken: vars.METRICS_TOKEN,
    dpopRequired: vars.DPOP_REQUIRED,
  })
}

/**
 * The configuration of this process as the server and the CLI read it: a `.env` file in the
 * working directory when present, then the environment. Bad configuration is written to
 * stderr, one `config error: NAME: problem` line each, and the process exits 1.
 */
export function loadProcessConfig(): Config {
  if (existsSync('.env')) process.loadEnvFile('.env')
  try {
    return loadConfig(process.env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    for (const problem of error.problems) process.stderr.write(`config error: ${problem}\n`)
    process.exit(1)
  }
}

const UPSTREAM_KEYS = {
  kinde: ['KINDE_ISSUER_URL', 'KINDE_CLIENT_ID', 'KINDE_CLIENT_SECRET'],
  auth0: ['AUTH0_DOMAIN', 'AUTH0_CLIENT_ID', 'AUTH0_CLIENT_SECRET', 'AUTH0_AUDIENCE'],
  oidc: ['OIDC_ISSUER_URL', 'OIDC_CLIENT_ID'],
} as const satisfies Record<UpstreamKind, readonly (keyof Env)[]>

/** The variable that holds the address of an upstream of `kind`, for messages that name it. */
export function issuerVariable(kind: UpstreamKind): string {
  return UPSTREAM_KEYS[kind][0]
}

function pickUpstream(
  vars: Env,
  problems: string[],
  reported: ReadonlySet<string>,
): UpstreamSettings | undefined {
  const isSet = (name: keyof Env) => vars[name] !== undefined || reported.has(name)
  const configured = (Object.keys(UPSTREAM_KEYS) as UpstreamKind[]).filter((kind) =>
    isSet(UPSTREAM_KEYS[kind][0]),
  )
  const kind = vars.UPSTREAM ?? (configured.length === 1 ? configured[0] : undefined)
  if (!kind) {
    if (reported.has('UPSTREAM')) return undefined
    problems.push(
      configured.length === 0
        ? 'UPSTREAM: no upstream configured; set KINDE_ISSUER_URL, AUTH0_DOMAIN or OIDC_ISSUER_URL with its client id and secret'
        : `UPSTREAM: several upstreams are configured (${configured.join(', ')}); set UPSTREAM to pick one`,
    )
    return undefined
  }
  for (const name of UPSTREAM_KEYS[kind]) {
    if (isSet(name)) continue
    problems.push(
      name === 'AUTH0_AUDIENCE'
        ? 'AUTH0_AUDIENCE: is required; without an API audience Auth0 issues opaque tokens that only its /userinfo accepts'
        : `${name}: is required when UPSTREAM is ${kind}`,
    )
  }
  if (problems.length) return undefined
  switch (kind) {
    case 'kinde':
      return settings(
        kind,
        vars.KINDE_ISSUER_URL,
        vars.KINDE_CLIENT_ID,
        vars.KINDE_CLIENT_SECRET,
        vars.KINDE_AUDIENCE,
        vars.UPSTREAM_NAME,
      )
    case 'auth0':
      return settings(
        kind,
        vars.AUTH0_DOMAIN,
        vars.AUTH0_CLIENT_ID,
        vars.AUTH0_CLIENT_SECRET,
        vars.AUTH0_AUDIENCE,
        vars.UPSTREAM_NAME,
      )
    case 'oidc':
      return settings(
        kind,
        vars.OIDC_ISSUER_URL,
        vars.OIDC_CLIENT_ID,
        vars.OIDC_CLIENT_SECRET,
        vars.OIDC_AUDIENCE,
        vars.UPSTREAM_NAME,
      )
  }
}

const REDIS_TOPOLOGIES = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const

/** One Redis topology at most, with what it needs; undefined for the in-memory store. */
function redisOptions(vars: Env, problems: string[]): RedisStoreOptions | undefined {
  const given = REDIS_TOPOLOGIES.filter((name) => vars[name] !== undefined)
  if (given.length > 1) {
    problems.push(
      `${given.join(', ')}: give one Redis topology (single node, Sentinel or Cluster), not ${given.length}`,
    )
    return undefined
  }
  if (vars.REDIS_SENTINELS && !vars.REDIS_SENTINEL_MASTER) {
    problems.push('REDIS_SENTINEL_MASTER: is required when REDIS_SENTINELS is set')
  }
  if (vars.REDIS_SENTINEL_MASTER && !vars.REDIS_SENTINELS) {
    problems.push('REDIS_SENTINEL_MASTER: is only used with REDIS_SENTINELS')
  }
  if (!given.length) return undefined
  const common = {
    keyPrefix: vars.REDIS_KEY_PREFIX,
    commandTimeoutMs: vars.REDIS_TIMEOUT_MS,
    username: vars.REDIS_USERNAME,
    password: vars.REDIS_PASSWORD,
    tls: vars.REDIS_TLS,
  }
  // With replicas (Sentinel, Cluster) a new grant waits for one to hold it, so a failover
  // right after cannot lose it; a single node has nobody to wait for.
  if (vars.REDIS_SENTINELS && vars.REDIS_SENTINEL_MASTER) {
    return Object.freeze({
      ...common,
      sentinels: vars.REDIS_SENTINELS,
      sentinelMaster: vars.REDIS_SENTINEL_MASTER,
      waitReplicas: vars.REDIS_WAIT_REPLICAS ?? 1,
    })
  }
  if (vars.REDIS_CLUSTER_NODES) {
    return Object.freeze({
      ...common,
      clusterNodes: vars.REDIS_CLUSTER_NODES,
      waitReplicas: vars.REDIS_WAIT_REPLICAS ?? 1,
    })
  }
  return vars.REDIS_URL
    ? Object.freeze({ ...common, url: vars.REDIS_URL, waitReplicas: vars.REDIS_WAIT_REPLICAS ?? 0 })
    : undefined
}

/** The forward-mode variables that only make sense together. */
function checkForwarding(vars: Env, problems: string[], reported: ReadonlySet<string>): void {
  const backend = vars.MCP_UPSTREAM_URL
  if (
    backend?.protocol === 'http:' &&
    !isLoopbackHost(backend.hostname) &&
    !vars.MCP_UPSTREAM_ALLOW_HTTP &&
    !reported.has('MCP_UPSTREAM_ALLOW_HTTP')
  ) {
    // Every forwarded request carries a user's token: plain http beyond this machine is the
    // operator's explicit decision (a backend on a private network), never a default.
    problems.push(
      'MCP_UPSTREAM_URL: must be an https URL (plain http only on loopback, or set MCP_UPSTREAM_ALLOW_HTTP=true for a backend on a private network)',
    )
  }
  if (reported.has('MCP_UPSTREAM_TOKEN')) return
  if (vars.MCP_UPSTREAM_TOKEN === 'downstream-jwt') {
    if (!vars.MCP_UPSTREAM_URL && !reported.has('MCP_UPSTREAM_URL')) {
      problems.push(
        'MCP_UPSTREAM_TOKEN: downstream-jwt needs MCP_UPSTREAM_URL (the backend it is for)',
      )
    }
    if (!vars.DOWNSTREAM_JWT_SECRET && !reported.has('DOWNSTREAM_JWT_SECRET')) {
      problems.push('DOWNSTREAM_JWT_SECRET: is required when MCP_UPSTREAM_TOKEN is downstream-jwt')
    }
    return
  }
  // A secret without the mode would silently send the backend upstream tokens it refuses.
  for (const name of ['DOWNSTREAM_JWT_SECRET', 'DOWNSTREAM_JWT_AUDIENCE'] as const) {
    if (vars[name] !== undefined) {
      problems.push(`${name}: is only used when MCP_UPSTREAM_TOKEN is downstream-jwt`)
    }
  }
}

/** The proxy's own keys are given both or neither: half a pair would be generated beside it. */
function checkKeys(vars: Env, problems: string[]): void {
  const signing = vars.SIGNING_KEY !== undefined
  if (signing === (vars.ENCRYPTION_KEY !== undefined)) return
  const [missing, given] = signing
    ? ['ENCRYPTION_KEY', 'SIGNING_KEY']
    : ['SIGNING_KEY', 'ENCRYPTION_KEY']
  problems.push(
    `${missing}: is required when ${given} is set (give both, or neither to generate them)`,
  )
}

/** RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * `OPEN_SCOPES` must name scopes of `SCOPES`; `SCOPE_PERMISSIONS` is `scope=permission` pairs
 * (a scope may appear in several) for scopes of `SCOPES` that are not open, since a mapping
 * of an open scope would never be consulted and most likely hides a typo.
 */
function parseScopePermissions(
  vars: Env,
  problems: string[],
): ReadonlyMap<string, readonly string[]> {
  const offered = new Set(vars.SCOPES)
  const open = new Set([...OIDC_SCOPES, ...vars.OPEN_SCOPES])
  for (const scope of vars.OPEN_SCOPES) {
    if (!SCOPE_TOKEN.test(scope))
      problems.push(`OPEN_SCOPES: ${JSON.stringify(scope)} is not a scope name`)
    else if (!offered.has(scope)) problems.push(`OPEN_SCOPES: ${scope} is not one of SCOPES`)
  }
  const mapping = new Map<string, string[]>()
  for (const entry of vars.SCOPE_PERMISSIONS) {
    const [scope = '', permission = '', ...rest] = entry.split('=')
    if (rest.length || !SCOPE_TOKEN.test(scope) || !SCOPE_TOKEN.test(permission)) {
      problems.push(
        `SCOPE_PERMISSIONS: ${JSON.stringify(entry)} is not scope=permission (e.g. reports:admin=admin:reports)`,
      )
    } else if (!offered.has(scope)) {
      problems.push(`SCOPE_PERMISSIONS: ${scope} is not one of SCOPES`)
    } else if (open.has(scope)) {
      problems.push(
        `SCOPE_PERMISSIONS: ${scope} is granted to every user (OpenID Connect or OPEN_SCOPES); a permission for it would never be asked`,
      )
    } else {
      const permissions = mapping.get(scope) ?? []
      if (!permissions.includes(permission)) permissions.push(permission)
      mapping.set(scope, permissions)
    }
  }
  return new Map([...mapping].map(([scope, permissions]) => [scope, Object.freeze(permissions)]))
}

function settings(
  kind: UpstreamKind,
  issuer: URL | undefined,
  clientId: string | undefined,
  clientSecret: string | undefined,
  audience: string | undefined,
  displayName: string | undefined,
): UpstreamSettings {
  if (!issuer || !clientId) throw new Error('unreachable: required upstream variables were checked')
  // Kinde's issuer has no trailing slash even when the variable is written with one.
  const normalized = kind === 'kinde' ? new URL(issuer.href.replace(/\/+$/, '')) : issuer
  return { kind, issuer: normalized, clientId, clientSecret, audience, displayName }
}

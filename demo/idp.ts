/**
 * A real OpenID Connect provider on loopback, built on `oidc-provider` and configured to look
 * like Kinde, Auth0 or a plain OIDC provider: the identity provider of `npm run demo` and the
 * upstream of the end-to-end tests (`test/support/upstream.ts` re-exports this module).
 *
 * Development only: `oidc-provider` is a devDependency, and nothing under `src/` may import
 * this file, so it never reaches a production build.
 *
 * Nothing here re-implements OAuth: authorization, PKCE, client authentication, token
 * issuance, refresh, id_token signing and discovery are all oidc-provider's. This module
 * only configures it (routes, scopes, claims, token formats) and serves a tiny login page
 * whose form completes the interaction; consent is granted automatically.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose'
// @ts-expect-error -- oidc-provider ships no type declarations (and no @types package is
// installed); the small part of its surface used here is typed by the interfaces below.
import Provider, { errors as oidcErrors } from 'oidc-provider'
import { escapeHtml, renderPage } from '../src/oauth/pages.js'

/** Which real provider the upstream imitates (endpoint paths, issuer shape, token claims). */
export type UpstreamFlavor = 'kinde' | 'auth0' | 'oidc'

/** An end-user account of the upstream. */
export interface UpstreamUser {
  sub: string
  email: string
  /** default true; `null`: the upstream says nothing about it (no `email_verified` claim). */
  email_verified?: boolean | null
  name?: string
  /** kinde: organization the user's access tokens are scoped to (`org_code` claim). */
  org_code?: string
  /** kinde: organizations the user belongs to (`org_codes` id_token claim); defaults to [org_code]. */
  org_codes?: string[]
  /** auth0: organization the user logged in to (`org_id` claim in id and access tokens). */
  org_id?: string
  /** `permissions` claim of the user's access tokens (kinde and auth0). */
  permissions?: string[]
}

/** A machine-to-machine (client_credentials) application registered at the upstream. */
export interface M2MClient {
  client_id: string
  client_secret: string
  /** kinde: org-scoped M2M application; its tokens carry `org_code`. */
  org_code?: string
  /** auth0: organization of the M2M application; its tokens carry `org_id`. */
  org_id?: string
  /** space-separated API scopes granted to the application; all are issued when none are requested. */
  scope?: string
}

/** Options of {@link startUpstream}. */
export interface StartUpstreamOptions {
  flavor: UpstreamFlavor
  /** TCP port on 127.0.0.1; default 0 (random). */
  port?: number
  /** API audience (resource indicator) access tokens are issued for; default 'https://api.example.test'. */
  audience?: string
  /**
   * the proxy's confidential web client; client_secret_basic and client_secret_post are both
   * accepted. With `backchannel_logout_uri` its ID tokens carry `sid` and logouts reach it there.
   */
  client: {
    client_id: string
    client_secret: string
    redirect_uris: string[]
    backchannel_logout_uri?: string
  }
  m2mClients?: M2MClient[]
  /** default: one demo user (see {@link DEMO_USER}). */
  users?: UpstreamUser[]
  /** extra API scopes user access tokens may carry when requested (auth0-style API scopes); default none. */
  apiScopes?: string[]
  /** lifetime of access tokens (user and M2M); default 3600. */
  accessTokenTtlSeconds?: number
  /** issue a new refresh token on every refresh; default true for kinde (it rotates), false otherwise. */
  rotateRefreshTokens?: boolean
}

/** A running upstream. */
export interface Upstream {
  flavor: UpstreamFlavor
  /** exactly what discovery says (auth0: with a trailing slash). */
  issuer: string
  /** base URL, http://127.0.0.1:PORT (no trailing slash). */
  url: string
  audience: string
  /**
   * Completes an interactive login for the given authorization URL without a browser:
   * follows redirects through oidc-provider's interaction with a private cookie jar, logs in
   * as `user` (a sub or an email; default the first user), lets consent be auto-granted, and
   * returns the final redirect to the client's redirect_uri (with code & state, or error).
   */
  loginWith(authorizationUrl: string, user?: string): Promise<URL>
  /**
   * Sends the proxy's client a logout token for `sub` (and `sid`) as oidc-provider does when
   * that user's session ends (OIDC Back-Channel Logout 1.0); rejects unless it answers 200.
   */
  backchannelLogout(sub: string, sid?: string): Promise<void>
  /**
   * Signs `payload` with the upstream's own signing key (RS256, its `kid`): tokens the upstream
   * would never issue, for tests of what the proxy refuses despite a valid signature.
   */
  signJwt(payload: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>
  /**
   * Changes a user's account (a sub or an email) from now on, as an administrator would at
   * Kinde or Auth0: tokens issued afterwards, refreshes included, carry the new claims. A
   * property set to `undefined` is removed.
   */
  updateUser(user: string, changes: Partial<Omit<UpstreamUser, 'sub'>>): void
  close(): Promise<void>
  /** the oidc-provider instance (untyped: oidc-provider ships no declarations). */
  provider: unknown
}

/** The user an upstream has when `users` is not given. */
export const DEMO_USER: UpstreamUser = {
  sub: 'kp_demo_user',
  email: 'demo@example.test',
  email_verified: true,
  name: 'Demo User',
  permissions: [],
}

// ---------------------------------------------------------------------------------------
// The part of oidc-provider's (untyped) API this module uses.

interface KoaContext {
  path: string
  method: string
  query: Record<string, string | string[] | undefined>
  headers: Record<string, string | string[] | undefined>
  status: number
  body: unknown
  set(field: string, value: string): void
  oidc?: { params?: Record<string, unknown>; body?: Record<string, unknown> }
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>

interface ProviderToken {
  kind: string
  accountId?: string
  clientId?: string
}
interface JwtAccessToken {
  header?: Record<string, unknown>
  payload: Record<string, unknown>
}
interface ProviderClient {
  clientId: string
  grantTypeAllowed(grantType: string): boolean
}
interface GrantInstance {
  addOIDCScope(scope: string): void
  addOIDCClaims(claims: string[]): void
  addResourceScope(indicator: string, scope: string): void
  save(): Promise<string>
}
interface InteractionDetails {
  uid: string
  grantId?: string
  params: Record<string, unknown> & { client_id: string }
  session?: { accountId: string }
  prompt: {
    name: string
    details: {
      missingOIDCScope?: string[]
      missingOIDCClaims?: string[]
      missingResourceScopes?: Record<string, string[]>
    }
  }
}
interface OidcProvider {
  issuer: string
  callback(): (req: IncomingMessage, res: ServerResponse) => void
  use(middleware: KoaMiddleware): void
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>
  Client: { find(id: string): Promise<unknown> }
  Grant: {
    new (init: { accountId: string; clientId: string }): GrantInstance
    find(id: string): Promise<GrantInstance | undefined>
  }
}
type ProviderConstructor = new (
  issuer: string,
  configuration: Record<string, unknown>,
) => OidcProvider
const OidcProviderClass = Provider as ProviderConstructor
const InvalidTarget = (oidcErrors as { InvalidTarget: new (description?: string) => Error })
  .InvalidTarget

// ---------------------------------------------------------------------------------------
// Per-flavor differences. Every value mirrors the real provider's discovery document/tokens.

interface FlavorProfile {
  /** Kinde issuers have no trailing slash; Auth0's always end with '/'. */
  trailingSlash: boolean
  routes: Record<string, string>
  /** The scope that yields a refresh token: Kinde calls it `offline`, everyone else `offline_access`. */
  refreshScope: string
  /** ID token claims per scope. */
  claims: Record<string, string[]>
  /** Userinfo claims per scope, when they differ from the ID token's. */
  userinfoClaims?: Record<string, string[]>
}

const FLAVORS: Record<UpstreamFlavor, FlavorProfile> = {
  kinde: {
    trailingSlash: false,
    routes: {
      authorization: '/oauth2/auth',
      token: '/oauth2/token',
      jwks: '/.well-known/jwks',
      userinfo: '/oauth2/v2/user_profile',
      revocation: '/oauth2/revoke',
      end_session: '/logout',
    },
    refreshScope: 'offline',
    // Kinde id tokens list the user's organizations in `org_codes`, and carry the email but
    // not whether it is verified: only the user_profile endpoint says `email_verified`.
    claims: {
      openid: ['sub', 'org_codes'],
      profile: ['name'],
      email: ['email'],
    },
    userinfoClaims: {
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
  },
  auth0: {
    trailingSlash: true,
    routes: {
      authorization: '/authorize',
      token: '/oauth/token',
      jwks: '/.well-known/jwks.json',
      userinfo: '/userinfo',
      revocation: '/oauth/revoke',
      end_session: '/oidc/logout',
    },
    refreshScope: 'offline_access',
    // Auth0 puts `org_id` into id tokens of users who logged in to an organization.
    claims: {
      openid: ['sub', 'org_id'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
  },
  oidc: {
    trailingSlash: false,
    routes: {},
    refreshScope: 'offline_access',
    claims: {
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
  },
}

const DEFAULT_AUDIENCE = 'https://api.example.test'

/**
 * Starts an oidc-provider based upstream on 127.0.0.1 that looks like the given flavor.
 * Close it with `close()`.
 */
export async function startUpstream(opts: StartUpstreamOptions): Promise<Upstream> {
  const flavor = opts.flavor
  const profile = FLAVORS[flavor]
  const audience = opts.audience ?? DEFAULT_AUDIENCE
  // Copies, so that updateUser changes this upstream's accounts and nobody else's.
  const users = (opts.users?.length ? opts.users : [DEMO_USER]).map((user) => ({ ...user }))
  const m2mClients = opts.m2mClients ?? []
  const accessTokenTtl = opts.accessTokenTtlSeconds ?? 3600
  const rotateRefreshTokens = opts.rotateRefreshTokens ?? flavor === 'kinde'
  const userScopes = ['openid', 'profile', 'email', profile.refreshScope, ...(opts.apiScopes ?? [])]

  const findUser = (subOrEmail: string): UpstreamUser | undefined =>
    users.find((u) => u.sub === subOrEmail) ?? users.find((u) => u.email === subOrEmail)
  const findM2M = (clientId: string | undefined): M2MClient | undefined =>
    m2mClients.find((c) => c.client_id === clientId)

  // The issuer must contain the port, so bind first and hand requests to the provider later.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503
    res.end()
  }
  const server = createServer((req, res) => handler(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}`
  const issuer = profile.trailingSlash ? `${url}/` : url

  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
  const signingJwk = {
    ...(await exportJWK(privateKey)),
    kid: randomUUID(),
    alg: 'RS256',
    use: 'sig',
  }

  let provider: OidcProvider
  try {
    provider = new OidcProviderClass(issuer, {
      clients: [
        {
          client_id: opts.client.client_id,
          client_secret: opts.client.client_secret,
          redirect_uris: opts.client.redirect_uris,
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          // oidc-provider accepts client_secret_post too for a client registered with
          // client_secret_basic (both carry the same secret), like Kinde and Auth0 do.
          token_endpoint_auth_method: 'client_secret_basic',
          ...(opts.client.backchannel_logout_uri
            ? {
                backchannel_logout_uri: opts.client.backchannel_logout_uri,
                backchannel_logout_session_required: true,
              }
            : {}),
        },
        ...m2mClients.map((m) => ({
          client_id: m.client_id,
          client_secret: m.client_secret,
          redirect_uris: [],
          grant_types: ['client_credentials'],
          response_types: [],
          token_endpoint_auth_method: 'client_secret_basic',
        })),
      ],
      jwks: { keys: [signingJwk] },
      // oidc-provider refuses to call loopback addresses (its SSRF guard on outgoing requests);
      // this provider lives on loopback and its one outgoing call, the back-channel logout,
      // goes to the proxy beside it.
      fetch: (url: URL | string, options: RequestInit & { dispatcher?: unknown }) => {
        const { dispatcher: _guarded, ...rest } = options
        return fetch(url, rest)
      },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      routes: profile.routes,
      // Kinde's refresh scope `offline` is not an oidc-provider built-in, so it is declared here;
      // for kinde `offline_access` is deliberately NOT declared: it is then an unknown scope that
      // is ignored, and (like real Kinde) yields no refresh token.
      scopes: ['openid', profile.refreshScope],
      claims: profile.claims,
      // Kinde and Auth0 name the API with `audience` where RFC 8707 uses `resource`. Declaring
      // it as an authorization parameter makes it reach `defaultResource` below.
      extraParams: ['audience'],
      findAccount: async (_ctx: unknown, sub: string) => {
        const user = users.find((u) => u.sub === sub)
        if (!user) return undefined
        return { accountId: sub, claims: async () => userClaims(flavor, user) }
      },
      interactions: {
        url: async (_ctx: unknown, interaction: { uid: string }) =>
          `/interaction/${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        revocation: { enabled: true },
        userinfo: { enabled: true },
        rpInitiatedLogout: { enabled: true },
        backchannelLogout: { enabled: true },
        // JWT access tokens with an `aud` only exist for resource servers, i.e. via resource
        // indicators. Every token of this upstream is for the one configured API audience.
        resourceIndicators: {
          enabled: true,
          // The audience comes from the `audience` parameter: query/form of the authorization
          // request (an extraParam, so in ctx.oidc.params) or the form body of a token request
          // (client_credentials); without one, the configured audience is used.
          defaultResource: async (ctx: KoaContext, _client: unknown, oneOf?: string[]) => {
            if (oneOf) return oneOf
            const requested = ctx.oidc?.params?.audience ?? ctx.oidc?.body?.audience
            return typeof requested === 'string' && requested ? requested : audience
          },
          // oidc-provider would otherwise drop the resource at the token endpoint whenever
          // `openid` was requested (it assumes such tokens are for its userinfo endpoint), and
          // issue an opaque token; the refresh grant needs it as well.
          useGrantedResource: async () => true,
          getResourceServerInfo: async (
            _ctx: unknown,
            indicator: string,
            client: ProviderClient,
          ) => {
            if (indicator !== audience) throw new InvalidTarget(`unknown audience ${indicator}`)
            const m2m = findM2M(client.clientId)
            return {
              // Resource-server scopes are what ends up in the access token's scope; both real
              // providers list the OIDC scopes there too (kinde `scp`, auth0 `scope`).
              scope: m2m ? (m2m.scope ?? '') : userScopes.join(' '),
              audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: accessTokenTtl,
              jwt: { sign: { alg: 'RS256' } },
            }
          },
        },
      },
      // oidc-provider's default only issues refresh tokens for `offline_access`; Kinde uses
      // `offline`. The scope is only granted when requested, so this mirrors both providers.
      // (Its other offline_access rule, dropping the scope without `prompt=consent`, is dealt
      // with by offlineAccessWithoutPrompt below.)
      issueRefreshToken: async (
        _ctx: unknown,
        client: ProviderClient,
        code: { scopes: Set<string> },
      ) => client.grantTypeAllowed('refresh_token') && code.scopes.has(profile.refreshScope),
      expiresWithSession: async (_ctx: unknown, code: { scopes: Set<string> }) =>
        !code.scopes.has(profile.refreshScope),
      rotateRefreshToken: rotateRefreshTokens,
      // Claims that are not standard JWT access token claims, from the user or M2M record.
      extraTokenClaims: async (_ctx: unknown, token: ProviderToken) => {
        if (token.kind === 'ClientCredentials') {
          const m2m = findM2M(token.clientId)
          if (flavor === 'kinde') return definedOnly({ org_code: m2m?.org_code })
          if (flavor === 'auth0')
            return definedOnly({ gty: 'client-credentials', org_id: m2m?.org_id })
          return undefined
        }
        const user = token.accountId ? findUser(token.accountId) : undefined
        if (!user) return undefined
        if (flavor === 'kinde')
          return definedOnly({ org_code: user.org_code, permissions: user.permissions ?? [] })
        if (flavor === 'auth0')
          return definedOnly({ org_id: user.org_id, permissions: user.permissions ?? [] })
        return undefined
      },
      formats: {
        customizers: {
          jwt: async (_ctx: unknown, token: ProviderToken, jwt: JwtAccessToken) =>
            shapeAccessToken(flavor, issuer, audience, token, jwt.payload, findM2M(token.clientId)),
        },
      },
      ttl: {
        AccessToken: accessTokenTtl,
        ClientCredentials: accessTokenTtl,
        AuthorizationCode: 60,
        IdToken: 3600,
        RefreshToken: 30 * 24 * 3600,
        Interaction: 3600,
        Session: 24 * 3600,
        Grant: 30 * 24 * 3600,
      },
    })
    // Static clients are only validated on first use; validate them now so that bad options
    // fail here rather than as a server_error in the middle of a test.
    for (const m of [opts.client, ...m2mClients]) await provider.Client.find(m.client_id)
  } catch (error) {
    server.close()
    throw error
  }

  if (profile.refreshScope === 'offline_access') {
    provider.use(offlineAccessWithoutPrompt(profile.routes.authorization ?? '/auth'))
  }
  // oidc-provider's own default userinfo route is /me.
  const userinfoPath = profile.routes.userinfo ?? '/me'
  provider.use(
    userinfoForJwtAccessTokens(flavor, issuer, audience, userinfoPath, publicKey, findUser),
  )

  const providerCallback = provider.callback()
  handler = (req, res) => {
    const path = new URL(req.url ?? '/', url).pathname
    if (path.startsWith('/interaction/')) {
      handleInteraction(provider, flavor, users, req, res, path).catch((error: unknown) => {
        if (!res.headersSent) {
          res.statusCode = 400
          res.setHeader('Content-Type', 'text/plain; charset=utf-8')
        }
        res.end(`interaction failed: ${error instanceof Error ? error.message : String(error)}`)
      })
      return
    }
    providerCallback(req, res)
  }

  return {
    flavor,
    issuer,
    url,
    audience,
    provider,
    loginWith: (authorizationUrl, user) =>
      loginWith(url, opts.client.redirect_uris, users, authorizationUrl, user),
    backchannelLogout: async (sub, sid) => {
      const client = (await provider.Client.find(opts.client.client_id)) as {
        backchannelLogout(sub: string, sid?: string): Promise<void>
      }
      await client.backchannelLogout(sub, sid)
    },
    signJwt: (payload, header = {}) =>
      new SignJWT(payload)
        .setProtectedHeader({ ...header, alg: 'RS256', kid: signingJwk.kid })
        .sign(privateKey),
    updateUser(subOrEmail, changes) {
      const user = findUser(subOrEmail)
      if (!user) throw new Error(`updateUser: unknown user ${subOrEmail}`)
      Object.assign(user, changes)
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

// ---------------------------------------------------------------------------------------
// Token and claim shapes.

function definedOnly(claims: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined))
}

/** Claims of the user's account; oidc-provider masks them by granted scope for id tokens. */
function userClaims(flavor: UpstreamFlavor, user: UpstreamUser): Record<string, unknown> {
  return definedOnly({
    sub: user.sub,
    name: user.name,
    email: user.email,
    email_verified: user.email_verified === null ? undefined : (user.email_verified ?? true),
    org_codes:
      flavor === 'kinde'
        ? (user.org_codes ?? (user.org_code ? [user.org_code] : undefined))
        : undefined,
    org_id: flavor === 'auth0' ? user.org_id : undefined,
  })
}

/**
 * Rewrites oidc-provider's JWT access token payload ({jti, sub, iat, exp, scope, client_id,
 * iss, aud, ...extra}) into the provider's shape.
 */
function shapeAccessToken(
  flavor: UpstreamFlavor,
  issuer: string,
  audience: string,
  token: ProviderToken,
  payload: Record<string, unknown>,
  m2m: M2MClient | undefined,
): void {
  const isM2M = token.kind === 'ClientCredentials'
  // Kinde and Auth0 issue every scope granted to an M2M application when none is requested.
  if (isM2M && payload.scope === undefined && m2m?.scope) payload.scope = m2m.scope
  if (flavor === 'oidc') return

  // Both name the client `azp` rather than RFC 9068's `client_id`.
  payload.azp = payload.client_id
  delete payload.client_id
  const scope = typeof payload.scope === 'string' ? payload.scope : ''

  if (flavor === 'kinde') {
    // Kinde: `aud` is always an array, scopes are an array named `scp`, and M2M tokens have
    // no `sub` at all (only `azp`).
    payload.aud = [audience]
    payload.scp = scope ? scope.split(' ') : []
    delete payload.scope
    if (isM2M) delete payload.sub
    return
  }

  // Auth0: M2M subjects are `<client_id>@clients`; user tokens that include `openid` are also
  // valid at /userinfo, which Auth0 expresses as a second audience.
  if (isM2M) {
    payload.sub = `${String(payload.azp)}@clients`
  } else if (scope.split(' ').includes('openid')) {
    payload.aud = [audience, `${issuer}userinfo`]
  }
}

/**
 * oidc-provider silently drops `offline_access` from an authorization request unless it has
 * `prompt=consent` (OIDC Core 11 says the OP MUST ignore it otherwise), so no refresh token
 * would ever be issued. Auth0 and most real providers do not require that, and the proxy does
 * not send a prompt: when a GET authorization request asks for `offline_access` without any
 * `prompt`, this adds `prompt=consent`. The consent is auto-granted, so nothing else changes.
 */
function offlineAccessWithoutPrompt(authorizationPath: string): KoaMiddleware {
  return async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === authorizationPath) {
      const { scope, prompt } = ctx.query
      if (
        typeof scope === 'string' &&
        scope.split(' ').includes('offline_access') &&
        prompt === undefined
      ) {
        ctx.query = { ...ctx.query, prompt: 'consent' }
      }
    }
    await next()
  }
}

/**
 * oidc-provider's userinfo endpoint refuses every access token that has an audience (it only
 * serves its own opaque tokens), yet Kinde's user_profile and Auth0's /userinfo accept the JWT
 * access tokens they issue. This middleware answers userinfo requests that carry such a JWT
 * (verified with the upstream's own key) and leaves everything else to oidc-provider.
 */
function userinfoForJwtAccessTokens(
  flavor: UpstreamFlavor,
  issuer: string,
  audience: string,
  userinfoPath: string,
  publicKey: CryptoKey,
  findUser: (sub: string) => UpstreamUser | undefined,
): KoaMiddleware {
  return async (ctx, next) => {
    const authorization = ctx.headers.authorization
    const bearer =
      typeof authorization === 'string'
        ? /^Bearer ([\w-]+\.[\w-]+\.[\w-]+)$/i.exec(authorization)
        : null
    if (ctx.path !== userinfoPath || !['GET', 'POST'].includes(ctx.method) || !bearer?.[1]) {
      await next()
      return
    }
    const fail = (status: number, error: string) => {
      ctx.status = status
      ctx.set('WWW-Authenticate', `Bearer realm="${issuer}", error="${error}"`)
      ctx.body = { error }
    }
    let claims: Record<string, unknown>
    try {
      ;({ payload: claims } = await jwtVerify(bearer[1], publicKey, {
        issuer,
        audience: flavor === 'auth0' ? `${issuer}userinfo` : audience,
        algorithms: ['RS256'],
      }))
    } catch {
      fail(401, 'invalid_token')
      return
    }
    const scopes = new Set(
      Array.isArray(claims.scp) ? (claims.scp as string[]) : String(claims.scope ?? '').split(' '),
    )
    const user = typeof claims.sub === 'string' ? findUser(claims.sub) : undefined
    if (!scopes.has('openid') || !user) {
      fail(403, 'insufficient_scope')
      return
    }
    const all = userClaims(flavor, user)
    const body: Record<string, unknown> = { sub: user.sub }
    if (flavor === 'kinde') body.id = user.sub // user_profile also returns the user id as `id`
    const profile = FLAVORS[flavor]
    for (const [scope, names] of Object.entries(profile.userinfoClaims ?? profile.claims)) {
      if (!scopes.has(scope)) continue
      for (const name of names) if (all[name] !== undefined) body[name] = all[name]
    }
    ctx.set('Cache-Control', 'no-store')
    ctx.body = body
  }
}

// ---------------------------------------------------------------------------------------
// Interaction (login page + automatic consent).

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

/**
 * GET  /interaction/:uid        login prompt: the sign-in page; consent prompt: granted at once
 * POST /interaction/:uid/login  form submit: logs the chosen user in
 */
async function handleInteraction(
  provider: OidcProvider,
  flavor: UpstreamFlavor,
  users: UpstreamUser[],
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  const [, , uid, action] = path.split('/')
  const details = await provider.interactionDetails(req, res)
  if (details.uid !== uid) throw new Error('interaction mismatch')

  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req)
    if (form.has('cancel')) {
      // As a real provider answers a user who backs out: access_denied to the client.
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'the user cancelled the sign-in' },
        { mergeWithLastSubmission: false },
      )
      return
    }
    const user = users.find((u) => u.sub === form.get('user'))
    if (!user) throw new Error('unknown user')
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.sub } },
      { mergeWithLastSubmission: false },
    )
    return
  }
  if (req.method !== 'GET' || action !== undefined)
    throw new Error('unsupported interaction request')

  if (details.prompt.name === 'consent') {
    // Consent is granted for exactly what oidc-provider reports as missing: OIDC scopes,
    // requested claims and API (resource) scopes, like a first-party app at Kinde/Auth0.
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details
    const accountId = details.session?.accountId
    if (!accountId) throw new Error('consent without a session')
    const grant =
      (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ??
      new provider.Grant({ accountId, clientId: details.params.client_id })
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '))
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims)
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '))
    }
    const grantId = await grant.save()
    await provider.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    )
    return
  }

  const button = (user: UpstreamUser, label: string, primary: boolean) =>
    `<button type="submit" name="user" value="${escapeHtml(user.sub)}"${primary ? ' class="primary" autofocus' : ''}>${escapeHtml(label)}</button>`
  const [first] = users
  const others = users.length > 1 ? users.map((u) => button(u, `Sign in as ${u.email}`, false)) : []
  const who = first
    ? `${escapeHtml(first.name ?? first.sub)} &lt;${escapeHtml(first.email)}&gt;${first.org_code ? `, organization <code>${escapeHtml(first.org_code)}</code>` : ''}`
    : ''
  res.statusCode = 200
  res.setHeader('Content-Type', 'text/html; charset=utf-8')
  res.setHeader('Cache-Control', 'no-store')
  // No form-action: after the POST the browser is redirected on to the proxy's origin.
  res.setHeader(
    'Content-Security-Policy',
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  )
  res.end(
    renderPage(
      'Sign in — demo identity provider',
      `<h1>Sign in</h1>
<p class="sub">This is the <strong>built-in demo identity provider</strong> of mcp-oauth-proxy, standing in for ${PROVIDER_NAMES[flavor]}. No account or password: one click signs you in.</p>
<dl>
  <dt>User</dt><dd id="demo-user">${who}</dd>
  <dt>Signing in to</dt><dd><code>${escapeHtml(details.params.client_id)}</code> (the proxy)</dd>
</dl>
<p class="note">A real deployment shows your identity provider's own sign-in here.</p>
<form method="post" action="/interaction/${escapeHtml(details.uid)}/login">
  <div class="actions">
    <button type="submit" name="cancel" value="1">Cancel</button>
    ${first ? button(first, 'Sign in as demo user', true) : ''}
  </div>
  ${others.length ? `<div class="actions" style="margin-top:10px;flex-wrap:wrap">${others.join('\n')}</div>` : ''}
</form>`,
    ),
  )
}

const PROVIDER_NAMES: Record<UpstreamFlavor, string> = {
  kinde: 'Kinde',
  auth0: 'Auth0',
  oidc: 'an OpenID Connect provider',
}

// ---------------------------------------------------------------------------------------
// Browserless login.

interface Cookie {
  name: string
  value: string
  path: string
}

/** A minimal cookie jar for one origin: enough for oidc-provider's path-scoped cookies. */
class CookieJar {
  #cookies: Cookie[] = []

  store(response: Response, requestPath: string): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = header.split(';').map((s) => s.trim())
      const eq = pair.indexOf('=')
      if (eq < 1) continue
      const name = pair.slice(0, eq)
      const value = pair.slice(eq + 1)
      let path = requestPath.replace(/\/[^/]*$/, '') || '/'
      let expired = false
      for (const attribute of attributes) {
        const [key = '', val = ''] = attribute.split('=')
        if (key.toLowerCase() === 'path' && val) path = val
        if (key.toLowerCase() === 'max-age' && Number(val) <= 0) expired = true
        if (key.toLowerCase() === 'expires' && Date.parse(val) <= Date.now()) expired = true
      }
      this.#cookies = this.#cookies.filter((c) => c.name !== name || c.path !== path)
      if (!expired) this.#cookies.push({ name, value, path })
    }
  }

  header(requestPath: string): string {
    return this.#cookies
      .filter(
        (c) => c.path === '/' || requestPath === c.path || requestPath.startsWith(`${c.path}/`),
      )
      .map((c) => `${c.name}=${c.value}`)
      .join('; ')
  }
}

async function loginWith(
  baseUrl: string,
  redirectUris: string[],
  users: UpstreamUser[],
  authorizationUrl: string,
  subOrEmail?: string,
): Promise<URL> {
  const user = subOrEmail
    ? (users.find((u) => u.sub === subOrEmail) ?? users.find((u) => u.email === subOrEmail))
    : users[0]
  if (!user) throw new Error(`loginWith: unknown user ${subOrEmail}`)
  const origin = new URL(baseUrl).origin
  const isClientRedirect = (target: URL) =>
    target.origin !== origin ||
    redirectUris.some((r) => new URL(r).href.split('?')[0] === target.href.split('?')[0])

  const jar = new CookieJar()
  let next: URL = new URL(authorizationUrl)
  let form: URLSearchParams | undefined
  for (let hop = 0; hop < 20; hop++) {
    if (isClientRedirect(next) && hop > 0) return next
    const cookie = jar.header(next.pathname)
    const response = await fetch(next, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form,
    })
    jar.store(response, next.pathname)
    form = undefined
    const location = response.headers.get('location')
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel()
      next = new URL(location, next)
      continue
    }
    const body = await response.text()
    const interaction = /^\/interaction\/([^/]+)$/.exec(next.pathname)
    if (response.status === 200 && interaction) {
      // The login page: submit its form exactly like the browser does.
      next = new URL(`/interaction/${interaction[1]}/login`, next)
      form = new URLSearchParams({ user: user.sub })
      continue
    }
    throw new Error(
      `loginWith: unexpected ${response.status} from ${next.href}: ${body.slice(0, 500)}`,
    )
  }
  throw new Error('loginWith: too many redirects')
}

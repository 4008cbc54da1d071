import { createRemoteJWKSet, decodeJwt, type JWTVerifyGetKey, customFetch as joseFetch } from 'jose'
import {
  AuthorizationResponseError,
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  type ClientAuth,
  ClientError,
  ClientSecretBasic,
  ClientSecretPost,
  Configuration,
  type CustomFetch,
  calculatePKCECodeChallenge,
  clientCredentialsGrant,
  customFetch,
  discovery,
  fetchUserInfo,
  None,
  ResponseBodyError,
  refreshTokenGrant,
  type ServerMetadata,
  skipSubjectCheck,
  type TokenEndpointResponse,
  type TokenEndpointResponseHelpers,
  tokenRevocation,
  WWWAuthenticateChallengeError,
} from 'openid-client'
import type { Logger } from 'pino'
import { type Clock, systemClock } from '../clock.js'
import type { UpstreamSettings } from '../config.js'
import { isLoopbackHost } from '../loopback.js'
import { verifyLogoutToken } from './logout-token.js'
import { type Claims, presetFor, upstreamScope } from './presets.js'
import {
  type Upstream,
  UpstreamError,
  type UpstreamIdentity,
  type UpstreamTokens,
} from './upstream.js'

/** What `createOidcUpstream` needs; `fetch`, `logger` and `clock` default to the real ones. */
export interface OidcUpstreamOptions {
  readonly settings: UpstreamSettings
  /** The proxy's public origin; the upstream redirects to `PUBLIC_URL/callback`. */
  readonly publicUrl: URL
  /** Bound on every upstream HTTP request, connection to last byte. */
  readonly timeoutSeconds: number
  readonly fetch?: typeof fetch | undefined
  readonly logger?: Logger | undefined
  readonly clock?: Clock | undefined
}

type TokenResponse = TokenEndpointResponse & TokenEndpointResponseHelpers

/** Used when the upstream states no lifetime for an opaque access token. */
const DEFAULT_LIFETIME_SECONDS = 3600

/**
 * openid-client failure codes that mean a response failed validation (state, `iss`, ID token
 * signature, nonce, audience, timestamps): the grant is unusable, retrying will not help.
 */
const VALIDATION_FAILURES = new Set([
  'OAUTH_INVALID_RESPONSE',
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_KEY_SELECTION_FAILED',
])

/**
 * The `Upstream` for Kinde, Auth0 or any OpenID Connect provider, on openid-client: discovery,
 * PKCE S256, ID-token validation, refresh, client credentials, revocation (RFC 7009) and
 * userinfo, with provider differences taken from `presetFor(settings)`.
 *
 * Discovery happens on first use, not here, so the proxy starts while the IdP is down; a failed
 * discovery is retried by the next call. All HTTP goes through `fetch` with a
 * `timeoutSeconds` bound. Failures are `UpstreamError`s; messages never carry tokens, secrets
 * or response bodies.
 */
export function createOidcUpstream(options: OidcUpstreamOptions): Upstream {
  const { settings, timeoutSeconds, logger } = options
  const preset = presetFor(settings)
  const clock = options.clock ?? systemClock
  const redirectUri = new URL('/callback', options.publicUrl).href
  const boundedFetch = withTimeout(options.fetch ?? fetch, timeoutSeconds)
  // Config only lets plain http through on loopback; checked again so that nothing else can.
  const insecure = settings.issuer.protocol === 'http:' && isLoopbackHost(settings.issuer.hostname)

  let discovered: Promise<Configuration> | undefined
  let logoutKeys: { jwksUri: string; keys: JWTVerifyGetKey } | undefined

  /** The proxy's own client at the upstream, discovered once and then kept. */
  function proxyClient(): Promise<Configuration> {
    if (!discovered) {
      const attempt: Promise<Configuration> = discovery(
        settings.issuer,
        settings.clientId,
        settings.clientSecret,
        clientAuth(settings.clientSecret),
        { [customFetch]: boundedFetch, execute: insecure ? [allowInsecureRequests] : [] },
      ).catch((error: unknown) => {
        // Forget the failure so the next call tries again rather than failing forever.
        if (discovered === attempt) discovered = undefined
        const { detail, misconfigured } = diagnose(error, settings.issuer, timeoutSeconds)
        throw new UpstreamError(
          'unavailable',
          'temporarily_unavailable',
          `upstream discovery failed: ${reason(error, timeoutSeconds)}`,
          { cause: error, detail, misconfigured },
        )
      })
      discovered = attempt
    }
    return discovered
  }

  /** An M2M application's own client, sharing the proxy's discovered metadata. */
  function machineClient(
    metadata: ServerMetadata,
    clientId: string,
    clientSecret: string,
  ): Configuration {
    const config = new Configuration(metadata, clientId, clientSecret, clientAuth(clientSecret))
    config[customFetch] = boundedFetch
    if (insecure) allowInsecureRequests(config)
    return config
  }

  async function guarded<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw toUpstreamError(operation, error, timeoutSeconds, clock)
    }
  }

  /**
   * Tokens and identity from a token response. The access token's claims are read without
   * verification: it came straight from the token endpoint over the authenticated channel,
   * which is what OAuth clients rely on (the ID token, when present, is verified).
   */
  async function settle(
    response: TokenResponse,
    fallbackClaims: () => Promise<Claims | undefined>,
    previousRefreshToken?: string,
  ): Promise<{ tokens: UpstreamTokens; identity: UpstreamIdentity }> {
    const accessClaims = decodeClaims(response.access_token)
    const now = Math.floor(clock.now())
    const tokens: UpstreamTokens = {
      accessToken: response.access_token,
      refreshToken: response.refresh_token ?? previousRefreshToken,
      idToken: response.id_token,
      expiresAt:
        response.expires_in !== undefined
          ? now + response.expires_in
          : typeof accessClaims?.exp === 'number'
            ? accessClaims.exp
            : now + DEFAULT_LIFETIME_SECONDS,
      scope: response.scope,
    }
    const identity =
      preset.identity(response.claims(), accessClaims) ??
      preset.identity(await fallbackClaims(), accessClaims)
    if (!identity) {
      throw new UpstreamError('rejected', 'invalid_grant', 'the upstream tokens name no subject')
    }
    // Opaque access tokens carry no scopes; the token response may still list them.
    const scopes = identity.scopes ?? response.scope?.split(' ').filter(Boolean)
    const sid = response.claims()?.sid
    return {
      tokens,
      identity: {
        ...identity,
        ...(scopes ? { scopes } : {}),
        ...(typeof sid === 'string' && sid ? { sid } : {}),
      },
    }
  }

  /** Userinfo claims for the access token: who it is when neither token says (opaque, no ID token). */
  async function userClaims(config: Configuration, accessToken: string) {
    if (!config.serverMetadata().userinfo_endpoint) return undefined
    return { ...(await fetchUserInfo(config, accessToken, skipSubjectCheck)) }
  }

  return {
    kind: settings.kind,

    authorizationUrl: (request, scopes) =>
      guarded('authorization request', async () =>
        buildAuthorizationUrl(await proxyClient(), {
          ...preset.authorizationParams,
          redirect_uri: redirectUri,
          scope: upstreamScope(preset, scopes),
          code_challenge: await calculatePKCECodeChallenge(request.codeVerifier),
          code_challenge_method: 'S256',
          state: request.state,
          nonce: request.nonce,
        }),
      ),

    exchangeCode: (callbackUrl, request) =>
      guarded('code exchange', async () => {
        const config = await proxyClient()
        // openid-client derives the token request's `redirect_uri` from this URL; rebuilding
        // it on the registered callback keeps it identical to the one sent to /authorize even
        // when the request reached us under another host name (a reverse proxy).
        const current = new URL(redirectUri)
        current.search = callbackUrl.search
        const response = await authorizationCodeGrant(config, current, {
          pkceCodeVerifier: request.codeVerifier,
          expectedState: request.state,
          expectedNonce: request.nonce,
          idTokenExpected: true,
        })
        return settle(response, () => userClaims(config, response.access_token))
      }),

    refresh: (refreshToken) =>
      guarded('refresh', async () => {
        const config = await proxyClient()
        const response = await refreshTokenGrant(config, refreshToken)
        return settle(response, () => userClaims(config, response.access_token), refreshToken)
      }),

    clientCredentials: ({ clientId, clientSecret, scope }) =>
      guarded('client credentials', async () => {
        const metadata = (await proxyClient()).serverMetadata()
        const response = await clientCredentialsGrant(
          machineClient(metadata, clientId, clientSecret),
          { ...preset.tokenParams, ...(scope ? { scope } : {}) },
        )
        // An opaque M2M token says nothing; the client it was issued to is its subject.
        return settle(response, async () => ({ sub: clientId }))
      }),

    async revoke(token, hint) {
      try {
        const config = await proxyClient()
        if (!config.serverMetadata().revocation_endpoint) return
        await tokenRevocation(config, token, { token_type_hint: hint })
      } catch (error) {
        const failure = toUpstreamError('revocation', error, timeoutSeconds, clock)
        logger?.warn(
          { kind: failure.kind, code: failure.code, reason: failure.message },
          'upstream token revocation failed',
        )
      }
    },

    verifyLogoutToken: (logoutToken) =>
      guarded('logout token', async () => {
        const metadata = (await proxyClient()).serverMetadata()
        if (!metadata.jwks_uri) {
          throw new UpstreamError(
            'rejected',
            'invalid_request',
            'the upstream publishes no JWKS to verify logout tokens with',
          )
        }
        if (logoutKeys?.jwksUri !== metadata.jwks_uri) {
          logoutKeys = {
            jwksUri: metadata.jwks_uri,
            keys: createRemoteJWKSet(new URL(metadata.jwks_uri), {
              // jose bounds the request itself (timeoutDuration).
              [joseFetch]: (url, init) => (options.fetch ?? fetch)(url, init),
              timeoutDuration: timeoutSeconds * 1000,
            }),
          }
        }
        return verifyLogoutToken(logoutToken, {
          issuer: metadata.issuer,
          clientId: settings.clientId,
          keys: logoutKeys.keys,
          now: clock.now(),
        })
      }),

    userinfo: (accessToken) =>
      guarded('userinfo', async () => {
        const config = await proxyClient()
        if (!config.serverMetadata().userinfo_endpoint) {
          throw new UpstreamError(
            'rejected',
            'invalid_request',
            'the upstream has no userinfo endpoint',
          )
        }
        return { ...(await fetchUserInfo(config, accessToken, skipSubjectCheck)) }
      }),

    async discover() {
      await proxyClient()
    },
  }
}

/** TLS failures name the certificate problem in their code (Node and OpenSSL codes). */
const TLS_FAILURE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_(VERIFY|GET)/

/**
 * Why discovery at `issuer` failed, for an operator, and whether the cause is configuration
 * (DNS has no such host, TLS refuses the certificate, the issuer serves no discovery
 * document or a different issuer) rather than an outage that retrying will outlast. Hosts
 * come from the configured issuer, not from the error, so no resolved address is disclosed.
 */
function diagnose(
  error: unknown,
  issuer: URL,
  timeoutSeconds: number,
): { detail: string; misconfigured: boolean } {
  const host = issuer.host
  const network = error instanceof TypeError ? (error.cause as { code?: unknown }) : undefined
  const code = typeof network?.code === 'string' ? network.code : undefined
  if (code === 'ENOTFOUND')
    return { detail: `ENOTFOUND ${host} (no such host)`, misconfigured: true }
  if (code && TLS_FAILURE.test(code))
    return { detail: `TLS ${code} (${host})`, misconfigured: true }
  if (code) return { detail: `${code} ${host}`, misconfigured: false }
  // Read by shape: the Response may come from another realm's fetch than this module's.
  const response = error instanceof ClientError ? (error.cause as Partial<Response>) : undefined
  if (typeof response?.status === 'number' && typeof response.url === 'string') {
    const { status, url } = response
    return { detail: `HTTP ${status} from ${url}`, misconfigured: status >= 400 && status < 500 }
  }
  if (error instanceof ClientError && error.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') {
    return {
      detail: `the discovery document names another issuer than ${issuer.href}`,
      misconfigured: true,
    }
  }
  return { detail: reason(error, timeoutSeconds), misconfigured: false }
}

/**
 * HTTP Basic when the upstream accepts it (RFC 8414 §2: the default when unadvertised), form
 * parameters otherwise; public clients (no secret) authenticate with PKCE alone.
 */
function clientAuth(secret: string | undefined): ClientAuth {
  if (!secret) return None()
  const basic = ClientSecretBasic(secret)
  const post = ClientSecretPost(secret)
  return (as, client, body, headers) => {
    const methods = as.token_endpoint_auth_methods_supported
    const method = !methods || methods.includes('client_secret_basic') ? basic : post
    method(as, client, body, headers)
  }
}

/** Every request gets its own deadline, on top of any signal openid-client passes. */
function withTimeout(fetchImpl: typeof fetch, timeoutSeconds: number): CustomFetch {
  return (url, init) => {
    const deadline = AbortSignal.timeout(timeoutSeconds * 1000)
    const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline
    return fetchImpl(url, { ...init, signal })
  }
}

function decodeClaims(token: string): Claims | undefined {
  try {
    return decodeJwt(token)
  } catch {
    return undefined // opaque (or encrypted) access token: nothing to read
  }
}

/** Classifies any failure of an upstream call (see `Upstream` for the contract). */
function toUpstreamError(
  operation: string,
  error: unknown,
  timeoutSeconds: number,
  clock: Clock,
): UpstreamError {
  if (error instanceof UpstreamError) return error
  const cause = { cause: error }
  if (error instanceof ResponseBodyError || error instanceof WWWAuthenticateChallengeError) {
    if (error.status >= 500 || error.status === 429) {
      return new UpstreamError(
        'unavailable',
        'temporarily_unavailable',
        `${operation}: the upstream answered ${error.status}`,
        { ...cause, retryAfterSeconds: retryAfter(error.response, clock) },
      )
    }
    // A failed HTTP Basic authentication comes back as a 401 challenge, the OAuth error in it.
    const code =
      error instanceof ResponseBodyError
        ? error.error
        : (error.cause[0]?.parameters.error ?? 'invalid_client')
    return new UpstreamError(
      'rejected',
      code,
      `${operation}: the upstream refused (${code})`,
      cause,
    )
  }
  if (error instanceof AuthorizationResponseError) {
    return new UpstreamError(
      'rejected',
      error.error,
      `${operation}: the upstream authorization failed (${error.error})`,
      cause,
    )
  }
  if (
    error instanceof ClientError &&
    error.code &&
    VALIDATION_FAILURES.has(error.code) &&
    !isMalformedBody(error)
  ) {
    // oauth4webapi's own message names the failed check ("unexpected ID Token nonce …").
    const check = error.cause instanceof Error ? error.cause.message : error.message
    return new UpstreamError('rejected', 'invalid_grant', `${operation}: ${check}`, cause)
  }
  if (
    error instanceof TypeError &&
    String((error as { code?: unknown }).code).startsWith('ERR_INVALID_ARG')
  ) {
    return new UpstreamError('rejected', 'invalid_request', `${operation}: ${error.message}`, cause)
  }
  const response =
    error instanceof ClientError && error.cause instanceof Response ? error.cause : undefined
  return new UpstreamError(
    'unavailable',
    'temporarily_unavailable',
    `${operation}: ${reason(error, timeoutSeconds)}`,
    { ...cause, retryAfterSeconds: retryAfter(response, clock) },
  )
}

/**
 * Whether oauth4webapi refused the response body's shape (not a JSON object, no `access_token`,
 * a field of the wrong type): it keeps that body as `{ body }` on the cause, where a failed
 * check of a token or a parameter keeps claims or parameters instead. Such a body is garbage
 * from whatever answered (a misconfigured gateway, a half-deployed IdP), not a verdict on the
 * grant: it must not end a session that a retry would refresh.
 */
function isMalformedBody(error: ClientError): boolean {
  const detail = error.cause instanceof Error ? error.cause.cause : undefined
  return (
    error.code === 'OAUTH_INVALID_RESPONSE' &&
    typeof detail === 'object' &&
    detail !== null &&
    'body' in detail
  )
}

/** A short, body-free description of why the upstream could not be used. */
function reason(error: unknown, timeoutSeconds: number): string {
  const code = (error as { code?: unknown } | undefined)?.code
  const name = (error as { name?: unknown } | undefined)?.name
  if (code === 'OAUTH_TIMEOUT' || name === 'TimeoutError') {
    return `no answer within ${timeoutSeconds}s`
  }
  if (code === 'OAUTH_ABORT' || name === 'AbortError') return 'the request was aborted'
  if (error instanceof TypeError) {
    const network = (error.cause as { code?: unknown } | undefined)?.code
    return typeof network === 'string' ? `network error (${network})` : 'network error'
  }
  if (error instanceof ClientError) return error.message
  return 'unexpected failure'
}

/** `Retry-After` as seconds, from either form RFC 9110 §10.2.3 allows. */
function retryAfter(response: Response | undefined, clock: Clock): number | undefined {
  const value = response?.headers.get('retry-after')?.trim()
  if (!value) return undefined
  if (/^\d+$/.test(value)) return Number(value)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil(date / 1000 - clock.now()))
}

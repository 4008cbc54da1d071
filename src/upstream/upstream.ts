import type { UpstreamKind } from '../config.js'
import type { LogoutClaims } from './logout-token.js'

/** Tokens the upstream issued, as the proxy keeps them (encrypted at rest). */
export interface UpstreamTokens {
  readonly accessToken: string
  readonly refreshToken?: string | undefined
  readonly idToken?: string | undefined
  /** Seconds since the epoch when `accessToken` expires. */
  readonly expiresAt: number
  /** Scopes granted, space separated, as the upstream reported them. */
  readonly scope?: string | undefined
}

/**
 * Who signed in (or which machine authenticated), read from the validated ID token and from
 * the access token's claims. Claims the upstream does not send are absent.
 */
export interface UpstreamIdentity {
  /** The user's subject; for M2M tokens the client (Kinde: `azp`; Auth0: `<id>@clients`). */
  readonly sub: string
  readonly email?: string | undefined
  readonly emailVerified?: boolean | undefined
  readonly name?: string | undefined
  /** Kinde organization (the tenant boundary). */
  readonly orgCode?: string | undefined
  readonly orgCodes?: readonly string[] | undefined
  /** Auth0 organization. */
  readonly orgId?: string | undefined
  readonly permissions?: readonly string[] | undefined
  /** Scopes of the upstream access token (Kinde `scp` array or `scope` string). */
  readonly scopes?: readonly string[] | undefined
  /** The upstream session of this sign-in (the ID token's `sid`), which back-channel logout names. */
  readonly sid?: string | undefined
}

/** One sign-in's secrets for the upstream leg, created per transaction and used once. */
export interface UpstreamAuthorizationRequest {
  readonly state: string
  readonly nonce: string
  readonly codeVerifier: string
}

/**
 * The upstream identity provider as the proxy uses it: one interface, implemented once on
 * openid-client (`createOidcUpstream`), with provider differences (Kinde, Auth0, generic OIDC)
 * as preset data. Every call is bounded by a timeout.
 *
 * Failures are `UpstreamError`s: `kind: 'unavailable'` (network, timeout, 5xx, 429, garbage)
 * or `kind: 'rejected'` with the upstream's OAuth `error` code (`invalid_grant`,
 * `invalid_client`, `access_denied`, …).
 */
export interface Upstream {
  readonly kind: UpstreamKind
  /**
   * Where to send the browser: the upstream authorization endpoint with
   * `redirect_uri = PUBLIC_URL/callback`, PKCE S256, state, nonce, the preset's extra
   * parameters (`audience`) and `scopes` translated for the provider (offline access is always
   * requested: Kinde `offline`, others `offline_access`).
   */
  authorizationUrl(request: UpstreamAuthorizationRequest, scopes: readonly string[]): Promise<URL>
  /**
   * Exchanges the code in `callbackUrl` (the full URL the upstream redirected to) with client
   * authentication, validating state, PKCE, nonce and the ID token.
   */
  exchangeCode(
    callbackUrl: URL,
    request: UpstreamAuthorizationRequest,
  ): Promise<{ tokens: UpstreamTokens; identity: UpstreamIdentity }>
  /** Uses a refresh token; the result keeps the old refresh token when none is returned. */
  refresh(refreshToken: string): Promise<{ tokens: UpstreamTokens; identity: UpstreamIdentity }>
  /** Client credentials for an upstream M2M application (the agent's own id and secret). */
  clientCredentials(params: {
    clientId: string
    clientSecret: string
    scope?: string | undefined
  }): Promise<{ tokens: UpstreamTokens; identity: UpstreamIdentity }>
  /** Best-effort revocation (RFC 7009); resolves even when the upstream has no endpoint. */
  revoke(token: string, hint: 'access_token' | 'refresh_token'): Promise<void>
  /** The upstream userinfo endpoint, called with the user's upstream access token. */
  userinfo(accessToken: string): Promise<Record<string, unknown>>
  /**
   * Verifies a back-channel logout token (OIDC Back-Channel Logout 1.0 §2.6) against the
   * upstream's JWKS and this client; see `verifyLogoutToken` in `logout-token.ts`.
   */
  verifyLogoutToken(logoutToken: string): Promise<LogoutClaims>
  /**
   * Fetches the discovery document now (kept once it succeeds), so that a misconfigured or
   * unreachable provider shows at start-up rather than at the first sign-in.
   */
  discover?(): Promise<void>
}

/** A failed upstream call, classified so the caller can answer with the right OAuth error. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: 'unavailable' | 'rejected',
    /** The upstream's OAuth error code when it gave one (`invalid_grant`, …). */
    readonly code: string,
    message: string,
    options: {
      cause?: unknown
      retryAfterSeconds?: number | undefined
      misconfigured?: boolean | undefined
      detail?: string | undefined
    } = {},
  ) {
    super(message, { cause: options.cause })
    this.name = 'UpstreamError'
    this.retryAfterSeconds = options.retryAfterSeconds
    this.misconfigured = options.misconfigured ?? false
    this.detail = options.detail
  }

  readonly retryAfterSeconds: number | undefined
  /**
   * The failure points at the configuration rather than an outage (unknown host, a TLS
   * certificate that does not match, no discovery document at the issuer): waiting will not help.
   */
  readonly misconfigured: boolean
  /** A short cause for operators (`ENOTFOUND acme.kinde.com`), naming hosts, never secrets. */
  readonly detail: string | undefined
}

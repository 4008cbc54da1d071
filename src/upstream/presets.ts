import type { UpstreamKind, UpstreamSettings } from '../config.js'
import type { UpstreamIdentity } from './upstream.js'

/** JWT claims as decoded: values are untrusted shapes until read through the helpers below. */
export type Claims = Record<string, unknown>

/**
 * What differs between upstream providers, as data: the one OIDC client (`oidc.ts`) does all
 * the HTTP and consults this for parameters, scopes and how to read identity from claims.
 */
export interface UpstreamPreset {
  readonly kind: UpstreamKind
  /** The scope that yields a refresh token: Kinde `offline`, everyone else `offline_access`. */
  readonly offlineScope: string
  /** Extra authorization-request parameters: `audience` (Kinde and Auth0 ignore `resource`). */
  readonly authorizationParams: Readonly<Record<string, string>>
  /** Extra token-request parameters for `client_credentials` (`audience`). */
  readonly tokenParams: Readonly<Record<string, string>>
  /**
   * Identity from the validated ID token (or userinfo) claims and the access token's claims;
   * `undefined` when neither names a subject (e.g. an opaque access token and no ID token).
   */
  identity(
    idClaims: Claims | undefined,
    accessClaims: Claims | undefined,
  ): UpstreamIdentity | undefined
}

/** The preset for the configured upstream (Kinde, Auth0 or generic OpenID Connect). */
export function presetFor(settings: UpstreamSettings): UpstreamPreset {
  switch (settings.kind) {
    case 'kinde':
      return kinde(settings.audience)
    case 'auth0':
      return auth0(settings.audience)
    case 'oidc':
      return oidc(settings.audience)
  }
}

/**
 * Kinde: refresh tokens need `offline` (asking for `offline_access` silently yields none);
 * access tokens carry scopes as an `scp` array, the tenant as `org_code`, and M2M tokens have
 * no `sub` at all, only `azp`.
 */
export function kinde(audience: string | undefined): UpstreamPreset {
  return {
    kind: 'kinde',
    offlineScope: 'offline',
    authorizationParams: audienceParam(audience),
    tokenParams: audienceParam(audience),
    identity: (id = {}, at = {}) => {
      const sub = str(id.sub) ?? str(at.sub) ?? str(at.azp) ?? str(at.client_id)
      if (!sub) return undefined
      return compact({
        sub,
        ...emailOf(id, at),
        name: str(id.name) ?? fullName(id),
        orgCode: str(at.org_code) ?? str(id.org_code),
        orgCodes: strings(id.org_codes) ?? strings(at.org_codes),
        permissions: strings(at.permissions),
        scopes: strings(at.scp) ?? scopeString(at.scope),
      })
    },
  }
}

/**
 * Auth0: `audience` is required for a JWT access token (config guarantees one); M2M subjects
 * are `<client_id>@clients`; scopes are a `scope` string; organizations are `org_id`; profile
 * claims live in the ID token only.
 */
export function auth0(audience: string | undefined): UpstreamPreset {
  return {
    kind: 'auth0',
    offlineScope: 'offline_access',
    authorizationParams: audienceParam(audience),
    tokenParams: audienceParam(audience),
    identity: (id = {}, at = {}) => {
      const sub = str(id.sub) ?? str(at.sub)
      if (!sub) return undefined
      return compact({
        sub,
        ...emailOf(id, {}),
        name: str(id.name),
        orgId: str(at.org_id) ?? str(id.org_id),
        permissions: strings(at.permissions),
        scopes: scopeString(at.scope) ?? strings(at.scp),
      })
    },
  }
}

/** Any other OpenID Connect provider: standard claims, RFC 9068 access tokens when JWTs. */
export function oidc(audience: string | undefined): UpstreamPreset {
  return {
    kind: 'oidc',
    offlineScope: 'offline_access',
    authorizationParams: audienceParam(audience),
    tokenParams: audienceParam(audience),
    identity: (id = {}, at = {}) => {
      const sub = str(id.sub) ?? str(at.sub) ?? str(at.client_id) ?? str(at.azp)
      if (!sub) return undefined
      return compact({
        sub,
        ...emailOf(id, at),
        name: str(id.name) ?? str(at.name),
        permissions: strings(at.permissions),
        scopes: scopeString(at.scope) ?? strings(at.scp),
      })
    },
  }
}

/**
 * The `scope` of the upstream authorization request: `openid`, the client's scopes, and the
 * preset's offline scope, deduplicated. `offline_access` becomes the preset's offline scope,
 * because the proxy always wants a refresh token and Kinde only knows `offline`.
 */
export function upstreamScope(preset: UpstreamPreset, scopes: readonly string[]): string {
  const translated = scopes.map((scope) =>
    scope === 'offline_access' ? preset.offlineScope : scope,
  )
  return [...new Set(['openid', ...translated, preset.offlineScope])].join(' ')
}

/**
 * The email and whether it is verified, read as one pair from the token that names the email
 * (the ID token first): a verified flag from one token never vouches for another's address.
 * Kinde ID tokens carry no `email_verified`, so for Kinde it stays unknown here and the sign-in
 * policy asks userinfo when it needs it.
 */
function emailOf(id: Claims, at: Claims): { email?: string; emailVerified?: boolean } {
  const source = str(id.email) ? id : str(at.email) ? at : undefined
  if (!source) return {}
  return { email: str(source.email), emailVerified: bool(source.email_verified) }
}

function audienceParam(audience: string | undefined): Record<string, string> {
  return audience ? { audience } : {}
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function bool(value: unknown): boolean | undefined {
  return typeof value === 'boolean' ? value : undefined
}

function strings(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.filter((item) => typeof item === 'string') : undefined
}

function scopeString(value: unknown): string[] | undefined {
  return typeof value === 'string' ? value.split(' ').filter(Boolean) : undefined
}

/** Kinde ID tokens may carry only `given_name` and `family_name`. */
function fullName(id: Claims): string | undefined {
  const parts = [str(id.given_name), str(id.family_name)].filter(Boolean)
  return parts.length ? parts.join(' ') : undefined
}

function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

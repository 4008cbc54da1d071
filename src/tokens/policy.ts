import { type Config, OIDC_SCOPES } from '../config.js'
import type { Deps } from '../deps.js'
import { type Upstream, UpstreamError, type UpstreamIdentity } from '../upstream/upstream.js'

/**
 * A library user's own decision about a user signing in (after the configured policy): `true`
 * lets them in, `false` or a string (the reason, shown to the client) refuses them. It runs
 * again on every refresh, with what the upstream says then. Agents (client_credentials) are
 * governed by `M2M_ALLOWED_CLIENTS` and `ALLOWED_ORG_CODES` instead.
 */
export type AuthorizeUser = (
  user: UpstreamIdentity & { clientId: string },
) => boolean | string | Promise<boolean | string>

/** The `authorizeUser` of a proxy whose application adds nothing to the configured policy. */
export const admitEveryone: AuthorizeUser = () => true

type ScopeConfig = Pick<Config, 'openScopes' | 'scopePermissions'>

/**
 * Applies `ALLOWED_EMAIL_DOMAINS`, `ALLOWED_ORG_CODES`, `REQUIRED_PERMISSIONS` and the
 * `authorizeUser` hook; returns why the user is refused, or undefined when they may proceed.
 * An email counts as verified only when the upstream said `email_verified: true`.
 */
export async function checkUserPolicy(
  config: Pick<Config, 'allowedEmailDomains' | 'allowedOrgCodes' | 'requiredPermissions'>,
  identity: UpstreamIdentity,
  clientId: string,
  authorizeUser?: AuthorizeUser,
): Promise<string | undefined> {
  if (config.allowedEmailDomains.length) {
    const domain = identity.email?.split('@').at(-1)?.toLowerCase()
    if (!identity.email || !domain || identity.emailVerified !== true) {
      return 'a verified email address is required to use this server'
    }
    if (!config.allowedEmailDomains.includes(domain))
      return `email addresses at ${domain} may not use this server`
  }
  if (config.allowedOrgCodes.length) {
    const org = identity.orgCode ?? identity.orgId
    if (!org || !config.allowedOrgCodes.includes(org)) {
      return org
        ? `organization ${org} may not use this server`
        : 'membership of an allowed organization is required'
    }
  }
  const missing = config.requiredPermissions.filter((p) => !identity.permissions?.includes(p))
  if (missing.length)
    return `missing required permission${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`
  if (authorizeUser) {
    const verdict = await authorizeUser({ ...identity, clientId })
    if (verdict !== true)
      return typeof verdict === 'string' && verdict ? verdict : 'this user may not use this server'
  }
  return undefined
}

/**
 * The upstream permissions or scopes that back `scope` (its own name, then what
 * `SCOPE_PERMISSIONS` maps to it), or undefined for a scope every signed-in user gets (the
 * OpenID Connect scopes and `OPEN_SCOPES`).
 */
export function scopeBacking(config: ScopeConfig, scope: string): readonly string[] | undefined {
  if (OIDC_SCOPES.includes(scope) || config.openScopes.includes(scope)) return undefined
  return [scope, ...(config.scopePermissions.get(scope) ?? [])]
}

/**
 * The requested scopes this identity may hold (RFC 6749 §3.3: the server may grant less than
 * asked, and says so in the token response's `scope`): the open ones, and those whose name or
 * mapped permission is among the upstream token's permissions or scopes.
 */
export function grantScopes(
  config: ScopeConfig,
  requested: readonly string[],
  identity: Pick<UpstreamIdentity, 'permissions' | 'scopes'>,
): string[] {
  const held = new Set([...(identity.permissions ?? []), ...(identity.scopes ?? [])])
  return [...new Set(requested)].filter((scope) => {
    const backing = scopeBacking(config, scope)
    return !backing || backing.some((permission) => held.has(permission))
  })
}

/**
 * The `error_description` of a 403 `insufficient_scope` for `scopes`, naming the upstream
 * permission each backed scope needs, so that a user who cannot step up knows what to ask an
 * administrator for.
 */
export function describeNeededScopes(config: ScopeConfig, scopes: readonly string[]): string {
  const plural = scopes.length > 1
  const base = `this request needs the scope${plural ? 's' : ''} ${scopes.join(' ')}`
  const backed = scopes.flatMap((scope) => {
    const backing = scopeBacking(config, scope)
    return backing ? [{ scope, permissions: backing.join(' or ') }] : []
  })
  if (!backed.length) return base
  const needs =
    plural || backed.length > 1
      ? backed.map(({ scope, permissions }) => `${permissions} for ${scope}`).join('; ')
      : backed[0]?.permissions
  return `${base} (upstream permission ${needs})`
}

/** The sign-in decision: the identity as settled and the scopes granted, or why not. */
export type Admission =
  | { readonly identity: UpstreamIdentity; readonly scopes: string[]; readonly refusal?: never }
  | { readonly refusal: string }

type AdmissionDeps = Pick<Deps, 'config' | 'authorizeUser'> & {
  readonly upstream: Pick<Upstream, 'userinfo'>
}

/**
 * The whole decision on a user the upstream has just vouched for, the same at sign-in and on
 * every refresh: email verification settled (from userinfo when `ALLOWED_EMAIL_DOMAINS` or
 * `authorizeUser` may need it and the tokens do not say, as with Kinde), the sign-in policy, and
 * the requested scopes narrowed to those the upstream backs. An unreachable userinfo endpoint
 * throws its `UpstreamError` (`unavailable`); one that refuses leaves the email unverified.
 */
export async function admitUser(
  deps: AdmissionDeps,
  params: {
    identity: UpstreamIdentity
    upstreamAccessToken: string
    clientId: string
    requested: readonly string[]
  },
): Promise<Admission> {
  const { config } = deps
  let { identity } = params
  // authorizeUser may judge email_verified too: it gets an identity as complete as the policy's.
  const needsEmail =
    config.allowedEmailDomains.length > 0 ||
    (deps.authorizeUser !== undefined && deps.authorizeUser !== admitEveryone)
  if (needsEmail && identity.emailVerified === undefined) {
    identity = await withUserinfoEmail(deps.upstream, identity, params.upstreamAccessToken)
  }
  const refusal = await checkUserPolicy(config, identity, params.clientId, deps.authorizeUser)
  if (refusal) return { refusal }
  return { identity, scopes: grantScopes(config, params.requested, identity) }
}

/** The email and its verification, as one pair, from the upstream's userinfo for this subject. */
async function withUserinfoEmail(
  upstream: Pick<Upstream, 'userinfo'>,
  identity: UpstreamIdentity,
  accessToken: string,
): Promise<UpstreamIdentity> {
  let claims: Record<string, unknown>
  try {
    claims = await upstream.userinfo(accessToken)
  } catch (error) {
    if (error instanceof UpstreamError && error.kind === 'rejected') return identity
    throw error
  }
  if (claims.sub !== identity.sub || typeof claims.email !== 'string' || !claims.email) {
    return identity
  }
  return {
    ...identity,
    email: claims.email,
    emailVerified: typeof claims.email_verified === 'boolean' ? claims.email_verified : undefined,
  }
}

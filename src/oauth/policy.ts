import type { Config } from '../config.js'
import type { UpstreamIdentity } from '../upstream/upstream.js'

/**
 * A library user's own decision about a user signing in (after the configured policy): `true`
 * lets them in, `false` or a string (the reason, shown to the client) refuses them. Agents
 * (client_credentials) are governed by `M2M_ALLOWED_CLIENTS` and `ALLOWED_ORG_CODES` instead.
 */
export type AuthorizeUser = (
  user: UpstreamIdentity & { clientId: string },
) => boolean | string | Promise<boolean | string>

/**
 * Applies `ALLOWED_EMAIL_DOMAINS`, `ALLOWED_ORG_CODES`, `REQUIRED_PERMISSIONS` and the
 * `authorizeUser` hook; returns why the user is refused, or undefined when they may proceed.
 */
export async function checkUserPolicy(
  config: Pick<Config, 'allowedEmailDomains' | 'allowedOrgCodes' | 'requiredPermissions'>,
  identity: UpstreamIdentity,
  clientId: string,
  authorizeUser?: AuthorizeUser,
): Promise<string | undefined> {
  if (config.allowedEmailDomains.length) {
    const domain = identity.email?.split('@').at(-1)?.toLowerCase()
    if (!identity.email || !domain || identity.emailVerified === false) {
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

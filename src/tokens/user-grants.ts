import { sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import type { Grant } from './grants.js'

/** The user's index of grants (keys hash the subject: any string may be one). */
export const userGrantsKey = (sub: string) => storeKey.userGrants(sha256(sub))
/** The index of the grants signed in through one upstream session. */
export const sessionGrantsKey = (sid: string) => storeKey.sessionGrants(sha256(sid))
/** A signed-in `/account` page, by its cookie's value. */
export const accountSessionKey = (id: string) => storeKey.accountSession(sha256(id))
/** A logout token acted on (OIDC Back-Channel Logout 1.0 §2.6: refuse a replayed `jti`). */
export const logoutTokenKey = (issuer: string, jti: string) =>
  storeKey.logoutToken(sha256(`${issuer} ${jti}`))

/**
 * Index entries outlive their grant's current expiry by this much, so that a grant kept alive
 * by refreshes needs its index entries renewed only about once a day, not on every refresh.
 */
const INDEX_SLACK_SECONDS = KEY_TTL_SECONDS.grantIndexSlack
/** Bound on the grants one listing reads: a person has a handful, a runaway script thousands. */
export const MAX_LISTED_GRANTS = 500

type IndexDeps = Pick<Deps, 'store' | 'config' | 'clock'>

/**
 * Names the grant in its user's index (and its upstream session's) when the entries would
 * otherwise expire before the grant, and returns the grant stamped with how long they last.
 * Called before the grant itself is written: an entry for a grant not (or no longer) there is
 * harmless, a grant missing from its index is not.
 */
export async function keepIndexed(deps: IndexDeps, grant: Grant): Promise<Grant> {
  const now = deps.clock.now()
  const ttlSeconds = deps.config.refreshTokenTtlSeconds
  if ((grant.indexedUntil ?? 0) >= now + ttlSeconds) return grant
  const indexTtl = ttlSeconds + INDEX_SLACK_SECONDS
  await Promise.all([
    deps.store.indexAdd(userGrantsKey(grant.sub), grant.id, indexTtl),
    grant.upstreamSid
      ? deps.store.indexAdd(sessionGrantsKey(grant.upstreamSid), grant.id, indexTtl)
      : undefined,
  ])
  return { ...grant, indexedUntil: Math.floor(now + indexTtl) }
}

/** Takes an ended grant out of its indexes (best effort: readers prune what is left). */
export async function unindexGrant(deps: Pick<Deps, 'store'>, grant: Grant): Promise<void> {
  await Promise.all([
    deps.store.indexRemove(userGrantsKey(grant.sub), grant.id),
    grant.upstreamSid
      ? deps.store.indexRemove(sessionGrantsKey(grant.upstreamSid), grant.id)
      : undefined,
  ]).catch(() => {})
}

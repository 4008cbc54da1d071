import { sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import type { Grant } from './grants.js'

// Store keys of a user's control over their grants. Each names its own Redis Cluster hash slot
// (the `{…}` tag), away from the grants it points at: an index is updated in single-key steps
// beside the grant's, and tolerates naming grants that are gone.

/** A user's grants: a sorted set of grant ids, scored by when each would expire. */
export const userGrantsKey = (sub: string) => `user-grants:{user:${sha256(sub)}}`
/** The grants of one upstream session (`sid`), for a logout token that names only the session. */
export const sessionGrantsKey = (sid: string) => `session-grants:{upstream-session:${sha256(sid)}}`
/** A signed-in `/account` page session, by the hash of its cookie's value. */
export const accountSessionKey = (id: string) => `account:{account:${sha256(id)}}`
/** A logout token already acted on (OIDC Back-Channel Logout 1.0 §2.6: refuse a replayed `jti`). */
export const logoutTokenKey = (issuer: string, jti: string) =>
  `logout-jti:{logout:${sha256(`${issuer} ${jti}`)}}`

/**
 * Index entries outlive their grant's current expiry by this much, so that a grant kept alive
 * by refreshes needs its index entries renewed only about once a day, not on every refresh.
 */
const INDEX_SLACK_SECONDS = 86_400
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

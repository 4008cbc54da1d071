import type { GrantRevoker } from '../audit.js'
import type { Deps } from '../deps.js'
import { findGrant, type Grant, revokeGrant, upstreamTokens, withGrantLock } from './grants.js'
import { MAX_LISTED_GRANTS, sessionGrantsKey, userGrantsKey } from './user-grants.js'

/** The operator's command has no keys, upstream or verifier: ending a grant needs none of them. */
type EndDeps = Pick<Deps, 'config' | 'store' | 'clock'> &
  Partial<Pick<Deps, 'keys' | 'verifier' | 'audit' | 'upstream'>>

/** How many grants one sweep (a logout, the operator's command) ends at most. */
const MAX_ENDED_GRANTS = 10_000
const ENDING_CONCURRENCY = 16

/**
 * The user's live grants, newest first. Index entries for grants that are gone (expired,
 * revoked elsewhere) are pruned on the way; a grant of another subject is never returned.
 */
export async function listUserGrants(
  deps: Pick<Deps, 'store'>,
  sub: string,
  limit = MAX_LISTED_GRANTS,
): Promise<Grant[]> {
  const grants = await readIndex(deps, userGrantsKey(sub), limit)
  return grants.filter((grant) => grant.sub === sub).sort((a, b) => b.createdAt - a.createdAt)
}

/**
 * Ends one grant as `/revoke` does (its refresh family and live access tokens, under its lock),
 * records `grant.revoked` by `by`, and revokes its upstream refresh token best-effort in the
 * background: a back-channel logout must answer its upstream promptly, whatever the number of
 * grants it ends.
 */
export async function endGrant(
  deps: EndDeps,
  grantId: string,
  by: GrantRevoker,
  reason?: string,
): Promise<Grant | undefined> {
  const grant = await withGrantLock(deps, grantId, () => revokeGrant(deps, grantId))
  if (!grant) return undefined
  deps.audit?.('grant.revoked', {
    by,
    client_id: grant.clientId,
    sub: grant.sub,
    org: grant.identity.orgCode ?? grant.identity.orgId,
    flow_id: grant.flowId,
    reason,
  })
  const { upstream, keys } = deps
  if (upstream && keys) {
    // `revoke` never rejects; unsealing a grant sealed under a forgotten key may.
    void upstreamTokens({ ...deps, keys }, grant).then(
      (tokens) =>
        tokens.refreshToken ? upstream.revoke(tokens.refreshToken, 'refresh_token') : undefined,
      () => {},
    )
  }
  return grant
}

/** Ends every grant of `sub` (only those of `clientId` when given); resolves to how many. */
export async function endUserGrants(
  deps: EndDeps,
  sub: string,
  options: { by: GrantRevoker; clientId?: string | undefined; reason?: string | undefined },
): Promise<number> {
  const grants = (await listUserGrants(deps, sub, MAX_ENDED_GRANTS)).filter(
    (grant) => options.clientId === undefined || grant.clientId === options.clientId,
  )
  return endAll(deps, grants, options.by, options.reason)
}

/** Ends every grant signed in through the upstream session `sid`; resolves to how many. */
export async function endSessionGrants(
  deps: EndDeps,
  sid: string,
  options: { by: GrantRevoker; reason?: string | undefined },
): Promise<number> {
  const grants = (await readIndex(deps, sessionGrantsKey(sid), MAX_ENDED_GRANTS)).filter(
    (grant) => grant.upstreamSid === sid,
  )
  return endAll(deps, grants, options.by, options.reason)
}

async function endAll(
  deps: EndDeps,
  grants: readonly Grant[],
  by: GrantRevoker,
  reason: string | undefined,
): Promise<number> {
  // A few at a time: each takes its grant's lock and writes to the deny-list.
  let count = 0
  for (let i = 0; i < grants.length; i += ENDING_CONCURRENCY) {
    const batch = grants.slice(i, i + ENDING_CONCURRENCY)
    const ended = await Promise.all(batch.map((grant) => endGrant(deps, grant.id, by, reason)))
    count += ended.filter(Boolean).length
  }
  return count
}

/** The grants an index names that still exist; the others are taken out of it. */
async function readIndex(deps: Pick<Deps, 'store'>, key: string, limit: number): Promise<Grant[]> {
  const ids = await deps.store.indexMembers(key, limit)
  const found = await Promise.all(ids.map((id) => findGrant(deps, id)))
  const stale = ids.filter((_, i) => !found[i])
  if (stale.length)
    await Promise.all(stale.map((id) => deps.store.indexRemove(key, id))).catch(() => {})
  return found.filter((grant): grant is Grant => grant !== undefined)
}

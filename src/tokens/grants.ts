import { randomToken, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError, unavailable, upstreamUnavailable } from '../errors.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import { LockTimeoutError, withLock } from '../store/lock.js'
import type { StoreEntry } from '../store/store.js'
import { UpstreamError, type UpstreamIdentity, type UpstreamTokens } from '../upstream/upstream.js'
import type { IdentityClaims } from './access-token.js'
import { type Admission, admitUser } from './policy.js'
import { seal, unseal } from './seal.js'
import { keepIndexed, unindexGrant } from './user-grants.js'

/**
 * One user's authorization of one client: the root of a refresh-token family. Revoking the
 * grant ends the family and every access token it issued.
 */
export interface Grant {
  readonly id: string
  readonly clientId: string
  readonly sub: string
  readonly scopes: readonly string[]
  readonly identity: IdentityClaims
  /** The upstream token set, sealed (JWE) with the encryption key. */
  readonly upstream: string
  /** Hash of the one refresh token of this family that may rotate now. */
  readonly currentRefreshHash?: string | undefined
  /** Access tokens issued from this grant that may still be live: revoked with the grant. */
  readonly accessTokens: readonly { jti: string; exp: number }[]
  readonly createdAt: number
  /** The sign-in this grant came from, for correlating audit events. */
  readonly flowId?: string | undefined
  /** Where the client's answers went at sign-in (shown on the account page). */
  readonly redirectUri?: string | undefined
  /** The upstream session (`sid` of the ID token): a back-channel logout naming it ends this grant. */
  readonly upstreamSid?: string | undefined
  /** When the client last obtained tokens from this grant (or had its upstream token renewed). */
  readonly lastUsedAt?: number | undefined
  /** Until when the user's (and session's) index names this grant (`keepIndexed`). */
  readonly indexedUntil?: number | undefined
  /**
   * The DPoP key a public client's refresh tokens are bound to (RFC 9449 §5): refreshing
   * needs a proof of it.
   */
  readonly dpopJkt?: string | undefined
}

/** A refresh token at rest, found by its hash. */
interface RefreshRecord {
  readonly grantId: string
  readonly clientId: string
  /** Set once rotated: the grace answer for a client that lost the rotation's response. */
  readonly rotatedAt?: number | undefined
  /** The successor refresh token, sealed, kept only for the grace period. */
  readonly successor?: string | undefined
}

/** What an authorization code stands for (one use, short-lived). */
export interface CodeRecord {
  readonly grantId: string
  readonly clientId: string
  readonly redirectUri: string
  /** Whether `/authorize` had a redirect_uri, which `/token` must then repeat (RFC 6749 §4.1.3). */
  readonly redirectUriProvided: boolean
  readonly codeChallenge: string
  readonly resource: string
}

const {
  grant: grantKey,
  refreshToken: refreshKey,
  code: codeKey,
  usedCode: usedCodeKey,
  revokedAccessToken: revokedKey,
} = storeKey
const USED_CODE_MEMORY_SECONDS = KEY_TTL_SECONDS.usedCode

type GrantDeps = Pick<Deps, 'config' | 'store' | 'keys' | 'clock' | 'verifier'>

/** Reads the identity claims that travel in access tokens from an upstream identity. */
export function identityClaims(identity: UpstreamIdentity): IdentityClaims {
  return {
    email: identity.email,
    orgCode: identity.orgCode,
    orgCodes: identity.orgCodes,
    orgId: identity.orgId,
    permissions: identity.permissions,
  }
}

/** Stores a new grant with its upstream tokens sealed. */
export async function createGrant(
  deps: GrantDeps,
  params: {
    clientId: string
    identity: UpstreamIdentity
    scopes: readonly string[]
    upstream: UpstreamTokens
    flowId?: string | undefined
    redirectUri?: string | undefined
  },
): Promise<Grant> {
  const grant: Grant = {
    id: randomToken(16),
    clientId: params.clientId,
    sub: params.identity.sub,
    scopes: params.scopes,
    identity: identityClaims(params.identity),
    upstream: await seal(deps.keys, params.upstream),
    accessTokens: [],
    createdAt: Math.floor(deps.clock.now()),
    flowId: params.flowId,
    redirectUri: params.redirectUri,
    upstreamSid: params.identity.sid,
  }
  await saveGrant(deps, grant)
  return grant
}

export async function findGrant(deps: Pick<Deps, 'store'>, id: string): Promise<Grant | undefined> {
  return deps.store.get<Grant>(grantKey(id))
}

/**
 * Writes the grant, forgetting access tokens that have expired anyway, together with
 * `alongside` (the refresh-token records an issuance made) in one step.
 */
export async function saveGrant(
  deps: GrantDeps,
  grant: Grant,
  alongside: readonly StoreEntry[] = [],
): Promise<void> {
  const now = deps.clock.now()
  const indexed = await keepIndexed(deps, grant)
  const live = {
    ...indexed,
    accessTokens: grant.accessTokens.filter((t) => t.exp > now),
    lastUsedAt: Math.floor(now),
  }
  await deps.store.putMany([
    ...alongside,
    { key: grantKey(grant.id), value: live, ttlSeconds: deps.config.refreshTokenTtlSeconds },
  ])
}

/** The grant's upstream token set. */
export function upstreamTokens(deps: Pick<Deps, 'keys'>, grant: Grant): Promise<UpstreamTokens> {
  return unseal<UpstreamTokens>(deps.keys, grant.upstream)
}

/**
 * Ends a grant: the family's refresh tokens stop working (they point at a grant that is gone)
 * and every access token it issued goes on the deny-list until it would have expired.
 */
export async function revokeGrant(
  deps: Pick<Deps, 'store' | 'clock'> & Partial<Pick<Deps, 'verifier'>>,
  grantId: string,
): Promise<Grant | undefined> {
  const grant = await deps.store.take<Grant>(grantKey(grantId))
  if (!grant) return undefined
  await Promise.all(grant.accessTokens.map((t) => denyAccessToken(deps, t.jti, t.exp)))
  await unindexGrant(deps, grant)
  return grant
}

/**
 * Puts one access token on the deny-list until its `exp` (RFC 7009 §2 for access tokens) and
 * drops it from this instance's verification cache at once; other instances see the deny-list
 * within their cache TTL.
 */
export async function denyAccessToken(
  deps: Pick<Deps, 'store' | 'clock'> & Partial<Pick<Deps, 'verifier'>>,
  jti: string,
  exp: number,
): Promise<void> {
  deps.verifier?.evict(jti)
  const ttl = exp - deps.clock.now()
  if (ttl > 0) await deps.store.put(revokedKey(jti), true, ttl)
}

/** Whether an access token was revoked. */
export async function isAccessTokenDenied(
  deps: Pick<Deps, 'store'>,
  jti: string,
): Promise<boolean> {
  return (await deps.store.get<boolean>(revokedKey(jti))) === true
}

/** Mints a one-time authorization code (RFC 6749 §4.1.2); only its hash is stored. */
export async function issueCode(deps: GrantDeps, record: CodeRecord): Promise<string> {
  const code = randomToken(32)
  await deps.store.put(codeKey(sha256(code)), record, deps.config.authCodeTtlSeconds)
  return code
}

/**
 * The grant a code stands for, whether or not it was redeemed already: the lock to take
 * before `redeemCode`, so that a redemption and the replays racing it queue on one lock.
 */
export async function codeGrantId(deps: GrantDeps, code: string): Promise<string | undefined> {
  const hash = sha256(code)
  const record = await deps.store.get<CodeRecord>(codeKey(hash))
  return record?.grantId ?? (await deps.store.get<string>(usedCodeKey(hash)))
}

/**
 * Redeems a code atomically; `grantId` is the code's own (`codeGrantId`), whose lock the caller
 * holds. A code seen before answers `replayed` with the grant it created, so the caller can
 * revoke what it issued (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
 */
export async function redeemCode(
  deps: GrantDeps,
  code: string,
  grantId: string,
): Promise<{ record: CodeRecord } | { replayedGrantId: string } | undefined> {
  const hash = sha256(code)
  // The "used" marker is the one-shot gate, written as the code is taken and only if absent:
  // exactly one redeemer gets the record, and from that instant every other attempt is a
  // recognised replay — no window where neither the code nor its marker exists.
  const record = await deps.store.takeOnce<CodeRecord>(
    codeKey(hash),
    usedCodeKey(hash),
    grantId,
    USED_CODE_MEMORY_SECONDS,
  )
  if (record) return { record }
  const replayedGrantId = await deps.store.get<string>(usedCodeKey(hash))
  return replayedGrantId ? { replayedGrantId } : undefined
}

/** A refresh token just issued, with the records to store along with its grant. */
export interface IssuedRefreshToken {
  readonly token: string
  /** The grant with the new token current. */
  readonly grant: Grant
  /** Written with the grant (`saveGrant(deps, grant, writes)`), never before it. */
  readonly writes: readonly StoreEntry[]
}

/**
 * A refresh token names its grant in clear (`<grant id>.<secret>`): its record lives in the
 * grant's hash slot, found without a lookup in another slot (Redis Cluster). The grant id is
 * no secret (it rides in access tokens too); the token is still stored only as a hash.
 */
function refreshTokenGrantId(token: string): string | undefined {
  const dot = token.indexOf('.')
  const grantId = token.slice(0, dot)
  return dot > 0 && GRANT_ID.test(grantId) ? grantId : undefined
}
const GRANT_ID = /^[A-Za-z0-9_-]{1,64}$/

/** Where a presented refresh token's record would be; undefined for a malformed token. */
function refreshRecordKey(token: string): { key: string; hash: string } | undefined {
  const grantId = refreshTokenGrantId(token)
  if (!grantId) return undefined
  const hash = sha256(token)
  return { key: refreshKey(grantId, hash), hash }
}

/** Issues the first refresh token of a grant's family; nothing is stored yet (`writes`). */
export function issueRefreshToken(deps: GrantDeps, grant: Grant): IssuedRefreshToken {
  const token = `${grant.id}.${randomToken(32)}`
  const hash = sha256(token)
  const record: RefreshRecord = { grantId: grant.id, clientId: grant.clientId }
  return {
    token,
    grant: { ...grant, currentRefreshHash: hash },
    writes: [
      {
        key: refreshKey(grant.id, hash),
        value: record,
        ttlSeconds: deps.config.refreshTokenTtlSeconds,
      },
    ],
  }
}

/** What presenting a refresh token means for its family. */
export type RefreshLookup =
  | { kind: 'current'; grant: Grant; hash: string }
  | { kind: 'grace'; grant: Grant; successor: string }
  | { kind: 'reused'; grantId: string }
  | { kind: 'unknown' }

/**
 * Classifies a presented refresh token: the family's current one (rotate it), the one just
 * rotated, within the grace period and while its successor has never been used (answer with
 * that successor: the client lost the response), or anything older (reuse: the family must
 * end, RFC 9700 §4.14.2). The caller holds the grant's lock, so the verdict cannot race a
 * rotation.
 */
export async function lookupRefreshToken(
  deps: GrantDeps,
  token: string,
  clientId: string,
): Promise<RefreshLookup> {
  const at = refreshRecordKey(token)
  if (!at) return { kind: 'unknown' }
  const { key, hash } = at
  const record = await deps.store.get<RefreshRecord>(key)
  if (!record || record.clientId !== clientId) return { kind: 'unknown' }
  const grant = await findGrant(deps, record.grantId)
  if (!grant) return { kind: 'unknown' }
  if (grant.currentRefreshHash === hash) return { kind: 'current', grant, hash }
  const inGrace =
    record.rotatedAt !== undefined &&
    deps.clock.now() - record.rotatedAt <= deps.config.refreshGraceSeconds
  if (inGrace && record.successor) {
    // The grace is for a client that lost the rotation's response and so never held the
    // successor: once the successor was presented (it rotated, so it is no longer current),
    // whoever holds the old token is not that client, and answering would let a stolen old
    // token walk the chain to the family's newest token.
    const successor = await unseal<string>(deps.keys, record.successor)
    if (grant.currentRefreshHash === sha256(successor)) return { kind: 'grace', grant, successor }
  }
  return { kind: 'reused', grantId: grant.id }
}

/**
 * Rotates the family's current refresh token: a new one becomes current, and the old one
 * remembers it (sealed) for the grace period so a retry gets the same answer. Nothing is
 * stored yet: `writes` go with the grant, so the rotation happens whole or not at all.
 */
export async function rotateRefreshToken(
  deps: GrantDeps,
  grant: Grant,
  oldHash: string,
): Promise<IssuedRefreshToken> {
  const issued = issueRefreshToken(deps, grant)
  const record: RefreshRecord = {
    grantId: grant.id,
    clientId: grant.clientId,
    rotatedAt: Math.floor(deps.clock.now()),
    successor: await seal(deps.keys, issued.token),
  }
  // Kept past the grace so a later reuse is recognised as reuse (and ends the family).
  const retired = {
    key: refreshKey(grant.id, oldHash),
    value: record,
    ttlSeconds: deps.config.refreshTokenTtlSeconds,
  }
  return { ...issued, writes: [...issued.writes, retired] }
}

/** The upstream's shared lock for one grant: one instance refreshes its upstream token at a time. */
export function grantLockKey(grantId: string): string {
  return storeKey.grantLock(grantId)
}

/**
 * Runs `fn` holding the grant's lock, shared through the store by every instance: refreshes,
 * code exchanges and revocations of one family never interleave (an interleaved save would
 * bring a revoked family back). A lock held too long is `temporarily_unavailable`.
 */
export async function withGrantLock<T>(
  deps: Pick<Deps, 'store' | 'config'>,
  grantId: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await withLock(deps.store, grantLockKey(grantId), fn, {
      waitMs: deps.config.upstreamTimeoutSeconds * 1000 + 5000,
    })
  } catch (error) {
    if (error instanceof LockTimeoutError) throw unavailable(error)
    throw error
  }
}

/** Forgets a refresh token (RFC 7009 revocation of one token ends its family: the caller revokes the grant). */
export async function findRefreshGrantId(
  deps: GrantDeps,
  token: string,
): Promise<{ grantId: string; clientId: string } | undefined> {
  const at = refreshRecordKey(token)
  const record = at && (await deps.store.get<RefreshRecord>(at.key))
  return record ? { grantId: record.grantId, clientId: record.clientId } : undefined
}

/**
 * Refreshes a grant's upstream tokens with its upstream refresh token and re-reads who the
 * user is from the answer (the caller holds the grant's lock): the new access token's claims,
 * the new ID token when there is one, userinfo when the policy needs email_verified. The whole
 * sign-in policy runs again (`admitUser`) and the grant's scopes narrow to what the upstream
 * still backs; a user who no longer passes ends the family (`invalid_grant`, audit
 * `policy.refused`), as do an upstream `invalid_grant` and tokens for another subject. When the
 * identity claims or scopes changed, the access tokens issued before carry stale claims: they
 * are revoked and `claimsChanged` says so. An unreachable upstream is `temporarily_unavailable`
 * and changes nothing.
 */
export async function refreshGrantUpstream(
  deps: GrantDeps &
    Required<Pick<Deps, 'upstream' | 'logger'>> &
    Pick<Deps, 'audit' | 'authorizeUser'>,
  grant: Grant,
): Promise<{ grant: Grant; tokens: UpstreamTokens; claimsChanged: boolean }> {
  const current = await upstreamTokens(deps, grant)
  if (!current.refreshToken) return { grant, tokens: current, claimsChanged: false }
  let tokens: UpstreamTokens
  let identity: UpstreamIdentity
  try {
    const refreshed = await deps.upstream.refresh(current.refreshToken)
    // A refresh that answers for somebody else is no refresh of this grant.
    if (refreshed.identity.sub !== grant.sub) {
      throw new UpstreamError(
        'rejected',
        'invalid_grant',
        'the refreshed tokens name another subject',
      )
    }
    tokens = {
      ...refreshed.tokens,
      refreshToken: refreshed.tokens.refreshToken ?? current.refreshToken,
    }
    identity = rereadIdentity(grant, refreshed.identity, Boolean(refreshed.tokens.idToken))
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error
    if (error.kind === 'unavailable') {
      throw upstreamUnavailable(error, error.retryAfterSeconds)
    }
    await revokeGrant(deps, grant.id)
    deps.audit?.('token.revoked', {
      kind: 'grant',
      client_id: grant.clientId,
      sub: grant.sub,
      flow_id: grant.flowId,
      reason: `the identity provider answered ${error.code} to a refresh`,
    })
    throw new OAuthError('invalid_grant', 'the identity provider ended this session; sign in again')
  }
  let admission: Admission
  try {
    admission = await admitUser(deps, {
      identity,
      upstreamAccessToken: tokens.accessToken,
      clientId: grant.clientId,
      requested: grant.scopes,
    })
  } catch (error) {
    if (!(error instanceof UpstreamError)) throw error
    // The upstream refresh token is spent (Kinde rotates it): keep what replaced it, so that
    // an unreachable userinfo delays the verdict to the next refresh rather than ending the
    // family.
    await saveGrant(deps, { ...grant, upstream: await seal(deps.keys, tokens) })
    throw upstreamUnavailable(error, error.retryAfterSeconds)
  }
  if (admission.refusal !== undefined) {
    await revokeGrant(deps, grant.id)
    deps.audit?.('policy.refused', {
      client_id: grant.clientId,
      sub: grant.sub,
      flow_id: grant.flowId,
      org: grant.identity.orgCode ?? grant.identity.orgId,
      actor: 'user',
      reason: admission.refusal,
    })
    throw new OAuthError('invalid_grant', admission.refusal)
  }
  const claims = identityClaims(admission.identity)
  const claimsChanged =
    !sameClaims(claims, grant.identity) || !sameSet(admission.scopes, grant.scopes)
  if (claimsChanged) {
    await Promise.all(grant.accessTokens.map((t) => denyAccessToken(deps, t.jti, t.exp)))
  }
  const updated: Grant = {
    ...grant,
    identity: claims,
    scopes: admission.scopes,
    upstream: await seal(deps.keys, tokens),
    accessTokens: claimsChanged ? [] : grant.accessTokens,
  }
  await saveGrant(deps, updated)
  return { grant: updated, tokens, claimsChanged }
}

/**
 * The identity a refresh answered with. Without a new ID token the profile claims that only
 * an ID token carries (email, organizations for Kinde) are not re-asserted, so the grant's are
 * kept; their verification is then unknown, which the policy settles with userinfo.
 */
function rereadIdentity(
  grant: Grant,
  refreshed: UpstreamIdentity,
  hasIdToken: boolean,
): UpstreamIdentity {
  if (hasIdToken) return refreshed
  return {
    ...refreshed,
    ...(refreshed.email === undefined && grant.identity.email !== undefined
      ? { email: grant.identity.email }
      : {}),
    ...(refreshed.orgCodes === undefined && grant.identity.orgCodes !== undefined
      ? { orgCodes: grant.identity.orgCodes }
      : {}),
  }
}

function sameClaims(a: IdentityClaims, b: IdentityClaims): boolean {
  return (
    a.email === b.email &&
    a.orgCode === b.orgCode &&
    a.orgId === b.orgId &&
    sameSet(a.orgCodes ?? [], b.orgCodes ?? []) &&
    sameSet(a.permissions ?? [], b.permissions ?? [])
  )
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a)
  return set.size === new Set(b).size && b.every((item) => set.has(item))
}

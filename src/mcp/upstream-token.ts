import { LRUCache } from 'lru-cache'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import type { VerifiedAccessToken } from '../tokens/access-token.js'
import { findGrant, refreshGrantUpstream, upstreamTokens, withGrantLock } from '../tokens/grants.js'

/** Hands the MCP endpoint a caller's upstream access token that still works. */
export interface UpstreamTokenSource {
  /**
   * The upstream access token for a verified proxy token: the one sealed inside while it is
   * fresh, otherwise the grant's current one, refreshed at the upstream when nobody else has.
   * Throws `invalid_token` (401) when the grant is gone or the upstream ended the session, and
   * `temporarily_unavailable` (503) when the upstream or the store does not answer.
   * `requestId` correlates the audit event of a session the upstream ended.
   */
  accessToken(verified: VerifiedAccessToken, requestId?: string): Promise<string>
}

export interface UpstreamTokenSourceOptions {
  /** Refresh this long before expiry (at most a quarter of the token's life); default 30 s. */
  skewSeconds?: number
  /** Bound on grants whose refreshed token is remembered; default 10,000. */
  maxGrants?: number
}

interface Held {
  readonly at: string
  readonly exp: number
  /** When the proxy got it: with `exp`, its lifetime, which caps the refresh skew. */
  readonly obtainedAt: number
}

type SourceDeps = Pick<
  Deps,
  | 'config'
  | 'store'
  | 'keys'
  | 'clock'
  | 'logger'
  | 'upstream'
  | 'audit'
  | 'authorizeUser'
  | 'verifier'
>

/**
 * Proxy tokens outlive the upstream token they carry when the proxy can refresh it (hosted
 * MCP clients often never refresh), so the endpoint renews it on the user's behalf: under the
 * grant's lock shared through the store (the same one `/token` takes), re-reading the grant
 * first, so of many concurrent requests on any number of instances one refreshes and the rest
 * use its result. Refreshed tokens are remembered per grant (bounded LRU), so later requests
 * carrying the same old proxy token neither re-read the grant nor refresh again.
 */
export function createUpstreamTokenSource(
  deps: SourceDeps,
  options: UpstreamTokenSourceOptions = {},
): UpstreamTokenSource {
  const skewSeconds = options.skewSeconds ?? 30
  const held = new LRUCache<string, Held>({ max: options.maxGrants ?? 10_000 })
  // One refresh per grant at a time on this instance: the others wait for it, not the lock.
  const refreshing = new Map<string, Promise<Held>>()
  const { upstream } = deps

  // A token is renewed `skewSeconds` early, but never before three quarters of its life: an
  // upstream issuing 60-second tokens must not be asked for a new one on every request.
  const fresh = (token: Held, now: number) =>
    token.exp - now > Math.min(skewSeconds, (token.exp - token.obtainedAt) / 4)

  const refresh = async (
    verified: VerifiedAccessToken,
    grantId: string,
    stale: Held,
    requestId: string | undefined,
  ) => {
    if (!upstream) throw new Error('unreachable: refresh without an upstream')
    const refreshed = await withGrantLock(deps, grantId, async (): Promise<Held> => {
      const grant = await findGrant(deps, grantId)
      if (!grant || grant.sub !== verified.sub || grant.clientId !== verified.clientId) {
        throw invalidToken('the authorization behind the access token has been revoked')
      }
      const current = await upstreamTokens(deps, grant)
      const now = deps.clock.now()
      // Someone refreshed since this token was judged stale: theirs is the one to use.
      if (current.expiresAt > stale.exp && current.expiresAt > now) {
        return { at: current.accessToken, exp: current.expiresAt, obtainedAt: now }
      }
      const { audit } = deps
      const { tokens, claimsChanged } = await refreshGrantUpstream(
        {
          ...deps,
          upstream,
          audit: audit && ((event, fields) => audit(event, fields, requestId)),
        },
        grant,
      )
      deps.logger.debug(
        { event: 'mcp.upstream_refreshed', client_id: grant.clientId, sub: grant.sub },
        'upstream token refreshed for an MCP request',
      )
      // The upstream now says something else than this token's claims (scopes, permissions,
      // organization): the refresh revoked it, and the client's refresh gets the new ones.
      if (claimsChanged) {
        throw invalidToken('the account changed at the identity provider; refresh the token')
      }
      return { at: tokens.accessToken, exp: tokens.expiresAt, obtainedAt: deps.clock.now() }
    }).catch((error: unknown) => {
      if (error instanceof OAuthError && error.code === 'invalid_grant') {
        throw invalidToken(
          error.description ?? 'the identity provider ended this session; sign in again',
          error,
        )
      }
      throw error
    })
    held.set(grantId, refreshed)
    return refreshed
  }

  return {
    async accessToken(verified, requestId) {
      const { gid } = verified.upstream
      const sealed: Held = {
        at: verified.upstream.at,
        exp: verified.upstream.exp,
        obtainedAt: verified.issuedAt,
      }
      // Agents' tokens (no grant) never outlive their upstream token: nothing to renew.
      if (!gid || !upstream) return sealed.at
      const now = deps.clock.now()
      if (fresh(sealed, now)) return sealed.at
      const known = held.get(gid)
      const best = known && known.exp > sealed.exp ? known : sealed
      if (fresh(best, now)) return best.at
      let pending = refreshing.get(gid)
      if (!pending) {
        const started = refresh(verified, gid, best, requestId).finally(() => {
          if (refreshing.get(gid) === started) refreshing.delete(gid)
        })
        refreshing.set(gid, started)
        pending = started
      }
      return (await pending).at
    },
  }
}

function invalidToken(description: string, internal?: unknown): OAuthError {
  return new OAuthError('invalid_token', description, { status: 401, internal })
}

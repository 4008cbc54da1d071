import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Store } from '../store/store.js'
import { type VerifiedAccessToken, verifyAccessToken } from './access-token.js'
import { isAccessTokenDenied } from './grants.js'
import type { Keys } from './keys.js'

/** Verifies access tokens for the resource server, remembering recent answers. */
export interface AccessTokenVerifier {
  /**
   * Everything `verifyAccessToken` pins, then the deny-list (RFC 7009): a
   * revoked token is `invalid_token`. Store failures propagate (`StoreUnavailableError`), except
   * for a token verified within the cache TTL, which is answered from memory.
   */
  verify(token: string): Promise<VerifiedAccessToken>
  /**
   * Forgets every cached verification of the token with this `jti`, so a revocation at this
   * instance takes effect on its next request. Other instances notice within the TTL.
   */
  evict(jti: string): void
}

export interface AccessTokenVerifierOptions {
  /** How long a verification is trusted without re-checking the deny-list; default 5 s. */
  ttlSeconds?: number
  /** Bound on cached tokens; the least recently used goes first. Default 10,000. */
  maxEntries?: number
}

type VerifierDeps = { config: Config; keys: Keys; clock: Clock; store: Store }

interface Entry {
  readonly verified: VerifiedAccessToken
  /** Earlier of the token's `exp` and the TTL: the answer is not reused at or after this. */
  readonly until: number
}

/**
 * The resource server's verifier: an ES256 signature check, a JWE decryption and a store read
 * per token cost far more than the request they guard, and MCP clients send the same token
 * on every request, so verified tokens are kept in a bounded LRU until the earlier of their
 * `exp` and a short TTL. The TTL bounds how long a revocation at another instance goes
 * unnoticed here.
 */
export function createAccessTokenVerifier(
  deps: VerifierDeps,
  options: AccessTokenVerifierOptions = {},
): AccessTokenVerifier {
  const ttlSeconds = options.ttlSeconds ?? 5
  const tokensByJti = new Map<string, string>()
  // Keyed by the signature (the last segment) rather than the whole token: hashing a ~1 KB key
  // on every request cost more than the rest of a cache hit. A hit still requires the whole
  // token to be equal, so two tokens sharing a signature cannot stand in for each other.
  // Expiry is checked against the injected clock on each hit rather than by the cache's own
  // TTL, which runs on the process's timers.
  const entries = new LRUCache<string, Entry>({
    max: options.maxEntries ?? 10_000,
    dispose: ({ verified }) => {
      if (tokensByJti.get(verified.jti) === verified.token) tokensByJti.delete(verified.jti)
    },
  })
  // Concurrent first requests with one token share one verification.
  const pending = new Map<string, Promise<VerifiedAccessToken>>()
  // Bumped by every eviction: a verification that was in flight across a revocation must not
  // put the token back into the cache.
  let generation = 0

  const forget = (token: string) => {
    const key = cacheKey(token)
    if (entries.peek(key)?.verified.token === token) entries.delete(key)
  }

  const remember = (verified: VerifiedAccessToken) => {
    const until = Math.min(verified.expiresAt, deps.clock.now() + ttlSeconds)
    entries.set(cacheKey(verified.token), { verified, until })
    tokensByJti.set(verified.jti, verified.token)
  }

  const verifyUncached = async (token: string): Promise<VerifiedAccessToken> => {
    const started = generation
    const verified = await verifyAccessToken(deps, token)
    if (await isAccessTokenDenied(deps, verified.jti)) {
      throw new OAuthError('invalid_token', 'the access token has been revoked', { status: 401 })
    }
    if (generation === started) remember(verified)
    return verified
  }

  return {
    async verify(token) {
      const entry = entries.get(cacheKey(token))
      if (entry?.verified.token === token) {
        if (deps.clock.now() < entry.until) return entry.verified
        forget(token)
      }
      const shared = pending.get(token)
      if (shared) return shared
      const inFlight: Promise<VerifiedAccessToken> = verifyUncached(token).finally(() => {
        if (pending.get(token) === inFlight) pending.delete(token)
      })
      pending.set(token, inFlight)
      return inFlight
    },

    evict(jti) {
      generation++
      // A verification under way may have read the deny-list before the revocation landed:
      // later callers must not join it.
      pending.clear()
      const token = tokensByJti.get(jti)
      if (token !== undefined) forget(token)
    },
  }
}

/** A JWS's signature: unique to its token for all that matters, and a short key to hash. */
function cacheKey(token: string): string {
  return token.slice(token.lastIndexOf('.') + 1)
}

import type { Context, MiddlewareHandler } from 'hono'
import type { Clock } from './clock.js'
import { OAuthError } from './errors.js'
import { KEY_TTL_SECONDS, storeKey } from './store/keys.js'
import type { Store } from './store/store.js'

type RateDeps = { store: Store; clock: Clock }

/**
 * Counts one request against a fixed one-minute window for `key`, in the shared store so every
 * instance enforces one limit; 0 disables. Over the limit: 429 `temporarily_unavailable`
 * (RFC 6749 §4.1.2.1's "temporary overloading") with `Retry-After` until the window ends.
 */
export async function consumeRate(
  deps: RateDeps,
  name: string,
  key: string,
  perMinute: number,
): Promise<void> {
  if (perMinute <= 0) return
  const now = deps.clock.now()
  const window = Math.floor(now / 60)
  const count = await deps.store.increment(storeKey.rate(name, key, window), KEY_TTL_SECONDS.rate)
  if (count > perMinute) {
    const retryAfter = Math.max(1, Math.ceil((window + 1) * 60 - now))
    throw new OAuthError(
      'temporarily_unavailable',
      `too many requests; retry after ${retryAfter} seconds`,
      {
        status: 429,
        headers: { 'retry-after': String(retryAfter) },
      },
    )
  }
}

/** `consumeRate` as middleware, counting by whatever `key` derives from the request. */
export function rateLimit(
  deps: RateDeps,
  options: { name: string; perMinute: number; key: (c: Context) => string },
): MiddlewareHandler {
  return async function rateLimitMiddleware(c, next) {
    await consumeRate(deps, options.name, options.key(c), options.perMinute)
    return next()
  }
}

/** Counts failed requests per key and refuses a key that failed too often (`createFailureLimit`). */
export interface FailureLimit {
  /** Throws 429 when this instance knows `key` failed more than the limit in this window. */
  check(key: string): void
  /** Counts one failure of `key` in the shared store. */
  count(key: string): Promise<void>
}

// Bounds the instance's memory of refused keys against an attacker with many addresses.
const MAX_REFUSED_KEYS = 10_000

/**
 * A limit on failed requests per `key` (a client address) that costs nothing on the success
 * path: failures are counted in the shared store, so the fleet agrees on one count, and a key
 * found over the limit is then refused from this instance's memory until its window ends. With
 * N instances a key gets at most `perMinute + N` failures through a window. 0 disables.
 */
export function createFailureLimit(
  deps: RateDeps,
  options: { name: string; perMinute: number },
): FailureLimit {
  const refused = new Map<string, number>()
  const windowOf = (now: number) => Math.floor(now / 60)
  return {
    check(key) {
      if (options.perMinute <= 0) return
      const until = refused.get(key)
      if (until === undefined) return
      const now = deps.clock.now()
      if (now >= until) {
        refused.delete(key)
        return
      }
      const retryAfter = Math.max(1, Math.ceil(until - now))
      throw new OAuthError(
        'temporarily_unavailable',
        `too many failed requests; retry after ${retryAfter} seconds`,
        { status: 429, headers: { 'retry-after': String(retryAfter) } },
      )
    },
    async count(key) {
      if (options.perMinute <= 0) return
      const now = deps.clock.now()
      const window = windowOf(now)
      const failures = await deps.store.increment(
        storeKey.rate(options.name, key, window),
        KEY_TTL_SECONDS.rate,
      )
      if (failures < options.perMinute) return
      if (refused.size >= MAX_REFUSED_KEYS) {
        for (const [k, until] of refused) if (until <= now) refused.delete(k)
        // Still full: forget the oldest, which only lets that key fail a little longer.
        if (refused.size >= MAX_REFUSED_KEYS) refused.delete(refused.keys().next().value as string)
      }
      refused.set(key, (window + 1) * 60)
    },
  }
}

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

import type { Context, MiddlewareHandler } from 'hono'
import type { Clock } from './clock.js'
import { OAuthError } from './errors.js'
import type { Store } from './store/store.js'

export interface RateLimitOptions {
  /** Names the counter, e.g. `register`. */
  name: string
  /** Requests allowed per minute and key; 0 disables the limit. */
  perMinute: number
  /** What is counted: the client IP, a client id, … */
  key: (c: Context) => string | Promise<string>
}

/**
 * A fixed one-minute window per key, counted in the shared store so that every instance
 * enforces one limit. Over the limit: 429 `temporarily_unavailable` (RFC 6749 §4.1.2.1's
 * "temporary overloading") with `Retry-After` until the window ends.
 */
export function rateLimit(
  deps: { store: Store; clock: Clock },
  options: RateLimitOptions,
): MiddlewareHandler {
  return async function rateLimitMiddleware(c, next) {
    if (options.perMinute <= 0) return next()
    const now = deps.clock.now()
    const window = Math.floor(now / 60)
    const key = `rate:${options.name}:${await options.key(c)}:${window}`
    const count = await deps.store.increment(key, 60)
    if (count > options.perMinute) {
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
    return next()
  }
}

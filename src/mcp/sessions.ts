import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'

/** Who may use a session: the user and the client whose token initialized it. */
export interface SessionOwner {
  readonly sub: string
  readonly clientId: string
}

/** Anything a registry can hold: an owner, and a way to end it. */
export interface SessionLike {
  readonly owner: SessionOwner
  close(): Promise<void>
}

/** The live MCP sessions of one endpoint. */
export interface SessionRegistry<S extends SessionLike> {
  /** Registers a session, closing the least recently used ones beyond the bound. */
  add(id: string, session: S): void
  /**
   * The session `id` when `owner` owns it, marking it used. A session of another user or
   * client is answered exactly like an unknown one (`undefined`), so a leaked or guessed id
   * tells its holder nothing and serves nobody else.
   */
  find(id: string, owner: SessionOwner): S | undefined
  /** Forgets a session (its transport closed); does not close it again. */
  remove(id: string): void
  /** Marks a session used without a request (a client holding its event stream open). */
  touch(id: string): void
  /** Closes every session (shutdown). */
  closeAll(): void
  readonly size: number
}

export interface SessionRegistryOptions {
  /** At most this many sessions; the least recently used is closed first. Default 10,000. */
  maxSessions?: number
  /**
   * At most this many sessions per user (`sub`); a user opening more closes their own least
   * recently used one, so nobody can push other users' sessions out of the bound. Default 100.
   */
  maxSessionsPerUser?: number
  /** A session unused for this long is closed. Default 30 minutes. */
  idleSeconds?: number
}

// Stale sessions are always the least recently used ones, but lru-cache's purgeStale() looks at
// every entry: run it at most once a second of the clock rather than on every request.
const SWEEP_EVERY_SECONDS = 1

/**
 * Bounded, idle-expiring session storage on lru-cache, read on the injected clock (no timers:
 * `ttlResolution: 0`, no `ttlAutopurge`). A session leaves by eviction (the bound) or idle expiry,
 * both of which close it, or by `remove` (its transport closed), which does not. The per-user
 * bound is counted here: lru-cache has one bound for the whole cache.
 */
export function createSessionRegistry<S extends SessionLike>(
  clock: Clock,
  options: SessionRegistryOptions = {},
): SessionRegistry<S> {
  const maxPerUser = options.maxSessionsPerUser ?? 100
  const perUser = new Map<string, number>()
  // Closing runs the transport's cleanups; nothing waits on it and nothing can be done if it fails.
  const close = (session: S) => void session.close().catch(() => {})

  const sessions = new LRUCache<string, S>({
    max: options.maxSessions ?? 10_000,
    ttl: (options.idleSeconds ?? 30 * 60) * 1000,
    updateAgeOnGet: true,
    ttlResolution: 0,
    perf: { now: () => clock.now() * 1000 },
    dispose(session, _id, reason) {
      const { sub } = session.owner
      const count = (perUser.get(sub) ?? 1) - 1
      if (count > 0) perUser.set(sub, count)
      else perUser.delete(sub)
      if (reason === 'evict' || reason === 'expire') close(session)
    },
  })

  let sweptAt = Number.NEGATIVE_INFINITY
  const sweep = () => {
    const now = clock.now()
    if (now - sweptAt < SWEEP_EVERY_SECONDS) return
    sweptAt = now
    sessions.purgeStale()
  }

  return {
    add(id, session) {
      sweep()
      const { sub } = session.owner
      if ((perUser.get(sub) ?? 0) >= maxPerUser) {
        // Only when a user is at their bound, so a full look is affordable: idle ones go first,
        // then, if still at the bound, the user's least recently used session.
        sessions.purgeStale()
        if ((perUser.get(sub) ?? 0) >= maxPerUser) {
          for (const oldest of sessions.rkeys()) {
            const entry = sessions.peek(oldest)
            if (entry?.owner.sub !== sub) continue
            sessions.delete(oldest)
            close(entry)
            break
          }
        }
      }
      perUser.set(sub, (perUser.get(sub) ?? 0) + 1)
      sessions.set(id, session)
    },

    find(id, owner) {
      sweep()
      // Looked at before it is marked used: another owner's attempt must not keep it alive.
      const session = sessions.peek(id, { allowStale: true })
      if (!session) return undefined
      const { sub, clientId } = session.owner
      if (sub !== owner.sub || clientId !== owner.clientId) return undefined
      return sessions.get(id)
    },

    remove(id) {
      sessions.delete(id)
    },

    touch(id) {
      sessions.get(id)
    },

    closeAll() {
      sessions.purgeStale()
      const open = [...sessions.values()]
      sessions.clear()
      for (const session of open) close(session)
    },

    get size() {
      return sessions.size
    },
  }
}

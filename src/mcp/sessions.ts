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

/**
 * Bounded, idle-expiring session storage. The `Map`'s insertion order is kept as recency order
 * (a used session is re-inserted at the end), so both the bound and the idle sweep only ever
 * look at the front: no timers, and the sweep costs O(expired) on each call.
 */
export function createSessionRegistry<S extends SessionLike>(
  clock: Clock,
  options: SessionRegistryOptions = {},
): SessionRegistry<S> {
  const maxSessions = options.maxSessions ?? 10_000
  const maxPerUser = options.maxSessionsPerUser ?? 100
  const idleSeconds = options.idleSeconds ?? 30 * 60
  const sessions = new Map<string, { session: S; usedAt: number }>()
  const perUser = new Map<string, number>()

  const forget = (id: string, session: S) => {
    sessions.delete(id)
    const { sub } = session.owner
    const count = (perUser.get(sub) ?? 1) - 1
    if (count > 0) perUser.set(sub, count)
    else perUser.delete(sub)
  }

  const end = (id: string) => {
    const entry = sessions.get(id)
    if (!entry) return
    forget(id, entry.session)
    // Closing runs the transport's cleanups; nothing waits on it and nothing can be done if it fails.
    entry.session.close().catch(() => {})
  }

  // Re-inserted, so the map's order stays the order of last use.
  const markUsed = (id: string, session: S, now: number) => {
    sessions.delete(id)
    sessions.set(id, { session, usedAt: now })
  }

  const sweep = (now: number) => {
    for (const [id, entry] of sessions) {
      if (now - entry.usedAt < idleSeconds) break
      end(id)
    }
  }

  return {
    add(id, session) {
      const now = clock.now()
      sweep(now)
      const { sub } = session.owner
      if ((perUser.get(sub) ?? 0) >= maxPerUser) {
        // Only when a user is at their bound: the front of the map is the least recently used.
        for (const [oldest, entry] of sessions) {
          if (entry.session.owner.sub !== sub) continue
          end(oldest)
          break
        }
      }
      sessions.set(id, { session, usedAt: now })
      perUser.set(sub, (perUser.get(sub) ?? 0) + 1)
      while (sessions.size > maxSessions) {
        const oldest = sessions.keys().next().value
        if (oldest === undefined) break
        end(oldest)
      }
    },

    find(id, owner) {
      const now = clock.now()
      sweep(now)
      const entry = sessions.get(id)
      if (!entry) return undefined
      const { sub, clientId } = entry.session.owner
      if (sub !== owner.sub || clientId !== owner.clientId) return undefined
      markUsed(id, entry.session, now)
      return entry.session
    },

    remove(id) {
      const entry = sessions.get(id)
      if (entry) forget(id, entry.session)
    },

    touch(id) {
      const entry = sessions.get(id)
      if (entry) markUsed(id, entry.session, clock.now())
    },

    closeAll() {
      for (const id of [...sessions.keys()]) end(id)
    },

    get size() {
      return sessions.size
    },
  }
}

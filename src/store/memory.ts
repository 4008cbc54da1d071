import type { Clock } from '../clock.js'
import type { Store } from './store.js'

interface Entry {
  json: string
  expiresAt: number
}

const SWEEP_EVERY_WRITES = 1024

/**
 * The embedded store for a single instance (no `REDIS_URL`). Values are kept serialised so a
 * caller never shares a mutable object with the store, as with Redis. Expired entries are
 * dropped on access and swept every so many writes, so memory stays bounded by live data.
 */
export function createMemoryStore(clock: Clock): Store {
  const entries = new Map<string, Entry>()
  let writes = 0

  const live = (key: string): Entry | undefined => {
    const entry = entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt <= clock.now()) {
      entries.delete(key)
      return undefined
    }
    return entry
  }

  const write = (key: string, json: string, ttlSeconds: number) => {
    assertTtl(ttlSeconds)
    entries.set(key, { json, expiresAt: clock.now() + ttlSeconds })
    if (++writes % SWEEP_EVERY_WRITES === 0) {
      const now = clock.now()
      for (const [k, entry] of entries) if (entry.expiresAt <= now) entries.delete(k)
    }
  }

  return {
    local: true,
    async get<T>(key: string) {
      const entry = live(key)
      return entry ? (JSON.parse(entry.json) as T) : undefined
    },
    async put(key, value, ttlSeconds) {
      write(key, JSON.stringify(value), ttlSeconds)
    },
    async add(key, value, ttlSeconds) {
      if (live(key)) return false
      write(key, JSON.stringify(value), ttlSeconds)
      return true
    },
    async take<T>(key: string) {
      const entry = live(key)
      if (!entry) return undefined
      entries.delete(key)
      return JSON.parse(entry.json) as T
    },
    async delete(key) {
      entries.delete(key)
    },
    async deleteIf(key, expected) {
      const entry = live(key)
      if (!entry || entry.json !== JSON.stringify(expected)) return false
      entries.delete(key)
      return true
    },
    async takeOnce<T>(key: string, markerKey: string, marker: unknown, ttlSeconds: number) {
      assertTtl(ttlSeconds)
      const entry = live(key)
      if (!entry || live(markerKey)) return undefined
      write(markerKey, JSON.stringify(marker), ttlSeconds)
      entries.delete(key)
      return JSON.parse(entry.json) as T
    },
    async putMany(batch) {
      // All checked and serialised before anything is written: none or all, as with Redis.
      const prepared = batch.map(({ key, value, ttlSeconds }) => {
        assertTtl(ttlSeconds)
        return { key, json: JSON.stringify(value), ttlSeconds }
      })
      for (const { key, json, ttlSeconds } of prepared) write(key, json, ttlSeconds)
    },
    async indexAdd(key, member, ttlSeconds) {
      assertTtl(ttlSeconds)
      const now = clock.now()
      const entry = live(key)
      const members: Record<string, number> = entry ? JSON.parse(entry.json) : {}
      members[member] = now + ttlSeconds
      for (const [name, until] of Object.entries(members)) if (until <= now) delete members[name]
      const last = Math.max(...Object.values(members))
      if (last > now) write(key, JSON.stringify(members), last - now)
      else entries.delete(key)
    },
    async indexMembers(key, limit) {
      const entry = live(key)
      if (!entry) return []
      const now = clock.now()
      const members = JSON.parse(entry.json) as Record<string, number>
      return Object.entries(members)
        .filter(([, until]) => until > now)
        .sort(([, a], [, b]) => a - b)
        .slice(0, limit)
        .map(([name]) => name)
    },
    async indexRemove(key, member) {
      const entry = live(key)
      if (!entry) return
      const members = JSON.parse(entry.json) as Record<string, number>
      delete members[member]
      if (Object.keys(members).length) entry.json = JSON.stringify(members)
      else entries.delete(key)
    },
    async increment(key, ttlSeconds) {
      const entry = live(key)
      const count = entry ? (JSON.parse(entry.json) as number) + 1 : 1
      if (entry) entry.json = String(count)
      else write(key, '1', ttlSeconds)
      return count
    },
    async ping() {},
    async close() {
      entries.clear()
    },
  }
}

/** Everything expires: a missing or non-positive TTL is a programming error. */
export function assertTtl(ttlSeconds: number): void {
  if (!(ttlSeconds > 0) || !Number.isFinite(ttlSeconds)) {
    throw new RangeError(`store TTL must be a positive number of seconds, got ${ttlSeconds}`)
  }
}

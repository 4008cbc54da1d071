import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { createRedisStore } from '../../src/store/redis.js'
import type { Store } from '../../src/store/store.js'

/** The real Redis every test machine runs (`REDIS_URL`, default local). */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A key prefix no other test file or run shares. */
export function uniquePrefix(name: string): string {
  return `test:${name}:${randomBytes(6).toString('hex')}:`
}

/** A Redis store under a fresh prefix; `close` also deletes every key it wrote. */
export async function createTestRedisStore(name: string): Promise<Store & { prefix: string }> {
  const prefix = uniquePrefix(name)
  const store = await createRedisStore({ url: REDIS_URL, keyPrefix: prefix })
  return {
    ...store,
    prefix,
    async close() {
      await store.close()
      await deleteKeys(prefix)
    },
  }
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      if (keys.length) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

// Shortens a key's remaining life by ARGV[1] ms, deleting it when none is left; keys without
// a TTL are left alone. The members of a sorted-set index are scored by when they expire
// (seconds, Redis's clock): their scores move closer by as much.
const SHORTEN_TTL = `
local left = redis.call('PTTL', KEYS[1])
if left < 0 then return 0 end
if left <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return 1 end
redis.call('PEXPIRE', KEYS[1], left - tonumber(ARGV[1]))
if redis.call('TYPE', KEYS[1]).ok == 'zset' then
  local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    redis.call('ZADD', KEYS[1], tonumber(members[i + 1]) - tonumber(ARGV[1]) / 1000, members[i])
  end
end
return 1`

/**
 * Lets `seconds` pass for the keys under `prefix` as Redis sees time: every TTL is shortened
 * by that much, and keys whose TTL runs out are gone, as if the time had passed. Tests then
 * use TTLs of seconds and never wait for (or race) Redis's own clock.
 */
export async function elapseKeys(prefix: string, seconds: number, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      for (const key of keys) await redis.eval(SHORTEN_TTL, 1, key, Math.round(seconds * 1000))
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

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

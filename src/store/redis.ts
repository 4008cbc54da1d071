import { Redis, type RedisOptions } from 'ioredis'
import { StoreUnavailableError } from '../errors.js'
import { assertTtl } from './memory.js'
import type { Store } from './store.js'

/** How to reach Redis: a `redis://` or `rediss://` (TLS) URL and a key prefix for isolation. */
export interface RedisStoreOptions {
  url: string
  keyPrefix: string
  /** A command not answered within this time fails, so requests get 503 instead of hanging. */
  commandTimeoutMs?: number
}

/** `deleteIf`: compare-and-delete in one step. */
const DELETE_IF = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** `takeOnce`: the value, gone, and the marker, set, in one step; nothing when marked already. */
const TAKE_ONCE = `
local value = redis.call('GET', KEYS[1])
if not value then return false end
if not redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then return false end
redis.call('DEL', KEYS[1])
return value`

/**
 * `putMany`: every SET in one step, ARGV holding each key's JSON and PX in turn. A script
 * rather than MULTI/EXEC: as atomic, and one command, where ioredis builds a pipeline object
 * and queues four replies for a MULTI of two SETs (a tenth of a code exchange's CPU).
 */
const PUT_MANY = `
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i * 2 - 1], 'PX', ARGV[i * 2])
end
return #KEYS`

/** `increment`: SET NX starts the window with its TTL; INCR keeps that TTL. */
const INCREMENT = `
redis.call('SET', KEYS[1], '0', 'PX', ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])`

/**
 * `indexAdd`: the member (re)scored, expired members dropped, and the key set to expire with
 * its last member, in one step on one key. Time is the server's own (`TIME`), as for every
 * other TTL in Redis.
 */
const INDEX_ADD = `
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]) / 1000, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2]))) end
return 1`

/** `indexMembers`: the members not yet expired, by the server's clock. */
const INDEX_MEMBERS = `
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, ARGV[1])`

/** The scripts defined on the client (`defineCommand`: EVALSHA, with keys prefixed). */
interface Scripts {
  deleteIf(key: string, expected: string): Promise<number>
  takeOnce(key: string, markerKey: string, marker: string, px: number): Promise<string | null>
  /** The number of keys first, then the keys, then a JSON and a PX for each key. */
  putMany(numberOfKeys: number, ...keysThenValues: (string | number)[]): Promise<number>
  increment(key: string, px: number): Promise<number>
  indexAdd(key: string, px: number, member: string): Promise<number>
  indexMembers(key: string, limit: number): Promise<string[]>
}

/**
 * The shared store for several instances. Commands fail fast while Redis is away (no offline
 * queue) and the client keeps reconnecting in the background, so the proxy recovers without a
 * restart when Redis returns.
 */
export async function createRedisStore(options: RedisStoreOptions): Promise<Store> {
  const redisOptions: RedisOptions = {
    keyPrefix: options.keyPrefix,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 2000,
    connectTimeout: options.commandTimeoutMs ?? 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  }
  const redis = new Redis(options.url, redisOptions) as Redis & Scripts
  redis.defineCommand('deleteIf', { numberOfKeys: 1, lua: DELETE_IF })
  redis.defineCommand('takeOnce', { numberOfKeys: 2, lua: TAKE_ONCE })
  redis.defineCommand('putMany', { lua: PUT_MANY })
  redis.defineCommand('increment', { numberOfKeys: 1, lua: INCREMENT })
  redis.defineCommand('indexAdd', { numberOfKeys: 1, lua: INDEX_ADD })
  redis.defineCommand('indexMembers', { numberOfKeys: 1, lua: INDEX_MEMBERS })
  // Connection errors surface through the failing commands; an unhandled 'error' event would
  // only print ioredis' own warning.
  redis.on('error', () => {})
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new StoreUnavailableError(error)
  }

  const run = async <T>(command: () => Promise<T>): Promise<T> => {
    try {
      return await command()
    } catch (error) {
      throw new StoreUnavailableError(error)
    }
  }
  const decode = <T>(json: string | null): T | undefined =>
    json === null ? undefined : (JSON.parse(json) as T)
  const ms = (ttlSeconds: number) => {
    assertTtl(ttlSeconds)
    return Math.max(1, Math.ceil(ttlSeconds * 1000))
  }

  return {
    get: (key) => run(async () => decode(await redis.get(key))),
    put: async (key, value, ttlSeconds) => {
      const px = ms(ttlSeconds)
      await run(() => redis.set(key, JSON.stringify(value), 'PX', px))
    },
    add: async (key, value, ttlSeconds) => {
      const px = ms(ttlSeconds)
      return run(async () => (await redis.set(key, JSON.stringify(value), 'PX', px, 'NX')) === 'OK')
    },
    take: (key) => run(async () => decode(await redis.getdel(key))),
    delete: (key) =>
      run(async () => {
        await redis.del(key)
      }),
    deleteIf: (key, expected) =>
      run(async () => (await redis.deleteIf(key, JSON.stringify(expected))) === 1),
    takeOnce: async (key, markerKey, marker, ttlSeconds) => {
      const px = ms(ttlSeconds)
      return run(async () =>
        decode(await redis.takeOnce(key, markerKey, JSON.stringify(marker), px)),
      )
    },
    putMany: async (entries) => {
      const writes = entries.map(({ key, value, ttlSeconds }) => ({
        key,
        json: JSON.stringify(value),
        px: ms(ttlSeconds),
      }))
      const [only] = writes
      if (!only) return
      await run(async () => {
        if (writes.length === 1) {
          await redis.set(only.key, only.json, 'PX', only.px)
          return
        }
        const keys = writes.map(({ key }) => key)
        const values = writes.flatMap(({ json, px }) => [json, px])
        await redis.putMany(writes.length, ...keys, ...values)
      })
    },
    increment: async (key, ttlSeconds) => {
      const px = ms(ttlSeconds)
      return run(async () => Number(await redis.increment(key, px)))
    },
    indexAdd: async (key, member, ttlSeconds) => {
      const px = ms(ttlSeconds)
      await run(() => redis.indexAdd(key, px, member))
    },
    indexMembers: (key, limit) => run(() => redis.indexMembers(key, limit)),
    indexRemove: (key, member) =>
      run(async () => {
        await redis.zrem(key, member)
      }),
    ping: () =>
      run(async () => {
        await redis.ping()
      }),
    close: async () => {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import { StoreUnavailableError } from '../errors.js'
import { assertTtl } from './memory.js'
import type { Store } from './store.js'

/** A Redis node or a sentinel. */
export interface RedisNode {
  readonly host: string
  readonly port: number
}

/**
 * How to reach Redis — one of: a single node (`url`, `redis://` or `rediss://` for TLS), a
 * master found through sentinels (`sentinels` with `sentinelMaster`), or a Cluster (seed
 * `clusterNodes`) — and a key prefix for isolation.
 */
export interface RedisStoreOptions {
  readonly url?: string | undefined
  readonly sentinels?: readonly RedisNode[] | undefined
  readonly sentinelMaster?: string | undefined
  readonly clusterNodes?: readonly RedisNode[] | undefined
  /** ACL user and password of the data nodes (sentinels are asked without them). */
  readonly username?: string | undefined
  readonly password?: string | undefined
  /** TLS to every node (and to the sentinels); a `rediss://` URL implies it. */
  readonly tls?: boolean | undefined
  readonly keyPrefix: string
  /** A command not answered within this time fails, so requests get 503 instead of hanging. */
  readonly commandTimeoutMs?: number | undefined
  /**
   * Replicas that must hold `putMany`'s writes (new grants, rotated refresh tokens) before it
   * resolves (`WAIT`), so a failover right after cannot lose them; 0 waits for none. A replica
   * that does not confirm within half the command timeout is not waited for further.
   */
  readonly waitReplicas?: number | undefined
}

/** Which Redis deployment a store speaks to. */
export type RedisTopology = 'single' | 'sentinel' | 'cluster'

/** The topology `options` describe. */
export function redisTopology(options: RedisStoreOptions): RedisTopology {
  return options.clusterNodes ? 'cluster' : options.sentinels ? 'sentinel' : 'single'
}

/** The store's name in logs and `/readyz`: `memory`, `redis`, `redis-sentinel`, `redis-cluster`. */
export function storeName(options: RedisStoreOptions | undefined): string {
  if (!options) return 'memory'
  const topology = redisTopology(options)
  return topology === 'single' ? 'redis' : `redis-${topology}`
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

type Client = (Redis | Cluster) & Scripts

/**
 * ioredis' own client for the topology: Sentinel and Cluster failover, slot moves and
 * reconnection are all ioredis'; nothing here re-implements them.
 */
function createClient(options: RedisStoreOptions): Client {
  const timeoutMs = options.commandTimeoutMs ?? 2000
  const tls = options.tls ? {} : undefined
  const credentials = {
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
  }
  const nodeOptions = {
    ...credentials,
    ...(tls ? { tls } : {}),
    maxRetriesPerRequest: 1,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
  }
  if (options.clusterNodes) {
    const clusterOptions: ClusterOptions = {
      keyPrefix: options.keyPrefix,
      lazyConnect: true,
      enableOfflineQueue: false,
      redisOptions: nodeOptions,
      slotsRefreshTimeout: timeoutMs,
      // Without traffic to a failed master's slots nothing else would learn of its successor
      // (readiness only pings).
      slotsRefreshInterval: 2000,
    }
    return new Cluster(
      options.clusterNodes.map(({ host, port }) => ({ host, port })),
      clusterOptions,
    ) as Client
  }
  const redisOptions: RedisOptions = {
    ...nodeOptions,
    keyPrefix: options.keyPrefix,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  }
  if (options.sentinels) {
    return new Redis({
      ...redisOptions,
      sentinels: options.sentinels.map(({ host, port }) => ({ host, port })),
      name: options.sentinelMaster,
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
      // Sentinels announce a switch of master at once, rather than at the next failed command.
      failoverDetector: true,
    }) as Client
  }
  return new Redis(options.url ?? 'redis://127.0.0.1:6379', redisOptions) as Client
}

/**
 * The shared store for several instances, on one Redis node, a Sentinel-watched master or a
 * Cluster. Commands fail fast while Redis (or a failing-over part of it) is away: no offline
 * queue, and no command outlives `commandTimeoutMs`. The client keeps reconnecting and
 * following failovers in the background, so the proxy recovers without a restart.
 */
export async function createRedisStore(options: RedisStoreOptions): Promise<Store> {
  const timeoutMs = options.commandTimeoutMs ?? 2000
  const waitReplicas = options.waitReplicas ?? 0
  const redis = createClient(options)
  redis.defineCommand('deleteIf', { numberOfKeys: 1, lua: DELETE_IF })
  redis.defineCommand('takeOnce', { numberOfKeys: 2, lua: TAKE_ONCE })
  redis.defineCommand('putMany', { lua: PUT_MANY })
  redis.defineCommand('increment', { numberOfKeys: 1, lua: INCREMENT })
  redis.defineCommand('indexAdd', { numberOfKeys: 1, lua: INDEX_ADD })
  redis.defineCommand('indexMembers', { numberOfKeys: 1, lua: INDEX_MEMBERS })
  // Connection errors surface through the failing commands; an unhandled 'error' event would
  // only print ioredis' own warning.
  redis.on('error', () => {})
  if (redis instanceof Cluster) redis.on('node error', () => {})
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new StoreUnavailableError(error)
  }

  // A Cluster client retries a command across a failover (redirections, slot refreshes) on
  // its own clock; this bound keeps every answer within the configured timeout.
  const run = <T>(command: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new StoreUnavailableError(new Error(`no answer within ${timeoutMs} ms`))),
        timeoutMs,
      )
      command().then(
        (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        (error: unknown) => {
          clearTimeout(timer)
          reject(new StoreUnavailableError(error))
        },
      )
    })

  /** Runs writes, then `WAIT`s for replicas on the same connection (one pipeline, one slot). */
  const replicated = async (queue: (pipeline: ReturnType<Client['pipeline']>) => void) => {
    const pipeline = redis.pipeline()
    queue(pipeline)
    pipeline.wait(waitReplicas, Math.max(1, Math.floor(timeoutMs / 2)))
    for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error
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
      const keys = writes.map(({ key }) => key)
      const values = writes.flatMap(({ json, px }) => [json, px])
      await run(async () => {
        if (waitReplicas > 0) {
          await replicated((pipeline) =>
            writes.length === 1
              ? pipeline.set(only.key, only.json, 'PX', only.px)
              : (pipeline as unknown as Scripts).putMany(writes.length, ...keys, ...values),
          )
        } else if (writes.length === 1) {
          await redis.set(only.key, only.json, 'PX', only.px)
        } else {
          await redis.putMany(writes.length, ...keys, ...values)
        }
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
    // Ready only when every master answers: a Cluster with a master down cannot serve its
    // slots, even while other nodes answer a PING.
    ping: () =>
      run(async () => {
        if (!(redis instanceof Cluster)) {
          await redis.ping()
          return
        }
        // The slot table names each slot's master; a master whose connection is gone has
        // left the pool but not (until the failover) the table.
        const connected = new Map(
          redis.nodes('master').map((node) => [`${node.options.host}:${node.options.port}`, node]),
        )
        const masters = new Set(redis.slots.map((nodes) => nodes?.[0]))
        if (masters.has(undefined) || redis.slots.length < 16_384) {
          throw new Error('some Redis Cluster slots have no master')
        }
        await Promise.all(
          [...masters].map((key) => {
            const node = connected.get(key as string)
            if (!node) {
              redis.refreshSlotsCache()
              throw new Error(`Redis Cluster master ${key} is not connected`)
            }
            return node.ping()
          }),
        )
      }),
    close: async () => {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

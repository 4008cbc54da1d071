import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StoreUnavailableError } from '../src/errors.js'
import { createMemoryStore } from '../src/store/memory.js'
import { createRedisStore } from '../src/store/redis.js'
import type { Store } from '../src/store/store.js'
import { createTestClock } from './support/clock.js'
import { createTestRedisStore, elapseKeys, uniquePrefix } from './support/redis.js'
import {
  type RedisCluster,
  type RedisSentinelSet,
  startRedisCluster,
  startRedisSentinelSet,
} from './support/redis-server.js'

interface Subject {
  store: Store
  /** Lets `seconds` pass as the store sees time. */
  elapse(seconds: number): Promise<void>
  close(): Promise<void>
}

async function memorySubject(): Promise<Subject> {
  const clock = createTestClock()
  const store = createMemoryStore(clock)
  return { store, elapse: async (s) => clock.advance(s), close: () => store.close() }
}

async function redisSubject(): Promise<Subject> {
  const store = await createTestRedisStore('store')
  // Redis keeps its own time: the keys' TTLs are shortened instead, as if it had passed.
  return { store, elapse: (s) => elapseKeys(store.prefix, s), close: () => store.close() }
}

const TIMEOUT_MS = 1000

/** A store on the set's master, with a prefix of its own; new grants wait for the replica. */
function sentinelStore(set: RedisSentinelSet, prefix: string) {
  return createRedisStore({
    sentinels: set.sentinels,
    sentinelMaster: set.masterName,
    keyPrefix: prefix,
    commandTimeoutMs: TIMEOUT_MS,
    waitReplicas: 1,
  })
}

function clusterStore(cluster: RedisCluster, prefix: string) {
  return createRedisStore({
    clusterNodes: cluster.nodes,
    keyPrefix: prefix,
    commandTimeoutMs: TIMEOUT_MS,
    waitReplicas: 1,
  })
}

/** A subject on a replicated topology; time passes for its keys on each of `masters`. */
async function topologySubject(
  open: (prefix: string) => Promise<Store>,
  masters: () => Promise<readonly { url: string }[]>,
): Promise<Subject> {
  const prefix = uniquePrefix('store')
  const store = await open(prefix)
  return {
    store,
    elapse: async (s) => {
      for (const { url } of await masters()) await elapseKeys(prefix, s, url)
    },
    close: () => store.close(),
  }
}

/** Polls `probe` until it resolves (a recovery: the store serving again after a failover). */
async function eventually<T>(probe: () => Promise<T>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      return await probe()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
}

// Keys of one multi-key call (takeOnce, putMany) share a hash tag, as the key schema's do: a
// Redis Cluster refuses them otherwise.
describe.each([
  ['memory', memorySubject],
  ['redis', redisSubject],
])('store contract on %s', (_name, make) => storeContract(make))

function storeContract(make: () => Promise<Subject>) {
  let subject: Subject
  let store: Store
  beforeAll(async () => {
    subject = await make()
    store = subject.store
  }, 120_000)
  afterAll(() => subject?.close(), 30_000)

  it('returns what was put, as a copy', async () => {
    const value = { a: 1, nested: { b: ['x'] } }
    await store.put('k:copy', value, 10)
    value.nested.b.push('mutated')
    expect(await store.get('k:copy')).toEqual({ a: 1, nested: { b: ['x'] } })
  })

  it('returns undefined for a key never written', async () => {
    expect(await store.get('k:missing')).toBeUndefined()
    expect(await store.take('k:missing')).toBeUndefined()
  })

  it('forgets a value once its TTL has passed', async () => {
    await store.put('k:ttl', 'short', 10)
    await store.put('k:ttl-long', 'long', 30)
    expect(await store.get('k:ttl')).toBe('short')
    await subject.elapse(11)
    expect(await store.get('k:ttl')).toBeUndefined()
    expect(await store.take('k:ttl')).toBeUndefined()
    expect(await store.get('k:ttl-long')).toBe('long')
  })

  it('refuses a write without a positive TTL', async () => {
    await expect(store.put('k:no-ttl', 1, 0)).rejects.toThrow(RangeError)
    await expect(store.put('k:no-ttl', 1, Number.NaN)).rejects.toThrow(RangeError)
  })

  it('take reads and deletes', async () => {
    await store.put('k:take', { code: 1 }, 10)
    expect(await store.take('k:take')).toEqual({ code: 1 })
    expect(await store.take('k:take')).toBeUndefined()
    expect(await store.get('k:take')).toBeUndefined()
  })

  it('lets exactly one of many concurrent takes win', async () => {
    await store.put('k:race', 'prize', 10)
    const results = await Promise.all(Array.from({ length: 50 }, () => store.take('k:race')))
    expect(results.filter((r) => r === 'prize')).toHaveLength(1)
  })

  it('add writes only when the key is absent, once among concurrent callers', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.add('k:add', i, 10)),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    const winner = results.indexOf(true)
    expect(await store.get('k:add')).toBe(winner)
    await store.delete('k:add')
    expect(await store.add('k:add', 'again', 10)).toBe(true)
  })

  it('add succeeds again after the previous value expired', async () => {
    expect(await store.add('k:add-ttl', 1, 10)).toBe(true)
    await subject.elapse(11)
    expect(await store.add('k:add-ttl', 2, 10)).toBe(true)
    expect(await store.get('k:add-ttl')).toBe(2)
  })

  it('delete removes a key and ignores a missing one', async () => {
    await store.put('k:del', 1, 10)
    await store.delete('k:del')
    await store.delete('k:del')
    expect(await store.get('k:del')).toBeUndefined()
  })

  it('deleteIf deletes only the expected value, once among concurrent callers', async () => {
    await store.put('k:del-if', 'holder-1', 10)
    expect(await store.deleteIf('k:del-if', 'holder-2')).toBe(false)
    expect(await store.get('k:del-if')).toBe('holder-1')
    const results = await Promise.all(
      Array.from({ length: 20 }, () => store.deleteIf('k:del-if', 'holder-1')),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(await store.get('k:del-if')).toBeUndefined()
    expect(await store.deleteIf('k:del-if', 'holder-1')).toBe(false)
    await store.put('k:del-if', { a: [1] }, 10)
    expect(await store.deleteIf('k:del-if', { a: [1] })).toBe(true)
  })

  it('deleteIf leaves an expired key to its expiry', async () => {
    await store.put('k:del-if-ttl', 'holder', 10)
    await subject.elapse(11)
    expect(await store.deleteIf('k:del-if-ttl', 'holder')).toBe(false)
  })

  it('takeOnce takes the value and leaves the marker, for exactly one of many', async () => {
    await store.put('k:{once}', { code: 1 }, 10)
    const results = await Promise.all(
      Array.from({ length: 50 }, () => store.takeOnce('k:{once}', 'k:{once}-used', 'grant-1', 10)),
    )
    expect(results.filter((r) => r !== undefined)).toEqual([{ code: 1 }])
    expect(await store.get('k:{once}')).toBeUndefined()
    expect(await store.get('k:{once}-used')).toBe('grant-1')
    expect(await store.takeOnce('k:{once}', 'k:{once}-used', 'grant-2', 10)).toBeUndefined()
    expect(await store.get('k:{once}-used')).toBe('grant-1')
  })

  it('takeOnce changes nothing when the marker is there or the value is not', async () => {
    await store.put('k:{once-marked}', 'value', 10)
    await store.put('k:{once-marked}-used', 'earlier', 10)
    expect(
      await store.takeOnce('k:{once-marked}', 'k:{once-marked}-used', 'later', 10),
    ).toBeUndefined()
    expect(await store.get('k:{once-marked}')).toBe('value')
    expect(await store.get('k:{once-marked}-used')).toBe('earlier')
    expect(await store.takeOnce('k:{once-none}', 'k:{once-none}-used', 'x', 10)).toBeUndefined()
    expect(await store.get('k:{once-none}-used')).toBeUndefined()
  })

  it('takeOnce gives the marker its own TTL', async () => {
    await store.put('k:{once-ttl}', 'value', 30)
    expect(await store.takeOnce('k:{once-ttl}', 'k:{once-ttl}-used', 'm', 10)).toBe('value')
    await subject.elapse(11)
    expect(await store.get('k:{once-ttl}-used')).toBeUndefined()
    await expect(store.takeOnce('k:{once-ttl}', 'k:{once-ttl}-used', 'm', 0)).rejects.toThrow(
      RangeError,
    )
  })

  it('putMany writes every entry with its own TTL', async () => {
    await store.putMany([
      { key: 'k:{many}-a', value: { a: 1 }, ttlSeconds: 10 },
      { key: 'k:{many}-b', value: 'b', ttlSeconds: 30 },
    ])
    expect(await store.get('k:{many}-a')).toEqual({ a: 1 })
    expect(await store.get('k:{many}-b')).toBe('b')
    await subject.elapse(11)
    expect(await store.get('k:{many}-a')).toBeUndefined()
    expect(await store.get('k:{many}-b')).toBe('b')
    await store.putMany([{ key: 'k:{many}-b', value: 'one', ttlSeconds: 10 }])
    expect(await store.get('k:{many}-b')).toBe('one')
    await expect(store.putMany([])).resolves.toBeUndefined()
  })

  it('putMany refuses a batch with a bad TTL and writes none of it', async () => {
    await expect(
      store.putMany([
        { key: 'k:{many-bad}-a', value: 1, ttlSeconds: 10 },
        { key: 'k:{many-bad}-b', value: 2, ttlSeconds: 0 },
      ]),
    ).rejects.toThrow(RangeError)
    expect(await store.get('k:{many-bad}-a')).toBeUndefined()
  })

  it('counts increments within a window and restarts after it', async () => {
    const counts = await Promise.all(
      Array.from({ length: 10 }, () => store.increment('k:count', 10)),
    )
    expect(counts.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    await subject.elapse(11)
    expect(await store.increment('k:count', 10)).toBe(1)
  })

  it('answers ping', async () => {
    await expect(store.ping()).resolves.toBeUndefined()
  })

  it('an index names its members until each expires, then forgets itself', async () => {
    await Promise.all([
      store.indexAdd('k:index', 'short', 20),
      store.indexAdd('k:index', 'long', 60),
      store.indexAdd('k:index', 'gone', 300),
    ])
    await store.indexRemove('k:index', 'gone')
    await store.indexRemove('k:index', 'never-there')
    expect((await store.indexMembers('k:index', 10)).sort()).toEqual(['long', 'short'])
    expect(await store.indexMembers('k:index', 1)).toHaveLength(1)
    await subject.elapse(35)
    expect(await store.indexMembers('k:index', 10)).toEqual(['long'])
    // Re-adding moves a member's expiry.
    await store.indexAdd('k:index', 'long', 60)
    await subject.elapse(35)
    expect(await store.indexMembers('k:index', 10)).toEqual(['long'])
    await subject.elapse(40)
    expect(await store.indexMembers('k:index', 10)).toEqual([])
    expect(await store.indexMembers('k:never', 10)).toEqual([])
  })

  it('an index refuses a member without a positive TTL', async () => {
    await expect(store.indexAdd('k:index-ttl', 'm', 0)).rejects.toThrow(RangeError)
  })
}

/**
 * A master killed under the store: commands fail fast (StoreUnavailableError, the edge's 503)
 * while the engine fails over, then the same store serves again, and what `putMany` wrote
 * before the kill (waited for by a replica) is still there.
 */
function failover(
  open: () => Promise<Store>,
  masterOf: (key: string) => Promise<{ stop(): Promise<void>; start(): Promise<void> }>,
  healthy: () => Promise<void>,
  prefix: string,
) {
  it('fails fast while its master is down, then serves again with every grant kept', async () => {
    const store = await open()
    try {
      const grants = Array.from({ length: 20 }, (_, i) => `grant:{g${i}}`)
      for (const key of grants) await store.putMany([{ key, value: key, ttlSeconds: 60 }])
      const victim = grants[0] as string
      const master = await masterOf(`${prefix}${victim}`)
      await master.stop()

      await expect(store.get(victim)).rejects.toBeInstanceOf(StoreUnavailableError)
      await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError)

      expect(await eventually(() => store.get(victim))).toBe(victim)
      await eventually(() => store.ping())
      for (const key of grants) expect(await store.get(key)).toBe(key)
      await store.putMany([{ key: victim, value: 'after', ttlSeconds: 60 }])
      expect(await store.get(victim)).toBe('after')

      await master.start()
      await healthy()
    } finally {
      await store.close()
    }
  }, 120_000)
}

describe('redis sentinel', () => {
  let set: RedisSentinelSet
  beforeAll(async () => {
    set = await startRedisSentinelSet()
  }, 120_000)
  afterAll(() => set?.dispose())

  describe('store contract', () =>
    storeContract(() =>
      topologySubject(
        (prefix) => sentinelStore(set, prefix),
        async () => [await set.master()],
      ),
    ))
  const prefix = uniquePrefix('failover')
  describe('failover', () =>
    failover(
      () => sentinelStore(set, prefix),
      () => set.master(),
      () => set.healthy(),
      prefix,
    ))
})

describe('redis cluster', () => {
  let cluster: RedisCluster
  beforeAll(async () => {
    cluster = await startRedisCluster()
  }, 120_000)
  afterAll(() => cluster?.dispose())

  describe('store contract', () =>
    storeContract(() =>
      topologySubject(
        (prefix) => clusterStore(cluster, prefix),
        () => cluster.masters(),
      ),
    ))
  const prefix = uniquePrefix('failover')
  describe('failover', () =>
    failover(
      () => clusterStore(cluster, prefix),
      (key) => cluster.masterOf(key),
      () => cluster.healthy(),
      prefix,
    ))
})

describe('redis store isolation and failure', () => {
  it('keeps two prefixes apart', async () => {
    const a = await createTestRedisStore('iso-a')
    const b = await createTestRedisStore('iso-b')
    try {
      await a.put('shared', 'a', 10)
      expect(await b.get('shared')).toBeUndefined()
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('fails with StoreUnavailableError when no Redis answers', async () => {
    await expect(
      createRedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x:', commandTimeoutMs: 300 }),
    ).rejects.toBeInstanceOf(StoreUnavailableError)
  })
})

/**
 * Key-value storage with mandatory expiry (nothing outlives its purpose) and atomic one-shot
 * reads (get-then-delete would let two requests redeem one code). Values are
 * JSON. Implementations throw `StoreUnavailableError` when their backend does not answer, so
 * the edge answers 503 `temporarily_unavailable` rather than 500.
 */
export interface Store {
  get<T>(key: string): Promise<T | undefined>
  /** Writes `value`; everything expires, after `ttlSeconds` (fractions allowed). */
  put<T>(key: string, value: T, ttlSeconds: number): Promise<void>
  /** Writes only when `key` is absent (Redis `SET NX`): locks and first-writer-wins records. */
  add<T>(key: string, value: T, ttlSeconds: number): Promise<boolean>
  /** Atomic read-and-delete (Redis `GETDEL`): of many concurrent takes, exactly one wins. */
  take<T>(key: string): Promise<T | undefined>
  delete(key: string): Promise<void>
  /**
   * Deletes `key` only while it holds `expected` (its JSON compared), atomically: a lock's
   * holder releasing its own lock and never the next holder's. True when it deleted.
   */
  deleteIf<T>(key: string, expected: T): Promise<boolean>
  /**
   * A one-shot `take` that leaves a marker, atomically: reads and deletes `key` and writes
   * `marker` under `markerKey` (for `ttlSeconds`), unless `markerKey` is already there, when
   * nothing changes and nothing is returned. Of concurrent calls at most one gets the value,
   * and at no instant are both keys missing, so whoever comes after finds the marker. Both
   * keys carry one hash tag (`src/store/keys.ts`): a Redis Cluster runs the step on one node.
   */
  takeOnce<T>(
    key: string,
    markerKey: string,
    marker: unknown,
    ttlSeconds: number,
  ): Promise<T | undefined>
  /**
   * Writes several values in one step (one Redis round trip), each with its own TTL: the keys
   * carry one hash tag. For writes that must survive a failover (grants, refresh tokens): a
   * replicated store resolves once a replica holds them (`RedisStoreOptions.waitReplicas`).
   */
  putMany(entries: readonly StoreEntry[]): Promise<void>
  /**
   * Adds `member` to the index at `key` (a Redis sorted set), due to expire after `ttlSeconds`
   * (re-adding moves it). Members past their time drop out, and the
   * index itself expires with its last member. One key, one step: an index lives in a hash slot
   * of its own and may name things that are gone, which its readers check and prune.
   */
  indexAdd(key: string, member: string, ttlSeconds: number): Promise<void>
  /** The members of the index at `key` that have not expired, at most `limit` of them. */
  indexMembers(key: string, limit: number): Promise<string[]>
  /** Removes `member` from the index at `key`. */
  indexRemove(key: string, member: string): Promise<void>
  /** Adds one to a counter that starts its `ttlSeconds` window at the first increment. */
  increment(key: string, ttlSeconds: number): Promise<number>
  /**
   * True for a store only this process can read (the memory store): what it holds is never at
   * rest anywhere else. Absent means shared, as Redis is.
   */
  readonly local?: boolean
  /** Resolves when the backend answers; rejects otherwise (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

/** One write of `Store.putMany`. */
export interface StoreEntry {
  readonly key: string
  readonly value: unknown
  readonly ttlSeconds: number
}

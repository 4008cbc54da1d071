/**
 * Key-value storage with mandatory expiry and atomic one-shot reads (STYLE.md §6). Values are
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
  /** Adds one to a counter that starts its `ttlSeconds` window at the first increment. */
  increment(key: string, ttlSeconds: number): Promise<number>
  /** Resolves when the backend answers; rejects otherwise (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

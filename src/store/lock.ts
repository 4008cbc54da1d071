import type { Store } from './store.js'

/**
 * Runs `fn` holding a lock shared through the store (SET NX with a TTL, so a crashed holder
 * cannot block forever). Waiters poll until the lock frees or `waitMs` passes, then give up
 * with `LockTimeoutError`. The holder's token makes sure only it releases its own lock.
 */
export async function withLock<T>(
  store: Store,
  key: string,
  fn: () => Promise<T>,
  options: { ttlSeconds?: number; waitMs?: number; pollMs?: number } = {},
): Promise<T> {
  const ttlSeconds = options.ttlSeconds ?? 30
  const deadline = Date.now() + (options.waitMs ?? 15_000)
  const pollMs = options.pollMs ?? 25
  const holder = `${process.pid}:${Math.random()}`
  while (!(await store.add(key, holder, ttlSeconds))) {
    if (Date.now() >= deadline) throw new LockTimeoutError(key)
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
  try {
    return await fn()
  } finally {
    // Best effort: release only what is still ours (a TTL may have handed it to another),
    // compared and deleted in one step so another's lock taken in between stays taken.
    await store.deleteIf(key, holder).catch(() => {})
  }
}

/** The lock stayed taken for longer than the caller would wait. */
export class LockTimeoutError extends Error {
  constructor(key: string) {
    super(`timed out waiting for lock ${key}`)
    this.name = 'LockTimeoutError'
  }
}

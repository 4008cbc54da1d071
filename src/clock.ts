/** Time as the app sees it, injected so tests move it instead of sleeping. */
export interface Clock {
  /** Seconds since the epoch, fractional. */
  now(): number
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() / 1000 }

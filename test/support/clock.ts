import type { Clock } from '../../src/clock.js'

/** A clock tests move by hand. */
export interface TestClock extends Clock {
  advance(seconds: number): void
}

export function createTestClock(start = 1_750_000_000): TestClock {
  let now = start
  return {
    now: () => now,
    advance: (seconds) => {
      now += seconds
    },
  }
}

/**
 * Long enough that no step of a test reaches it on a loaded machine, short enough to fail
 * before the test's own timeout, with a message saying what hung.
 */
export const HANG_MS = 15_000

/**
 * `work`, or a failure saying that `what` hung when it has not settled within `boundMs`. A
 * hang detector, not a stopwatch: it fails only when something never answers. How fast a step
 * is belongs to the benchmarks; tests that need time to pass move an injected clock.
 */
export async function noHang<T>(work: Promise<T>, what: string, boundMs = HANG_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not answer within ${boundMs} ms: it hangs`)),
      boundMs,
    )
  })
  try {
    return await Promise.race([work, hung])
  } finally {
    clearTimeout(timer)
  }
}

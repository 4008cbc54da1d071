import type { Logger } from 'pino'
import { type Upstream, UpstreamError } from './upstream.js'

/** Whether the upstream's discovery document could be fetched, as `/readyz` reports it. */
export interface UpstreamHealth {
  /** `ok`, `checking`, or `unreachable (<cause>)`. */
  status(): string
  /**
   * Fetches the discovery document unless that already succeeded or an attempt is under way;
   * resolves when the attempt ends. A failure is logged once per distinct cause.
   */
  check(): Promise<void>
  /** Checks now, and after a failure again in the background, later each time, until `stop()`. */
  start(): void
  stop(): void
}

/** What {@link createUpstreamHealth} needs. */
export interface UpstreamHealthOptions {
  readonly upstream: Upstream
  /** The variable that holds the upstream's address (`KINDE_ISSUER_URL`, `AUTH0_DOMAIN`, …). */
  readonly variable: string
  readonly issuer: URL
  readonly logger: Logger
  /** Waits between background retries; the last one repeats. */
  readonly retryDelaysSeconds?: readonly number[]
}

const RETRY_DELAYS_SECONDS = [5, 10, 30, 60]

/**
 * Watches the upstream's discovery, so that a typo in the issuer or an IdP outage is named
 * where operators look (the start-up log, `/readyz`, the doctor) instead of surfacing as a
 * failed sign-in. The proxy keeps serving meanwhile: an outage of the IdP must not take down
 * discovery, registration or tokens already issued.
 */
export function createUpstreamHealth(options: UpstreamHealthOptions): UpstreamHealth {
  const { upstream, variable, issuer, logger } = options
  const delays = options.retryDelaysSeconds ?? RETRY_DELAYS_SECONDS
  let state: { ok: true } | { ok: false; cause: string } | undefined
  let running: Promise<void> | undefined
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  let watching = false

  const attempt = async () => {
    try {
      await upstream.discover?.()
      if (state && !state.ok) logger.info({ variable }, `upstream reachable again at ${variable}`)
      state = { ok: true }
    } catch (error) {
      const cause = error instanceof UpstreamError ? (error.detail ?? error.message) : String(error)
      const misconfigured = error instanceof UpstreamError && error.misconfigured
      const delay = delays[Math.min(failures, delays.length - 1)] ?? 60
      failures++
      if (!state || state.ok || state.cause !== cause) {
        // One line that says which setting, what went wrong, and that nothing stopped.
        logger.error(
          { variable, issuer: issuer.href, cause, misconfigured },
          `${variable} ${issuer.href}: the upstream's discovery document cannot be fetched: ${cause}${misconfigured ? ' (check the setting)' : ''}; still serving${watching ? `, retrying in ${delay}s` : ''}`,
        )
      }
      state = { ok: false, cause }
      if (watching) {
        clearTimeout(retry)
        retry = setTimeout(() => void check(), delay * 1000)
        retry.unref()
      }
    }
  }

  function check(): Promise<void> {
    if (state?.ok) return Promise.resolve()
    running ??= attempt().finally(() => {
      running = undefined
    })
    return running
  }

  return {
    status: () => (!state ? 'checking' : state.ok ? 'ok' : `unreachable (${state.cause})`),
    check,
    start() {
      watching = true
      void check()
    },
    stop() {
      watching = false
      clearTimeout(retry)
    },
  }
}

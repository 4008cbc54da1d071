import autocannon from 'autocannon'
import type { ServerProcess } from './processes.js'

/** One load run against one server. */
export interface LoadResult {
  /** Successful responses (2xx, body as expected) per second. */
  readonly okPerSecond: number
  /**
   * Successful responses per CPU second the server used: what one fully available core would
   * serve, were the server the bottleneck. Steadier than `okPerSecond` on a shared machine.
   */
  readonly okPerCpuSecond: number
  readonly ok: number
  /** Other responses, connection errors and timeouts. */
  readonly failures: number
  readonly statusCodes: Readonly<Record<string, number>>
  readonly p50Ms: number
  readonly p99Ms: number
  readonly seconds: number
  /** CPU the server used, in cores (1 = one core busy the whole run). */
  readonly serverCores: number
  /** CPU the load generator (this process) used, in cores. */
  readonly clientCores: number
}

/** What to send: autocannon's options, with the requests' expected answer. */
export interface LoadSpec extends Omit<autocannon.Options, 'requests' | 'verifyBody'> {
  readonly requests: readonly autocannon.Request[]
  /** Whether a 2xx response's body is the right answer (not an error the SDK wrapped in 200). */
  readonly expect: (body: string) => boolean
}

/**
 * Runs autocannon in this process against `server`, counting as successes only 2xx responses
 * whose body `expect` accepts, and measuring both sides' CPU over the run: a server using less
 * than one core means the generator or the machine, not the server, set the pace.
 */
export async function runLoad(server: ServerProcess, spec: LoadSpec): Promise<LoadResult> {
  const { expect, requests, ...options } = spec
  let ok = 0
  const counted = requests.map(
    (request): autocannon.Request => ({
      ...request,
      onResponse: (status, body) => {
        if (status >= 200 && status < 300 && expect(body)) ok++
      },
    }),
  )
  const serverBefore = server.cpuSeconds()
  const clientBefore = process.cpuUsage()
  const started = performance.now()
  // A run by `amount` (the /token codes) ends at the sample tick after its last response: at
  // autocannon's default of 1 s, a 3.1 s run would count as 4 s. Ticks every 100 ms keep that
  // error small.
  const result = await autocannon({
    pipelining: 1,
    timeout: 30,
    sampleInt: 100,
    ...options,
    requests: counted,
  })
  const wallSeconds = (performance.now() - started) / 1000
  const client = process.cpuUsage(clientBefore)
  const serverCpu = server.cpuSeconds() - serverBefore
  const statusCodes: Record<string, number> = {}
  let responses = 0
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) {
    statusCodes[code] = count
    responses += count
  }
  return {
    okPerSecond: ok / result.duration,
    okPerCpuSecond: ok / serverCpu,
    ok,
    failures: responses - ok + result.errors + result.timeouts,
    statusCodes,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    seconds: result.duration,
    serverCores: serverCpu / wallSeconds,
    clientCores: (client.user + client.system) / 1e6 / wallSeconds,
  }
}

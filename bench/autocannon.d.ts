// autocannon 9 ships no type declarations (and no @types package is installed); this covers
// the part of its programmatic API the benchmark uses.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Request {
      method?: string
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
      /** Called before each send; must return the request to send. */
      setupRequest?: (request: Request, context: Record<string, unknown>) => Request
      /** Called with each response to this request. */
      onResponse?: (status: number, body: string) => void
    }

    /** One connection's HTTP client. */
    interface Client extends EventEmitter {
      setHeaders(headers: Record<string, string>): void
    }

    interface Options {
      url: string
      title?: string
      connections?: number
      pipelining?: number
      /** Seconds; ignored when `amount` is set. */
      duration?: number
      amount?: number
      /** Milliseconds between samples; a run with `amount` ends only at the next one. */
      sampleInt?: number
      /** Seconds before a request counts as timed out. */
      timeout?: number
      method?: string
      headers?: Record<string, string>
      body?: string | Buffer
      requests?: Request[]
      /** Replaces `[<id>]` in each request with a fresh unique id. */
      idReplacement?: boolean
      setupClient?: (client: Client) => void
      verifyBody?: (body: string) => boolean
    }

    /** An hdr-histogram-percentiles-obj summary. */
    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      p50: number
      p90: number
      p99: number
    }

    interface Result {
      /** Seconds the run actually took. */
      duration: number
      errors: number
      timeouts: number
      mismatches: number
      non2xx: number
      '2xx': number
      statusCodeStats: Record<string, { count: number }>
      latency: Histogram
      requests: Histogram & { total: number; sent: number }
    }

    interface Instance extends EventEmitter, PromiseLike<Result> {
      stop(): void
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance
  export = autocannon
}

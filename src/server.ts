import type { Server, ServerOptions } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { serve } from '@hono/node-server'
import { createApp } from './app.js'
import { type Config, ConfigError, loadProcessConfig } from './config.js'
import type { Deps } from './deps.js'
import { createLogger } from './logger.js'
import { createServices, type ServiceOverrides } from './services.js'
import { storeName } from './store/redis.js'

/** A running proxy: where it listens and how to stop it. */
export interface RunningServer {
  readonly url: string
  readonly config: Config
  readonly deps: Deps
  /** Stops accepting connections, lets in-flight requests finish, then closes the store. */
  close(): Promise<void>
}

const SHUTDOWN_GRACE_MS = 10_000
const HEADERS_TIMEOUT_MS = 10_000

/**
 * Node's own limits on receiving a request: a body that stops arriving is cut after
 * `REQUEST_TIMEOUT_MS` (Node's default is five minutes), headers after 10 s. Node enforces both
 * only when it sweeps its connections, every `connectionsCheckingInterval` (30 s by default),
 * so the sweep runs often enough for the timeout to mean what it says.
 */
function requestLimits(
  config: Pick<Config, 'requestTimeoutMs'>,
): Pick<ServerOptions, 'requestTimeout' | 'headersTimeout' | 'connectionsCheckingInterval'> {
  const requestTimeout = config.requestTimeoutMs
  return {
    requestTimeout,
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeout),
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(requestTimeout / 4))),
  }
}

/**
 * Builds the services from `config` (`createServices`) and serves the app on a node HTTP
 * server. `overrides` let tests and the demo swap the logger, the clock or wrap outbound
 * `fetch` without touching the environment.
 */
export async function startServer(
  config: Config,
  overrides: ServiceOverrides = {},
): Promise<RunningServer> {
  const deps = await createServices(config, overrides)
  const { logger, store } = deps
  try {
    const shutdown = new AbortController()
    const app = createApp(deps, { mcp: { signal: shutdown.signal } })
    // A port already in use must fail start-up, not leave it waiting for a listen that never comes.
    const server = await new Promise<Server>((resolve, reject) => {
      const started = serve(
        {
          fetch: app.fetch,
          port: config.port,
          hostname: config.host,
          serverOptions: requestLimits(config),
        },
        () => {
          started.off('error', reject)
          resolve(started as Server)
        },
      ) as Server
      started.once('error', reject)
    })
    // Past the cap Node closes new connections at once: an instance degrades, never exhausts
    // its file descriptors or memory.
    if (config.maxConnections > 0) server.maxConnections = config.maxConnections
    const { port } = server.address() as AddressInfo
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`
    logger.info(
      {
        url,
        public_url: config.issuer,
        upstream: config.upstream.kind,
        store: storeName(config.redis),
      },
      'listening',
    )
    // The proxy serves while the IdP is down; the watcher logs the cause and retries.
    deps.upstreamHealth.start()

    let closing: Promise<void> | undefined
    const close = () => {
      closing ??= (async () => {
        // MCP sessions first: their event streams would otherwise hold connections open.
        shutdown.abort()
        deps.upstreamHealth.stop()
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS)
          // Keep-alive connections turn idle as their in-flight requests finish: close them then,
          // rather than waiting out the keep-alive timeout.
          const reap = setInterval(() => server.closeIdleConnections(), 50)
          server.close(() => {
            clearTimeout(force)
            clearInterval(reap)
            resolve()
          })
          server.closeIdleConnections()
        })
        await store.close()
      })()
      return closing
    }
    return { url, config, deps, close }
  } catch (error) {
    await store.close()
    throw error
  }
}

async function main(): Promise<void> {
  const config = loadProcessConfig()
  const logger = createLogger(config.logLevel)
  let running: RunningServer
  try {
    running = await startServer(config, { logger })
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) process.stderr.write(`config error: ${problem}\n`)
    } else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      process.stderr.write(`config error: PORT: ${config.host}:${config.port} is already in use\n`)
    } else {
      logger.fatal({ err: error }, 'start-up failed')
    }
    process.exit(1)
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'shutting down')
      running.close().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed')
          process.exit(1)
        },
      )
    })
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}

import { existsSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { serve } from '@hono/node-server'
import type { Logger } from 'pino'
import { createApp } from './app.js'
import { systemClock } from './clock.js'
import { type Config, ConfigError, loadConfig } from './config.js'
import type { Deps } from './deps.js'
import { createLogger } from './logger.js'
import { createMemoryStore } from './store/memory.js'
import { createRedisStore, storeName } from './store/redis.js'
import type { Store } from './store/store.js'
import { createKeys } from './tokens/keys.js'
import { createOidcUpstream } from './upstream/oidc.js'

/** A running proxy: where it listens and how to stop it. */
export interface RunningServer {
  readonly url: string
  readonly config: Config
  readonly deps: Deps
  /** Stops accepting connections, lets in-flight requests finish, then closes the store. */
  close(): Promise<void>
}

const SHUTDOWN_GRACE_MS = 10_000

/** What `createDeps` may be handed instead of building it from the configuration. */
export interface DepsOptions {
  logger?: Logger
  /** Outbound HTTP to the upstream; default the global `fetch`. */
  fetch?: typeof fetch
  /** Default: Redis when `config.redisUrl` is set, else in memory. */
  store?: Store
  /** Replaces any built dependency (tests, the demo, library mode's `authorizeUser`). */
  overrides?: Partial<Deps>
}

/**
 * Builds the dependencies from `config` alone (never from `process.env`): the store, the
 * signing and encryption keys (generated once and kept in the store when not configured), the
 * upstream client, the clock and the logger. The CLI server and library mode both start here.
 * The store belongs to the caller, who closes it (`deps.store.close()`) when done; a store
 * created here is closed again if the keys cannot be set up.
 */
export async function createDeps(config: Config, options: DepsOptions = {}): Promise<Deps> {
  const logger = options.logger ?? createLogger(config.logLevel)
  const clock = systemClock
  const store: Store =
    options.store ??
    (config.redis ? await createRedisStore(config.redis) : createMemoryStore(clock))
  try {
    const keys = await createKeys({
      store,
      clock,
      signingKey: config.signingKey,
      signingKeyPrevious: config.signingKeyPrevious,
      encryptionKey: config.encryptionKey,
      rotationSeconds: config.keyRotationSeconds,
    })
    const outbound = options.fetch ?? fetch
    // Discovery is lazy: the proxy starts (and serves discovery) while the IdP is down.
    const upstream = createOidcUpstream({
      settings: config.upstream,
      publicUrl: config.publicUrl,
      timeoutSeconds: config.upstreamTimeoutSeconds,
      fetch: outbound,
      logger,
      clock,
    })
    return {
      config,
      store,
      keys,
      clock,
      logger,
      fetch: outbound,
      upstream,
      ...options.overrides,
    }
  } catch (error) {
    if (!options.store) await store.close()
    throw error
  }
}

/**
 * Builds the dependencies from `config` and serves the app on a node HTTP server. Options let
 * tests and the demo swap the logger or wrap outbound `fetch` without touching the environment.
 */
export async function startServer(
  config: Config,
  options: { logger?: Logger; fetch?: typeof fetch; overrides?: Partial<Deps> } = {},
): Promise<RunningServer> {
  const deps = await createDeps(config, options)
  const { logger, store } = deps
  try {
    const shutdown = new AbortController()
    const app = createApp(deps, { mcp: { signal: shutdown.signal } })
    // A port already in use must fail start-up, not leave it waiting for a listen that never comes.
    const server = await new Promise<Server>((resolve, reject) => {
      const started = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => {
        started.off('error', reject)
        resolve(started as Server)
      }) as Server
      started.once('error', reject)
    })
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

    let closing: Promise<void> | undefined
    const close = () => {
      closing ??= (async () => {
        // MCP sessions first: their event streams would otherwise hold connections open.
        shutdown.abort()
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
  if (existsSync('.env')) process.loadEnvFile('.env')
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    for (const problem of error.problems) process.stderr.write(`config error: ${problem}\n`)
    process.exit(1)
  }
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

import { pino } from 'pino'
import type { Clock } from '../../src/clock.js'
import { type Config, loadConfig } from '../../src/config.js'
import type { MetadataDocumentOptions } from '../../src/oauth/client-metadata-document.js'
import { type RunningServer, startServer } from '../../src/server.js'
import { createServices, type ServiceOverrides, type Services } from '../../src/services.js'
import { freePort } from './net.js'
import { deleteKeys, REDIS_URL, uniquePrefix } from './redis.js'
import {
  type StartUpstreamOptions,
  startUpstream,
  type Upstream,
  type UpstreamFlavor,
} from './upstream.js'

/** The proxy's confidential client at the test upstream. */
export const PROXY_CLIENT = { client_id: 'mcp-proxy', client_secret: 'mcp-proxy-upstream-secret' }

export interface ProxyUnderTest {
  /** The proxy's public URL (also where it listens). */
  readonly url: string
  /** The environment the proxy was configured with. */
  readonly env: Readonly<Record<string, string>>
  readonly server: RunningServer
  readonly upstream: Upstream
  close(): Promise<void>
}

export interface StartProxyOptions {
  flavor: UpstreamFlavor
  store?: 'memory' | 'redis'
  /** Extra environment for the proxy. */
  env?: Record<string, string>
  upstream?: Partial<StartUpstreamOptions>
  /** Wraps the proxy's outbound fetch (fault injection around the real upstream). */
  fetch?: typeof fetch
  /** The proxy's clock (token lifetimes, the verifier's cache); default the wall clock. */
  clock?: Clock
  /** Register `PUBLIC_URL/backchannel-logout` at the upstream (its ID tokens then carry `sid`). */
  backchannelLogout?: boolean
  /** How the proxy fetches client metadata documents and JWK Sets (tests lift the address guard). */
  metadataDocuments?: Partial<MetadataDocumentOptions>
}

/**
 * Starts a real upstream (oidc-provider as Kinde, Auth0 or plain OIDC) and the proxy in front
 * of it on loopback, configured through the same environment variables a deployment uses.
 */
export async function startProxy(options: StartProxyOptions): Promise<ProxyUnderTest> {
  // PUBLIC_URL needs the port before the proxy listens, so another test may take it in
  // between: then everything starts again on a new port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startProxyOnce(options)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw error
    }
  }
}

async function startProxyOnce(options: StartProxyOptions): Promise<ProxyUnderTest> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const upstream = await startUpstream({
    flavor: options.flavor,
    client: {
      ...PROXY_CLIENT,
      redirect_uris: [`${url}/callback`],
      ...(options.backchannelLogout ? { backchannel_logout_uri: `${url}/backchannel-logout` } : {}),
    },
    ...options.upstream,
  })
  const prefix = uniquePrefix(`proxy-${options.flavor}`)
  const env: Record<string, string> = {
    PUBLIC_URL: url,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'silent',
    ...upstreamEnv(upstream),
    ...(options.store === 'redis' ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
    ...options.env,
  }
  let server: RunningServer
  try {
    server = await startServer(loadConfig(env), {
      logger: pino({ level: 'silent' }),
      fetch: options.fetch,
      clock: options.clock,
      metadataDocuments: options.metadataDocuments,
    })
  } catch (error) {
    await upstream.close()
    throw error
  }
  return {
    url,
    env,
    server,
    upstream,
    async close() {
      await server.close()
      await upstream.close()
      if (options.store === 'redis') await deleteKeys(prefix)
    },
  }
}

/** The environment variables that point the proxy at `upstream`, as a user would set them. */
export function upstreamEnv(upstream: Upstream): Record<string, string> {
  switch (upstream.flavor) {
    case 'kinde':
      return {
        KINDE_ISSUER_URL: upstream.issuer,
        KINDE_CLIENT_ID: PROXY_CLIENT.client_id,
        KINDE_CLIENT_SECRET: PROXY_CLIENT.client_secret,
        KINDE_AUDIENCE: upstream.audience,
      }
    case 'auth0':
      return {
        AUTH0_DOMAIN: upstream.issuer,
        AUTH0_CLIENT_ID: PROXY_CLIENT.client_id,
        AUTH0_CLIENT_SECRET: PROXY_CLIENT.client_secret,
        AUTH0_AUDIENCE: upstream.audience,
      }
    case 'oidc':
      return {
        OIDC_ISSUER_URL: upstream.issuer,
        OIDC_CLIENT_ID: PROXY_CLIENT.client_id,
        OIDC_CLIENT_SECRET: PROXY_CLIENT.client_secret,
        OIDC_AUDIENCE: upstream.audience,
      }
  }
}

/**
 * Starts a second instance of `proxy` (same PUBLIC_URL, store and upstream) on another port,
 * as a fleet behind a load balancer would run; returns its listening URL and server.
 */
export async function startSibling(
  proxy: ProxyUnderTest,
  options: { fetch?: typeof fetch } = {},
): Promise<{ url: string; server: RunningServer; close(): Promise<void> }> {
  const port = await freePort()
  const server = await startServer(loadConfig({ ...proxy.env, PORT: String(port) }), {
    logger: pino({ level: 'silent' }),
    fetch: options.fetch,
  })
  return { url: server.url, server, close: () => server.close() }
}

/**
 * The services of another instance of `proxy`, built by the composition root as the server
 * builds its own: the same store (so the same keys), its own verifier, upstream-token cache,
 * metrics and audit trail. `config` replaces settings of that instance only.
 */
export function siblingServices(
  proxy: ProxyUnderTest,
  options: { config?: Partial<Config>; overrides?: ServiceOverrides } = {},
): Promise<Services> {
  return createServices(
    { ...proxy.server.config, ...options.config },
    { store: proxy.server.deps.store, logger: pino({ level: 'silent' }), ...options.overrides },
  )
}

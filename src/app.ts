import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { correlate } from './audit.js'
import { OAuthError, refusalResponse } from './errors.js'
import { requestAbandoned } from './http.js'
import { createMcpEndpoint, type McpEndpointOptions } from './mcp/endpoint.js'
import { metricsRoutes } from './metrics.js'
import { accountRoutes } from './oauth/account.js'
import { authorizeRoutes } from './oauth/authorize.js'
import { backchannelLogoutRoutes } from './oauth/backchannel-logout.js'
import { metadataRoutes } from './oauth/metadata.js'
import { registerRoutes } from './oauth/register.js'
import { revokeRoutes } from './oauth/revoke.js'
import { tokenRoutes } from './oauth/token.js'
import type { Services } from './services.js'
import { storeName } from './store/redis.js'

/** What an embedding application adds to the app (library mode). */
export interface AppOptions {
  /** The MCP endpoint's tools and server info. */
  readonly mcp?: McpEndpointOptions
}

/**
 * Mounts the proxy's routes on one Hono app, over services built by `createServices`; it
 * builds nothing stateful itself. Two apps over the same services are one instance serving
 * twice; apps over different services share nothing, so tests may run several in one process.
 */
export function createApp(deps: Services, options: AppOptions = {}): Hono {
  const { metrics, clients } = deps
  const app = new Hono()

  app.use(correlate)
  app.use(metrics.middleware)

  // One line per request at `debug` only; at the production level (`info`) it would never be
  // written, so the middleware is not even installed.
  if (deps.logger.isLevelEnabled('debug')) {
    app.use(async function requestLog(c, next) {
      const started = performance.now()
      await next()
      // The path only: query strings carry codes and states.
      deps.logger.debug(
        {
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          ms: Math.round(performance.now() - started),
        },
        'request',
      )
    })
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  // Readiness is the store's alone: an IdP outage must not take every instance out of the
  // load balancer. The upstream's state rides along for people and the doctor, and a probe
  // while it is not ok tries discovery again in the background.
  app.get('/readyz', async (c) => {
    const health = deps.upstreamHealth
    if (health.status() !== 'ok') void health.check()
    const upstream = health.status()
    try {
      await deps.store.ping()
      return c.json({ status: 'ready', store: storeName(deps.config.redis), upstream })
    } catch {
      return c.json({ status: 'unavailable', reason: 'store does not answer', upstream }, 503)
    }
  })

  app.route('/', metricsRoutes(metrics, deps.config.metricsToken))
  app.route('/', metadataRoutes(deps))
  app.route('/', registerRoutes(deps, clients))
  app.route('/', authorizeRoutes(deps, clients))
  app.route('/', tokenRoutes(deps, clients))
  app.route('/', revokeRoutes(deps, clients))
  app.route('/', accountRoutes(deps, clients))
  app.route('/', backchannelLogoutRoutes(deps))
  app.route('/', createMcpEndpoint(deps, options.mcp))

  app.notFound(() => new OAuthError('not_found', 'no such endpoint', { status: 404 }).getResponse())
  app.onError((error, c) => {
    if (!(error instanceof OAuthError) && requestAbandoned(c)) {
      // Nobody is left to answer; nginx's 499 names that in the metrics.
      deps.logger.debug(
        { path: c.req.path, code: (error as { code?: unknown }).code },
        'client abandoned the request',
      )
      return new Response(null, { status: 499 })
    }
    // OAuth refusals and store outages answer as everywhere else (the MCP endpoint, library
    // mode); server-side ones (5xx) are logged at warn, with their cause.
    const refusal = refusalResponse(error, deps.logger, c.req.path)
    if (refusal) return refusal
    if (error instanceof HTTPException && error.status < 500) {
      return new OAuthError('invalid_request', error.message || 'bad request', {
        status: error.status,
      }).getResponse()
    }
    deps.logger.error({ err: error, path: c.req.path }, 'unhandled error')
    return new OAuthError('server_error', 'an unexpected error occurred', {
      status: 500,
    }).getResponse()
  })
  return app
}

import { Hono, type MiddlewareHandler } from 'hono'
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client'
import type { AuditEventName, AuditFields } from './audit.js'
import { safeEqual } from './crypto.js'
import { StoreUnavailableError } from './errors.js'
import type { Store } from './store/store.js'
import { type Upstream, UpstreamError } from './upstream/upstream.js'

/** The proxy's Prometheus metrics, in a registry of its own (two apps never share one). */
export interface Metrics {
  readonly registry: Registry
  /** Counts and times every request by route pattern (never by raw path: bounded labels). */
  readonly middleware: MiddlewareHandler
  /** Moves the counters that audit events stand for (tokens issued, reuse detected, …). */
  observe(event: AuditEventName, fields: AuditFields): void
  /** The upstream with every call timed and its failures counted. */
  instrumentUpstream(upstream: Upstream): Upstream
  /** The store with its failures counted. */
  instrumentStore(store: Store): Store
}

/** Creates the metrics, with Node's process metrics (CPU, memory, event-loop lag) included. */
export function createMetrics(): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'mcp_oauth_proxy_' })
  const requests = new Counter({
    name: 'mcp_oauth_proxy_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'mcp_oauth_proxy_http_request_duration_seconds',
    help: 'HTTP request latency by route and method (to the response headers)',
    labelNames: ['route', 'method'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  })
  const tokens = new Counter({
    name: 'mcp_oauth_proxy_tokens_issued_total',
    help: 'Access tokens issued by grant type and actor',
    labelNames: ['grant_type', 'actor'],
    registers: [registry],
  })
  const security = new Counter({
    name: 'mcp_oauth_proxy_security_events_total',
    help: 'Security events: refresh reuse, code replay, policy refusals, revocations, MCP denials',
    labelNames: ['event'],
    registers: [registry],
  })
  const grantsRevoked = new Counter({
    name: 'mcp_oauth_proxy_grants_revoked_total',
    help: 'Grants ended by the user (/account), a back-channel logout or an operator',
    labelNames: ['by'],
    registers: [registry],
  })
  const upstreamDuration = new Histogram({
    name: 'mcp_oauth_proxy_upstream_request_duration_seconds',
    help: 'Calls to the upstream identity provider by operation and outcome',
    labelNames: ['operation', 'outcome'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  const upstreamErrors = new Counter({
    name: 'mcp_oauth_proxy_upstream_errors_total',
    help: 'Failed upstream calls by operation and kind (unavailable, rejected)',
    labelNames: ['operation', 'kind'],
    registers: [registry],
  })
  const storeErrors = new Counter({
    name: 'mcp_oauth_proxy_store_errors_total',
    help: 'Store operations that failed because the store did not answer',
    labelNames: ['operation'],
    registers: [registry],
  })

  return {
    registry,
    middleware: async function metricsMiddleware(c, next) {
      const end = duration.startTimer()
      await next()
      // The matched pattern ("/authorize", "*" for unknown paths), never the request path.
      const route = c.req.routePath || 'unmatched'
      const labels = {
        route: route === '/*' || route === '*' ? 'unmatched' : route,
        method: c.req.method,
      }
      end(labels)
      requests.inc({ ...labels, status: String(c.res.status) })
    },
    observe(event, fields) {
      if (event === 'token.issued')
        tokens.inc({ grant_type: fields.grant_type ?? 'unknown', actor: fields.actor ?? 'user' })
      else if (event === 'grant.revoked') grantsRevoked.inc({ by: fields.by ?? 'unknown' })
      else if (SECURITY_EVENTS.has(event)) security.inc({ event })
    },
    instrumentUpstream(upstream) {
      const timed =
        <A extends unknown[], R>(operation: string, call: (...args: A) => Promise<R>) =>
        async (...args: A): Promise<R> => {
          const end = upstreamDuration.startTimer({ operation })
          try {
            const result = await call(...args)
            end({ outcome: 'ok' })
            return result
          } catch (error) {
            const kind = error instanceof UpstreamError ? error.kind : 'error'
            end({ outcome: kind })
            upstreamErrors.inc({ operation, kind })
            throw error
          }
        }
      return {
        kind: upstream.kind,
        authorizationUrl: timed('authorization_url', upstream.authorizationUrl.bind(upstream)),
        exchangeCode: timed('exchange_code', upstream.exchangeCode.bind(upstream)),
        refresh: timed('refresh', upstream.refresh.bind(upstream)),
        clientCredentials: timed('client_credentials', upstream.clientCredentials.bind(upstream)),
        revoke: timed('revoke', upstream.revoke.bind(upstream)),
        userinfo: timed('userinfo', upstream.userinfo.bind(upstream)),
        verifyLogoutToken: timed('verify_logout_token', upstream.verifyLogoutToken.bind(upstream)),
      }
    },
    instrumentStore(store) {
      const counted = async <R>(operation: string, call: () => Promise<R>): Promise<R> => {
        try {
          return await call()
        } catch (error) {
          if (error instanceof StoreUnavailableError) storeErrors.inc({ operation })
          throw error
        }
      }
      return {
        ...(store.local ? { local: true } : {}),
        get: <T>(key: string) => counted('get', () => store.get<T>(key)),
        put: (key, value, ttl) => counted('put', () => store.put(key, value, ttl)),
        add: (key, value, ttl) => counted('add', () => store.add(key, value, ttl)),
        take: <T>(key: string) => counted('take', () => store.take<T>(key)),
        delete: (key) => counted('delete', () => store.delete(key)),
        deleteIf: (key, expected) => counted('delete_if', () => store.deleteIf(key, expected)),
        takeOnce: <T>(key: string, markerKey: string, marker: unknown, ttl: number) =>
          counted('take_once', () => store.takeOnce<T>(key, markerKey, marker, ttl)),
        putMany: (entries) => counted('put_many', () => store.putMany(entries)),
        increment: (key, ttl) => counted('increment', () => store.increment(key, ttl)),
        indexAdd: (key, member, ttl) =>
          counted('index_add', () => store.indexAdd(key, member, ttl)),
        indexMembers: (key, limit) =>
          counted('index_members', () => store.indexMembers(key, limit)),
        indexRemove: (key, member) => counted('index_remove', () => store.indexRemove(key, member)),
        ping: () => counted('ping', () => store.ping()),
        close: () => store.close(),
      }
    },
  }
}

const SECURITY_EVENTS = new Set<AuditEventName>([
  'refresh.reuse_detected',
  'code.replayed',
  'policy.refused',
  'token.revoked',
  'mcp.denied',
  'authorization.refused',
  'consent.denied',
])

/**
 * `GET /metrics` in Prometheus text format. With a token configured (`METRICS_TOKEN`), only
 * `Authorization: Bearer <token>` may read it.
 */
export function metricsRoutes(metrics: Metrics, token: string | undefined) {
  const app = new Hono()
  app.get('/metrics', async (c) => {
    if (token) {
      const presented = c.req.header('authorization')?.match(/^Bearer\s+(\S+)\s*$/i)?.[1] ?? ''
      if (!safeEqual(presented, token)) {
        return c.json(
          { error: 'invalid_token', error_description: 'a valid metrics token is required' },
          401,
          {
            'www-authenticate': 'Bearer realm="metrics"',
            'cache-control': 'no-store',
          },
        )
      }
    }
    return c.body(await metrics.registry.metrics(), 200, {
      'content-type': metrics.registry.contentType,
      'cache-control': 'no-store',
    })
  })
  return app
}

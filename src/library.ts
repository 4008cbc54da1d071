import type { Hono, MiddlewareHandler } from 'hono'
import type { DestinationStream, Logger } from 'pino'
import { createApp } from './app.js'
import { correlate, requestIdOf } from './audit.js'
import type { Clock } from './clock.js'
import { type Config, loadConfig } from './config.js'
import type { Deps } from './deps.js'
import { type AuthEnv, type RequireAuthOptions, requireBearer } from './mcp/require-auth.js'
import type { ServerInfo } from './mcp/server.js'
import { checkToolScopes, type ToolDefinition } from './mcp/tools.js'
import { createServices } from './services.js'
import type { Store } from './store/store.js'
import type { AuthorizeUser } from './tokens/policy.js'

export interface McpAuthProxyOptions {
  /**
   * The configuration: a `Config`, or an environment-like record parsed with `loadConfig`
   * (the variable names of `.env.example`). `process.env` is never read implicitly: pass it.
   */
  readonly config: Config | Readonly<Record<string, string | undefined>>
  /**
   * The application's MCP tools, served at `/mcp` next to the built-ins. A tool's
   * `requiredScopes` are checked by the bearer gate before it runs (403 `insufficient_scope`
   * naming them, so clients step up); each must be one of `SCOPES`.
   */
  readonly tools?: readonly ToolDefinition[]
  /** Serve the built-in `whoami` and `upstream_userinfo` tools; default true. */
  readonly builtinTools?: boolean
  /** What the MCP server reports in `initialize`; default `mcp-oauth-proxy`. */
  readonly serverInfo?: ServerInfo
  /**
   * The application's say on each user signing in, after `ALLOWED_EMAIL_DOMAINS`,
   * `ALLOWED_ORG_CODES` and `REQUIRED_PERMISSIONS`: `true` lets them in; `false` or a reason
   * sends the client `access_denied`.
   */
  readonly authorizeUser?: AuthorizeUser
  /**
   * Where clients, grants and keys live. Default: Redis when one is configured, else in
   * memory. A store passed here is the caller's to close.
   */
  readonly store?: Store
  /** Default: JSON logs on stdout at `LOG_LEVEL`. */
  readonly logger?: Logger
  /** Outbound HTTP to the identity provider; default the global `fetch`. */
  readonly fetch?: typeof fetch
  /** Time as the proxy sees it (token lifetimes, expiry, TTLs of the memory store); default the wall clock. */
  readonly clock?: Clock
  /** Where audit events go instead of `AUDIT_LOG` or the log stream. */
  readonly auditDestination?: DestinationStream
}

export interface McpAuthProxy {
  /**
   * Every route of the proxy (discovery, `/register`, `/authorize`, `/callback`, `/token`,
   * `/revoke`, `/mcp`, health) as one Hono app. Serve it, add routes to it, or mount it at the
   * root of your own app with `app.route('/', proxy.app)`: the routes hang under `PUBLIC_URL`,
   * which is an origin, so the proxy cannot live under a sub-path.
   */
  readonly app: Hono
  readonly config: Config
  readonly deps: Deps
  /**
   * Middleware for the application's own routes that accepts the same access tokens as
   * `/mcp`, with the same verification, revocation check and challenges, and sets
   * `c.get('auth')` (`RequestAuth`). `scopes`, each one of `SCOPES`, are required of the
   * token (403 `insufficient_scope` otherwise).
   */
  requireAuth(options?: RequireAuthOptions): MiddlewareHandler<AuthEnv>
  /** Closes the store, unless it was passed in `options.store`. Idempotent. */
  close(): Promise<void>
}

/**
 * Library mode: the whole proxy as a Hono app to embed, with the application's own MCP tools
 * and authorization decision, and a bearer middleware for its other routes. The services are
 * built as the CLI server builds them (`createServices`), from `options.config` and the parts
 * passed in `options` only.
 */
export async function createMcpAuthProxy(options: McpAuthProxyOptions): Promise<McpAuthProxy> {
  const config = isConfig(options.config) ? options.config : loadConfig(options.config)
  const tools = options.tools ?? []
  // Before any service starts, so a bad tool list leaves nothing open.
  checkToolScopes(config, tools)

  const deps = await createServices(config, {
    store: options.store,
    logger: options.logger,
    fetch: options.fetch,
    clock: options.clock,
    authorizeUser: options.authorizeUser,
    auditDestination: options.auditDestination,
  })
  const ownsStore = !options.store
  const shutdown = new AbortController()
  let closing: Promise<void> | undefined
  const close = () => {
    // MCP sessions end first, so their event streams do not keep the host's server open.
    shutdown.abort()
    deps.upstreamHealth.stop()
    closing ??= ownsStore ? deps.store.close() : Promise.resolve()
    return closing
  }

  let app: Hono
  try {
    app = createApp(deps, {
      mcp: {
        tools,
        builtinTools: options.builtinTools,
        serverInfo: options.serverInfo,
        signal: shutdown.signal,
      },
    })
  } catch (error) {
    await close()
    throw error
  }
  return {
    app,
    config,
    deps,
    requireAuth(gateOptions) {
      // The services /mcp uses: one verifier, one per-grant upstream-token cache, one audit
      // trail and one set of metrics for the proxy's routes and the application's.
      const gate = requireBearer(deps, gateOptions)
      return async function requireAuth(c, next) {
        if (requestIdOf(c) !== undefined) return gate(c, next)
        // A host route registered before `proxy.app` runs ahead of the proxy's middleware:
        // give it the correlation id the proxy's routes get, for its audit events.
        return correlate(c, async () => {
          const refused = await gate(c, next)
          if (refused) c.res = refused
        })
      }
    },
    close,
  }
}

function isConfig(value: McpAuthProxyOptions['config']): value is Config {
  return (value as { publicUrl?: unknown }).publicUrl instanceof URL
}

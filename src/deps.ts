import type { Logger } from 'pino'
import type { Audit } from './audit.js'
import type { Clock } from './clock.js'
import type { Config } from './config.js'
import type { UpstreamTokenSource } from './mcp/upstream-token.js'
import type { Metrics } from './metrics.js'
import type { MetadataDocumentOptions } from './oauth/client-metadata-document.js'
import type { Clients } from './oauth/clients.js'
import type { Store } from './store/store.js'
import type { Keys } from './tokens/keys.js'
import type { AuthorizeUser } from './tokens/policy.js'
import type { AccessTokenVerifier } from './tokens/verifier.js'
import type { UpstreamHealth } from './upstream/health.js'
import type { Upstream } from './upstream/upstream.js'

/**
 * Everything a route or protocol function may touch, built once by `createServices`
 * (src/services.ts) and passed down, frozen and complete: no module keeps state of its own, so
 * two apps in one process share nothing they were not handed.
 */
export interface Deps {
  readonly config: Config
  /** The store, its failures counted in `metrics`. */
  readonly store: Store
  readonly keys: Keys
  readonly clock: Clock
  readonly logger: Logger
  /** Outbound HTTP to the upstream IdP, injected so tests can add faults around a real peer. */
  readonly fetch: typeof fetch
  /** How Client ID Metadata Documents are fetched; tests lift the address guard here. */
  readonly metadataDocuments: Partial<MetadataDocumentOptions>
  /** The upstream identity provider, every call timed and counted in `metrics`. */
  readonly upstream: Upstream
  /** Whether the upstream's discovery works; `/readyz` reports it. */
  readonly upstreamHealth: UpstreamHealth
  /** Library mode: the embedding application's own say on each user (after the config policy). */
  readonly authorizeUser: AuthorizeUser
  /**
   * The resource server's cached access-token verifier, one per instance: the MCP endpoint,
   * `requireAuth()` and `/revoke` (which evicts what it revokes) share it.
   */
  readonly verifier: AccessTokenVerifier
  /**
   * Callers' upstream access tokens, renewed when expired: one per-grant cache for `/mcp`,
   * forward mode and `requireAuth()` alike.
   */
  readonly upstreamTokens: UpstreamTokenSource
  /** The client registry: registered, static and metadata-document clients. */
  readonly clients: Clients
  /** Records security events in the audit trail and moves their counters in `metrics`. */
  readonly audit: Audit
  /** Prometheus metrics of this instance. */
  readonly metrics: Metrics
}

import type { DestinationStream, Logger } from 'pino'
import type { Audit } from './audit.js'
import type { Clock } from './clock.js'
import type { Config } from './config.js'
import type { Metrics } from './metrics.js'
import type { MetadataDocumentOptions } from './oauth/client-metadata-document.js'
import type { AuthorizeUser } from './oauth/policy.js'
import type { Store } from './store/store.js'
import type { Keys } from './tokens/keys.js'
import type { AccessTokenVerifier } from './tokens/verifier.js'
import type { UpstreamHealth } from './upstream/health.js'
import type { Upstream } from './upstream/upstream.js'

/**
 * Everything a route or protocol function may touch, built once by `server.ts` (or a test)
 * and passed down: no module keeps state of its own (STYLE.md §4).
 */
export interface Deps {
  readonly config: Config
  readonly store: Store
  readonly keys: Keys
  readonly clock: Clock
  readonly logger: Logger
  /** Outbound HTTP to the upstream IdP, injected so tests can add faults around a real peer. */
  readonly fetch: typeof fetch
  /** How Client ID Metadata Documents are fetched; tests lift the address guard here. */
  readonly metadataDocuments?: Partial<MetadataDocumentOptions>
  /** The upstream identity provider; without it the sign-in routes are not mounted. */
  readonly upstream?: Upstream
  /** Whether the upstream's discovery works; `/readyz` reports it. */
  readonly upstreamHealth?: UpstreamHealth
  /** Library mode: the embedding application's own say on each user (after the config policy). */
  readonly authorizeUser?: AuthorizeUser
  /**
   * The resource server's cached access-token verifier; `createApp` makes one when absent and
   * shares it between the MCP bearer gate and `/revoke` (which evicts what it revokes).
   */
  readonly verifier?: AccessTokenVerifier
  /** Records security events; `createApp` provides it (STYLE: identifiers only, never secrets). */
  readonly audit?: Audit
  /** Prometheus metrics; `createApp` makes them when absent. */
  readonly metrics?: Metrics
  /** Where audit lines go instead of `AUDIT_LOG` or the log stream (tests capture them here). */
  readonly auditDestination?: DestinationStream
}

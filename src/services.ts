import type { DestinationStream, Logger } from 'pino'
import { type Audit, createAuditTrail } from './audit.js'
import { type Clock, systemClock } from './clock.js'
import { type Config, issuerVariable } from './config.js'
import type { Deps } from './deps.js'
import { createLogger } from './logger.js'
import { createUpstreamTokenSource } from './mcp/upstream-token.js'
import { createMetrics } from './metrics.js'
import type { MetadataDocumentOptions } from './oauth/client-metadata-document.js'
import { createClients } from './oauth/clients.js'
import { createMemoryStore } from './store/memory.js'
import { createRedisStore } from './store/redis.js'
import type { Store } from './store/store.js'
import { createKeys } from './tokens/keys.js'
import { type AuthorizeUser, admitEveryone } from './tokens/policy.js'
import { createAccessTokenVerifier } from './tokens/verifier.js'
import { createUpstreamHealth } from './upstream/health.js'
import { createOidcUpstream } from './upstream/oidc.js'

/** The services of one proxy instance: what every route receives. */
export type Services = Deps

/**
 * The parts a caller may supply instead of having them built from the configuration: the only
 * way tests, the demo and library users swap a part.
 */
export interface ServiceOverrides {
  /**
   * Where clients, grants and keys live. Default: Redis when one is configured, else in
   * memory. A store passed here is the caller's to close.
   */
  readonly store?: Store | undefined
  /** Outbound HTTP to the identity provider; default the global `fetch`. */
  readonly fetch?: typeof fetch | undefined
  /** Default: the wall clock. */
  readonly clock?: Clock | undefined
  /** Default: JSON logs on stdout at `LOG_LEVEL`. */
  readonly logger?: Logger | undefined
  /** How Client ID Metadata Documents are fetched (tests lift the address guard here). */
  readonly metadataDocuments?: Partial<MetadataDocumentOptions> | undefined
  /** The embedding application's say on each user signing in; default: everyone the config lets in. */
  readonly authorizeUser?: AuthorizeUser | undefined
  /** Where audit lines go instead of `AUDIT_LOG` or the log stream. */
  readonly auditDestination?: DestinationStream | undefined
}

/**
 * The composition root: builds every stateful collaborator of one instance once, from
 * `config` (never from `process.env`) and `overrides`, and returns them frozen. The store and
 * the upstream come instrumented, so whatever uses them — a route, `/mcp`, an embedding
 * application's `requireAuth()` route — is counted in the same metrics, and the one audit
 * trail records its events. Keys are generated once and kept in the store when not configured;
 * upstream discovery never blocks start-up, so the proxy starts (and serves discovery) while
 * the IdP is down; `upstreamHealth` watches it and says why it fails. The store belongs to the caller, who closes it (`services.store.close()`); a store
 * created here is closed again if the keys cannot be set up.
 */
export async function createServices(
  config: Config,
  overrides: ServiceOverrides = {},
): Promise<Services> {
  const logger = overrides.logger ?? createLogger(config.logLevel)
  const clock = overrides.clock ?? systemClock
  const metrics = createMetrics()
  const raw: Store =
    overrides.store ??
    (config.redis ? await createRedisStore(config.redis) : createMemoryStore(clock))
  const store = metrics.instrumentStore(raw)
  try {
    const keys = await createKeys({
      store,
      clock,
      signingKey: config.signingKey,
      signingKeyPrevious: config.signingKeyPrevious,
      encryptionKey: config.encryptionKey,
      rotationSeconds: config.keyRotationSeconds,
      keysSecret: config.keysSecret,
      upstreamClientSecret: config.upstream.clientSecret,
    })
    const outbound = overrides.fetch ?? fetch
    const oidc = createOidcUpstream({
      settings: config.upstream,
      publicUrl: config.publicUrl,
      timeoutSeconds: config.upstreamTimeoutSeconds,
      fetch: outbound,
      logger,
      clock,
    })
    const upstream = metrics.instrumentUpstream(oidc)
    // Started by the server once it listens; a /readyz probe checks again while not ok.
    const upstreamHealth = createUpstreamHealth({
      upstream: oidc,
      variable: issuerVariable(config.upstream.kind),
      issuer: config.upstream.issuer,
      logger,
    })
    const trail = createAuditTrail(logger, config.auditLog, overrides.auditDestination)
    const audit: Audit = (event, fields, requestId) => {
      trail.audit(event, fields, requestId)
      metrics.observe(event, fields)
    }
    const base = {
      config,
      store,
      keys,
      clock,
      logger,
      fetch: outbound,
      upstream,
      upstreamHealth,
      metrics,
      audit,
      metadataDocuments: overrides.metadataDocuments ?? {},
      authorizeUser: overrides.authorizeUser ?? admitEveryone,
    }
    const verifier = createAccessTokenVerifier(base)
    return Object.freeze({
      ...base,
      verifier,
      upstreamTokens: createUpstreamTokenSource({ ...base, verifier }),
      clients: createClients(base),
    })
  } catch (error) {
    if (!overrides.store) await store.close()
    throw error
  }
}

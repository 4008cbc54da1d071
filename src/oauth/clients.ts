import { randomToken, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { storeKey } from '../store/keys.js'
import type { Client } from './client.js'
import type { ValidatedClientMetadata } from './client-metadata.js'
import {
  createMetadataDocumentFetches,
  DEFAULT_METADATA_DOCUMENT_OPTIONS,
  isMetadataDocumentUrl,
  isRefusedMetadataDocumentUrl,
  resolveMetadataDocumentClient,
} from './client-metadata-document.js'
import { type AssertionVerifier, createAssertionVerifier } from './private-key-jwt.js'

/** Finds and registers clients, whichever way they were registered. */
export interface Clients {
  /**
   * The client for `clientId`: static (configuration), a Client ID Metadata Document (an https
   * URL, fetched and cached) or one registered through `/register`; undefined when unknown.
   * A metadata document that cannot be used throws `invalid_client` saying why.
   */
  find(clientId: string): Promise<Client | undefined>
  /** Stores a new registration; the secret, for confidential clients, is returned only here. */
  register(metadata: ValidatedClientMetadata): Promise<{ client: Client; clientSecret?: string }>
  /**
   * Marks a dynamic client as in use, extending its life to the full idle TTL; called for a
   * completed sign-in and a successful token request, never for a mere `/authorize`. Costs no
   * store round trip for a client `find` returned that was touched within the day.
   */
  touch(client: Client): Promise<void>
  /** Checks a `private_key_jwt` assertion against the client's keys (RFC 7523 §3). */
  verifyAssertion: AssertionVerifier['verify']
}

// A registration nobody has used yet lives a day; use extends it to CLIENT_IDLE_TTL_SECONDS.
// Clients that register on every connect (claude.ai sends two registrations per connect) thus
// leave behind only what a day of registrations holds, and the rate limit bounds that.
const UNUSED_TTL_SECONDS = 86_400
const TOUCH_INTERVAL_SECONDS = 86_400

interface StoredClient extends Client {
  touchedAt: number
}

const { client: clientKey, clientDedupe: dedupeKey } = storeKey

/**
 * The client registry over the store, secrets kept only as SHA-256 hashes (a store leak gives
 * away no credential). Identical
 * registrations of public clients share one `client_id`: a public client id is not a secret,
 * and hosted clients register the same metadata for every user.
 */
export function createClients(
  deps: Pick<Deps, 'config' | 'store' | 'clock' | 'logger' | 'metadataDocuments'>,
): Clients {
  const { config, store, clock } = deps
  const fetches = createMetadataDocumentFetches({
    ...DEFAULT_METADATA_DOCUMENT_OPTIONS,
    ...deps.metadataDocuments,
  })
  // When each client `find` returned was last touched, so `touch` need not read it again.
  const touchedAtOf = new WeakMap<Client, number>()
  const idleTtl = config.clientIdleTtlSeconds
  const unusedTtl = Math.min(UNUSED_TTL_SECONDS, idleTtl)
  /** A new dynamic registration under a fresh id, kept only briefly until it is first used. */
  const storeNew = async (registration: Omit<Client, 'clientId' | 'source'>): Promise<Client> => {
    const client: Client = { ...registration, clientId: randomToken(16), source: 'dynamic' }
    await store.put(clientKey(client.clientId), { ...client, touchedAt: 0 }, unusedTtl)
    return client
  }
  const statics = new Map(
    config.staticClients.map((settings): [string, Client] => [
      settings.clientId,
      {
        clientId: settings.clientId,
        source: 'static',
        clientSecretHash: settings.clientSecret ? sha256(settings.clientSecret) : undefined,
        tokenEndpointAuthMethod: settings.jwks
          ? 'private_key_jwt'
          : settings.clientSecret
            ? 'client_secret_basic'
            : 'none',
        jwks: settings.jwks,
        applicationType: 'native',
        redirectUris: settings.redirectUris,
        grantTypes: settings.grantTypes as Client['grantTypes'],
        responseTypes: ['code'],
        clientName: settings.clientName,
        clientIdIssuedAt: 0,
      },
    ]),
  )

  const assertions = createAssertionVerifier(deps)

  return {
    verifyAssertion: (client, assertion, type) => assertions.verify(client, assertion, type),

    async find(clientId) {
      const fixed = statics.get(clientId)
      if (fixed) return fixed
      if (
        config.clientIdMetadataDocuments &&
        (isMetadataDocumentUrl(clientId) || isRefusedMetadataDocumentUrl(clientId))
      ) {
        return resolveMetadataDocumentClient(clientId, { ...deps, fetches }, deps.metadataDocuments)
      }
      if (clientId.length > 200) return undefined
      const stored = await store.get<StoredClient>(clientKey(clientId))
      if (!stored) return undefined
      const client = withoutBookkeeping(stored)
      touchedAtOf.set(client, stored.touchedAt)
      return client
    },

    async register(metadata) {
      const now = Math.floor(clock.now())
      const confidential = metadata.tokenEndpointAuthMethod !== 'none'
      if (!confidential) {
        const fingerprint = sha256(canonicalJson(metadata))
        const existingId = await store.get<string>(dedupeKey(fingerprint))
        const existing = existingId && (await store.get<StoredClient>(clientKey(existingId)))
        if (existing) return { client: withoutBookkeeping(existing) }
        const client = await storeNew({ ...metadata, clientIdIssuedAt: now })
        await store.put(dedupeKey(fingerprint), client.clientId, unusedTtl)
        return { client }
      }
      if (metadata.tokenEndpointAuthMethod === 'private_key_jwt') {
        // Its keys are its credentials: no secret, and no sharing of ids between registrations.
        return { client: await storeNew({ ...metadata, clientIdIssuedAt: now }) }
      }
      const clientSecret = randomToken(32)
      const client = await storeNew({
        ...metadata,
        clientSecretHash: sha256(clientSecret),
        clientIdIssuedAt: now,
      })
      return { client, clientSecret }
    },

    async touch(client) {
      if (client.source !== 'dynamic') return
      const known = touchedAtOf.get(client)
      if (known !== undefined && clock.now() - known < TOUCH_INTERVAL_SECONDS) return
      const stored = await store.get<StoredClient>(clientKey(client.clientId))
      if (!stored || clock.now() - stored.touchedAt < TOUCH_INTERVAL_SECONDS) return
      const touchedAt = Math.floor(clock.now())
      await store.put(clientKey(client.clientId), { ...stored, touchedAt }, idleTtl)
      if (stored.tokenEndpointAuthMethod === 'none') {
        const {
          clientId: _id,
          clientIdIssuedAt: _at,
          source: _s,
          touchedAt: _t,
          ...metadata
        } = stored
        await store.put(dedupeKey(sha256(canonicalJson(metadata))), client.clientId, idleTtl)
      }
    },
  }
}

function withoutBookkeeping({ touchedAt: _touchedAt, ...client }: StoredClient): Client {
  return client
}

/** JSON with sorted keys and no undefined members, so equal metadata hashes equally. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, member) =>
    member && typeof member === 'object' && !Array.isArray(member)
      ? Object.fromEntries(
          Object.entries(member)
            .filter(([, v]) => v !== undefined)
            .sort(([a], [b]) => (a < b ? -1 : 1)),
        )
      : member,
  )
}

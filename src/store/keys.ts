/**
 * Every key the proxy writes to its store, in one place: its shape, its hash tag and its TTL
 * rule. Nothing else in `src/` spells a key.
 *
 * Redis Cluster hashes only the part of a key inside its first `{…}` (the hash tag) when one
 * is there, and refuses a script or transaction that names keys of two slots (`CROSSSLOT`).
 * So keys written or read together in one step share a tag: a grant with its refresh tokens
 * and its lock (`{<grant id>}`, which a refresh token carries in clear so it finds its grant
 * without a lookup in another slot), a code with its one-shot marker (`{<sha256(code)>}`).
 * Every other key stands alone and spreads over the slots by its whole name.
 */
export const storeKey = {
  /**
   * Signing keys (current, previous) and the encryption key, shared by the fleet, sealed under
   * the key-encryption key (`KEYS_SECRET` or the upstream client secret).
   */
  keySet: () => 'keys:v2',
  /** Where versions before 2 kept the key set in clear; sealed into `keySet` and deleted. */
  legacyKeySet: () => 'keys:v1',
  /** Held by the one instance that rotates the signing key. */
  keyRotation: () => 'keys:v2:rotating',
  /** A registered client (secret as SHA-256). */
  client: (clientId: string) => `client:${clientId}`,
  /** The public client id registered for identical metadata. */
  clientDedupe: (fingerprint: string) => `client-dedupe:${fingerprint}`,
  /** A validated Client ID Metadata Document, or why it was refused, cached. */
  metadataDocument: (urlHash: string) => `cimd:${urlHash}`,
  /**
   * A consent form that was answered, by the hash of its CSRF token: each is answered once.
   * The pending request itself rides sealed in the form, never in the store.
   */
  consentAnswered: (csrfTokenHash: string) => `consent-answered:${csrfTokenHash}`,
  /** The upstream leg of a sign-in, found by the hash of its `state`. */
  transaction: (stateHash: string) => `tx:${stateHash}`,
  /** An authorization code, by its hash; tagged with its marker's slot. */
  code: (codeHash: string) => `code:{${codeHash}}`,
  /** The one-shot marker of a redeemed code (its grant id), for replay detection. */
  usedCode: (codeHash: string) => `code-used:{${codeHash}}`,
  /** A user's grant: identity, sealed upstream tokens, refresh family, live access-token ids. */
  grant: (grantId: string) => `grant:{${grantId}}`,
  /** A refresh token of a grant's family, by its hash, in its grant's slot. */
  refreshToken: (grantId: string, tokenHash: string) => `refresh:{${grantId}}:${tokenHash}`,
  /** One refresh, exchange or revocation of a grant's family at a time, fleet-wide. */
  grantLock: (grantId: string) => `lock:grant:{${grantId}}`,
  /** A revoked access token, by its `jti`. */
  revokedAccessToken: (jti: string) => `revoked:${jti}`,
  /** A fixed-window rate-limit counter of one limit, one caller and one minute. */
  rate: (name: string, caller: string, minute: number | string) =>
    `rate:${name}:${caller}:${minute}`,
  /**
   * A user's grants: a sorted set of grant ids scored by expiry, updated in single-key steps
   * beside the grants, so it may name grants already gone (readers check and prune).
   */
  userGrants: (subHash: string) => `user-grants:${subHash}`,
  /** The grants signed in through one upstream session (`sid`), for a logout naming only it. */
  sessionGrants: (sidHash: string) => `session-grants:${sidHash}`,
  /** A signed-in `/account` page, by the hash of its cookie's value. */
  accountSession: (idHash: string) => `account:${idHash}`,
  /** A back-channel logout token acted on, by the hash of its issuer and `jti`. */
  logoutToken: (hash: string) => `logout-jti:${hash}`,
  /** A DPoP proof already presented, by the hash of its key's thumbprint and its `jti`. */
  dpopProof: (proofHash: string) => `dpop-jti:${proofHash}`,
  /** A `private_key_jwt` client assertion already used, by the hash of client id and `jti`. */
  clientAssertion: (assertionHash: string) => `assertion-jti:${assertionHash}`,
  /** A `private_key_jwt` client's JWK Set fetched from its `jwks_uri`, cached. */
  clientJwks: (uriHash: string) => `client-jwks:${uriHash}`,
  /** Held for a minute after a `jwks_uri` is fetched again for an unknown key. */
  clientJwksRefetch: (uriHash: string) => `client-jwks-refetch:${uriHash}`,
} as const

/** How long each key lives (everything in the store expires). */
export const KEY_TTL_SECONDS = {
  /** The signing-key rotation lock: long enough for one rotation, short for a crashed holder. */
  keyRotation: 30,
  /** A redeemed code's marker: recognises a replay well after the code itself expired. */
  usedCode: 600,
  /** A rate-limit window. */
  rate: 60,
  /** A refused Client ID Metadata Document, before it is fetched again. */
  metadataDocumentRefusal: 60,
  /** An `/account` session, however active: it can end grants. */
  accountSession: 900,
  /** A logout token's replay marker: past it, the token is too old to be accepted anyway. */
  logoutToken: 600,
  /** How long index entries outlive their grant's current expiry (renewed about that often). */
  grantIndexSlack: 86_400,
  /** One re-fetch of a client's `jwks_uri` a minute, whatever kids its assertions name. */
  clientJwksRefetch: 60,
} as const

/** One row of the README's key table. */
export interface KeyRow {
  /** The key's shape, placeholders in angle brackets. */
  readonly key: string
  /** The hash tag that decides its Redis Cluster slot; `—` when the whole key does. */
  readonly hashTag: string
  readonly what: string
  readonly ttl: string
}

/** The README's Redis key table, built from the shapes above (a test compares the two). */
export const KEY_TABLE: readonly KeyRow[] = [
  {
    key: storeKey.keySet(),
    hashTag: '—',
    what: 'signing keys (current, previous) and the encryption key, sealed under the key-encryption key (`KEYS_SECRET` or the upstream client secret); `keys:v1`, their clear form in older versions, is sealed into it and deleted',
    ttl: '2 × `KEY_ROTATION_SECONDS`, renewed at rotation',
  },
  {
    key: storeKey.keyRotation(),
    hashTag: '—',
    what: 'one instance rotates',
    ttl: `${KEY_TTL_SECONDS.keyRotation} s`,
  },
  {
    key: storeKey.client('<client_id>'),
    hashTag: '—',
    what: 'a registered client; secret as SHA-256',
    ttl: '1 day until first use (a completed sign-in or token request; `/authorize` alone is not use), then `CLIENT_IDLE_TTL_SECONDS`',
  },
  {
    key: storeKey.clientDedupe('<sha256(metadata)>'),
    hashTag: '—',
    what: 'the public client id for identical metadata',
    ttl: 'as its client',
  },
  {
    key: storeKey.metadataDocument('<sha256(url)>'),
    hashTag: '—',
    what: 'a validated Client ID Metadata Document, or why it was refused',
    ttl: `its \`max-age\` (default 5 min, at most 1 day); a refusal ${KEY_TTL_SECONDS.metadataDocumentRefusal / 60} min`,
  },
  {
    key: storeKey.consentAnswered('<sha256(csrf token)>'),
    hashTag: '—',
    what: 'a consent form that was answered (the request itself rides sealed in the form, never in the store)',
    ttl: 'what was left of `TRANSACTION_TTL_SECONDS`',
  },
  {
    key: storeKey.transaction('<sha256(state)>'),
    hashTag: '—',
    what: 'the upstream leg: nonce, PKCE verifier, client request',
    ttl: '`TRANSACTION_TTL_SECONDS`',
  },
  {
    key: storeKey.code('<sha256(code)>'),
    hashTag: '`<sha256(code)>`',
    what: 'an authorization code',
    ttl: '`AUTH_CODE_TTL_SECONDS`',
  },
  {
    key: storeKey.usedCode('<sha256(code)>'),
    hashTag: '`<sha256(code)>`',
    what: 'one-shot gate and replay detection',
    ttl: `${KEY_TTL_SECONDS.usedCode / 60} min`,
  },
  {
    key: storeKey.grant('<id>'),
    hashTag: '`<id>`',
    what: "a user's grant: identity, sealed upstream tokens, refresh family, live access-token ids",
    ttl: '`REFRESH_TOKEN_TTL_SECONDS`, renewed on refresh',
  },
  {
    key: storeKey.refreshToken('<grant id>', '<sha256(token)>'),
    hashTag: '`<grant id>`',
    what: 'a refresh token of a family (rotated ones keep their sealed successor for the grace)',
    ttl: '`REFRESH_TOKEN_TTL_SECONDS`',
  },
  {
    key: storeKey.revokedAccessToken('<jti>'),
    hashTag: '—',
    what: 'a revoked access token',
    ttl: 'until its `exp`',
  },
  {
    key: storeKey.grantLock('<id>'),
    hashTag: '`<id>`',
    what: 'one refresh / exchange / revocation of a family at a time, fleet-wide',
    ttl: '30 s',
  },
  {
    key: storeKey.rate('<name>', '<key>', '<minute>'),
    hashTag: '—',
    what: 'fixed-window rate-limit counter',
    ttl: `${KEY_TTL_SECONDS.rate} s`,
  },
  {
    key: storeKey.userGrants('<sha256(sub)>'),
    hashTag: '—',
    what: "sorted set: a user's grant ids by expiry (may name grants already gone; listing prunes them)",
    ttl: "its last member's: `REFRESH_TOKEN_TTL_SECONDS` + 1 day, renewed about daily",
  },
  {
    key: storeKey.sessionGrants('<sha256(sid)>'),
    hashTag: '—',
    what: 'sorted set: the grant ids signed in through one upstream session',
    ttl: 'as above',
  },
  {
    key: storeKey.accountSession('<sha256(cookie)>'),
    hashTag: '—',
    what: 'a signed-in `/account` page: subject, CSRF token',
    ttl: `${KEY_TTL_SECONDS.accountSession / 60} min`,
  },
  {
    key: storeKey.logoutToken('<sha256(iss jti)>'),
    hashTag: '—',
    what: 'a back-channel logout token acted on (a replay is refused)',
    ttl: `${KEY_TTL_SECONDS.logoutToken / 60} min`,
  },
  {
    key: storeKey.dpopProof('<sha256(jkt:jti)>'),
    hashTag: '—',
    what: 'a DPoP proof already presented',
    ttl: "the proof's acceptance window (≤ 3 min)",
  },
  {
    key: storeKey.clientAssertion('<sha256(client_id:jti)>'),
    hashTag: '—',
    what: 'a client assertion already used',
    ttl: 'until its `exp` (+ 30 s)',
  },
  {
    key: storeKey.clientJwks('<sha256(jwks_uri)>'),
    hashTag: '—',
    what: "a `private_key_jwt` client's fetched JWK Set",
    ttl: 'its `max-age` (default 5 min, at most 1 day)',
  },
  {
    key: storeKey.clientJwksRefetch('<sha256(jwks_uri)>'),
    hashTag: '—',
    what: 'one re-fetch a minute on an unknown key',
    ttl: `${KEY_TTL_SECONDS.clientJwksRefetch} s`,
  },
]

import { sha256 } from '../crypto.js'

/**
 * The store keys of sender-constrained tokens and key-based client authentication, in one
 * block: each is a single slot with a TTL (none outlives what it guards).
 *
 * | key | what | TTL |
 * |---|---|---|
 * | `dpop-jti:<sha256(jkt:jti)>` | a DPoP proof already presented (RFC 9449 §11.1) | the proof's acceptance window |
 * | `assertion-jti:<sha256(client_id:jti)>` | a client assertion already used (RFC 7523 §3) | until its `exp` |
 * | `jwks:<sha256(jwks_uri)>` | a client's fetched JWK Set | its `max-age` (default 5 min, at most 1 day) |
 * | `jwks-refetch:<sha256(jwks_uri)>` | one re-fetch a minute for an unknown `kid` | 60 s |
 */
export const proofKeys = {
  dpopJti: (jkt: string, jti: string) => `dpop-jti:${sha256(`${jkt}:${jti}`)}`,
  assertionJti: (clientId: string, jti: string) => `assertion-jti:${sha256(`${clientId}:${jti}`)}`,
  jwks: (uri: string) => `jwks:${sha256(uri)}`,
  jwksRefetch: (uri: string) => `jwks-refetch:${sha256(uri)}`,
} as const

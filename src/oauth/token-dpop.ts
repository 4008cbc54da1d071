import { OAuthError } from '../errors.js'
import type { DpopProof } from '../tokens/dpop.js'
import type { Grant } from '../tokens/grants.js'
import type { Client } from './client.js'

/** RFC 9449 §5: `DPoP` when the access token is bound to the proof's key, else `Bearer`. */
export function tokenType(proof: DpopProof | undefined): 'DPoP' | 'Bearer' {
  return proof ? 'DPoP' : 'Bearer'
}

/**
 * The grant to store when a code is exchanged: a public client's refresh-token family is
 * bound to the key of the exchange's proof (RFC 9449 §5), since nothing else ties a stolen
 * refresh token to that client. A confidential client's refresh tokens need its credentials
 * anyway and stay unbound (§5 leaves them to client authentication).
 */
export function bindRefreshFamily(
  grant: Grant,
  client: Client,
  refreshIssued: boolean,
  proof: DpopProof | undefined,
): Grant {
  if (!proof || !refreshIssued || client.tokenEndpointAuthMethod !== 'none') return grant
  return { ...grant, dpopJkt: proof.jkt }
}

/**
 * Refreshing a family bound to a key needs a proof of that key (RFC 9449 §5): a refresh
 * token copied without the key is worth nothing. Checked before anything rotates.
 */
export function requireRefreshBinding(grant: Grant, proof: DpopProof | undefined): void {
  if (!grant.dpopJkt) return
  if (!proof) {
    throw new OAuthError(
      'invalid_grant',
      'the refresh token is bound to a DPoP key; send a DPoP proof of that key',
    )
  }
  if (proof.jkt !== grant.dpopJkt) {
    throw new OAuthError(
      'invalid_grant',
      'the DPoP proof is signed by another key than the refresh token is bound to',
    )
  }
}

import { z } from 'zod'

/**
 * Algorithms accepted for client assertions (`token_endpoint_auth_signing_alg_values_supported`):
 * asymmetric only, since `private_key_jwt` is about a key the server never holds.
 */
export const ASSERTION_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** A client's public JWK Set (RFC 7517 §5): asymmetric public keys only, at most ten. */
export const PublicJwks = z.object({
  keys: z
    .array(
      z
        .looseObject({ kty: z.enum(['EC', 'RSA', 'OKP'], { error: 'kty must be EC, RSA or OKP' }) })
        .refine(
          (key) => !PRIVATE_MEMBERS.some((member) => member in key),
          'must hold public keys only (no private members)',
        ),
    )
    .min(1, 'must hold at least one key')
    .max(10, 'must hold at most ten keys'),
})

import {
  type CryptoKey,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors,
  importJWK,
  type JWK,
  jwtVerify,
} from 'jose'
import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import { safeEqual, sha256 } from '../crypto.js'
import { OAuthError } from '../errors.js'
import { storeKey } from '../store/keys.js'
import type { Store } from '../store/store.js'

/**
 * The JWS algorithms accepted for DPoP proofs (`dpop_signing_alg_values_supported`, RFC 9449
 * §5.1, §6): asymmetric only (§11.6 forbids MACs and `none`).
 */
export const DPOP_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const

/** A verified DPoP proof: the key it was signed with, by RFC 7638 thumbprint. */
export interface DpopProof {
  /** `base64url(SHA-256)` JWK thumbprint of the proof's public key: the token's `cnf.jkt`. */
  readonly jkt: string
}

/** What verifying a proof needs: the replay cache and the clock (and a key cache, if any). */
export type DpopDeps = {
  readonly store: Store
  readonly clock: Clock
  readonly keyCache?: DpopKeyCache | undefined
}

/** A proof's public key, imported, with its thumbprint and the algorithm it signs with. */
interface ProofKey {
  readonly key: CryptoKey
  readonly jkt: string
  readonly alg: string
}

/**
 * Public keys of recent proofs by their JWS header segment: a client sends the same header
 * (alg, typ, jwk) with every proof, and importing the key and hashing its thumbprint cost
 * more than verifying the signature. Bounded, least recently used first out.
 */
export type DpopKeyCache = Pick<LRUCache<string, ProofKey>, 'get' | 'set'>

/** A `DpopKeyCache` of at most `maxEntries` keys (one per gate, never shared between apps). */
export function createDpopKeyCache(maxEntries = 1000): DpopKeyCache {
  return new LRUCache<string, ProofKey>({ max: maxEntries })
}

// How far a proof's `iat` may lie from now, either way (RFC 9449 §11.1: a small window, with
// the jti cache covering all of it). Without server nonces this bounds a captured proof's use.
const PROOF_LEEWAY_SECONDS = 60
const MAX_PROOF_LENGTH = 8192
const MAX_JTI_LENGTH = 256
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']
const ASYMMETRIC_KTY = new Set(['EC', 'RSA', 'OKP'])

const invalidProof = (description: string, internal?: unknown) =>
  new OAuthError('invalid_dpop_proof', description, { status: 400, internal })

/**
 * Checks a DPoP proof JWT per RFC 9449 §4.3: `typ: dpop+jwt`, an alg of `DPOP_ALGS`, a public
 * `jwk` header (no private members), the signature by that key, `htm` and `htu` (query and
 * fragment ignored, compared after URL normalisation) of this request, `iat` within a minute
 * of now, `ath` = SHA-256 of `accessToken` when one is presented, and a `jti` never seen with
 * that key before (a single-slot key in the store, so replays fail across a fleet). Throws
 * `invalid_dpop_proof` (400) saying what is wrong; store failures propagate.
 */
export async function verifyDpopProof(
  deps: DpopDeps,
  proof: string,
  expected: { readonly htm: string; readonly htu: string; readonly accessToken?: string },
): Promise<DpopProof> {
  if (proof.length > MAX_PROOF_LENGTH) throw invalidProof('the DPoP proof is too long')
  const header = proof.slice(0, Math.max(0, proof.indexOf('.')))
  let proofKey = deps.keyCache?.get(header)
  if (!proofKey) {
    proofKey = await importProofKey(proof)
    deps.keyCache?.set(header, proofKey)
  }

  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(proof, proofKey.key, {
      typ: 'dpop+jwt',
      algorithms: [proofKey.alg],
      requiredClaims: ['jti', 'htm', 'htu', 'iat'],
      // iat is checked below against the window both ways; jose would only bound its age.
      currentDate: new Date(deps.clock.now() * 1000),
    }))
  } catch (error) {
    if (error instanceof errors.JWTClaimValidationFailed) {
      throw invalidProof(`the DPoP proof ${error.claim} claim is missing or invalid`, error)
    }
    throw invalidProof('the DPoP proof signature, type or key is invalid', error)
  }

  const { jti, htm, htu, iat, ath } = payload
  if (typeof jti !== 'string' || !jti || jti.length > MAX_JTI_LENGTH) {
    throw invalidProof('the DPoP proof jti claim is missing or invalid')
  }
  if (htm !== expected.htm) throw invalidProof(`the DPoP proof htm must be ${expected.htm}`)
  if (typeof htu !== 'string' || !sameTarget(htu, expected.htu)) {
    throw invalidProof(`the DPoP proof htu must be ${expected.htu}`)
  }
  const now = deps.clock.now()
  if (typeof iat !== 'number' || Math.abs(now - iat) > PROOF_LEEWAY_SECONDS) {
    throw invalidProof('the DPoP proof iat is not recent; sign a new proof')
  }
  if (expected.accessToken !== undefined) {
    if (typeof ath !== 'string' || !safeEqual(ath, sha256(expected.accessToken))) {
      throw invalidProof('the DPoP proof ath does not match the access token')
    }
  }
  const { jkt } = proofKey
  // Long enough that a proof leaves the cache only once its iat is outside the window.
  const remembered = await deps.store.add(
    storeKey.dpopProof(sha256(`${jkt}:${jti}`)),
    1,
    iat - now + 2 * PROOF_LEEWAY_SECONDS,
  )
  if (!remembered) throw invalidProof('the DPoP proof was already used; sign a new proof')
  return { jkt }
}

/**
 * The public key of a proof's `jwk` header (§4.3 steps 4-6): `typ`, an alg of `DPOP_ALGS`, an
 * asymmetric public key without private members; imported for that alg, thumbprint computed.
 */
async function importProofKey(proof: string): Promise<ProofKey> {
  let jwk: JWK
  let alg: string
  try {
    const header = decodeProtectedHeader(proof)
    // RFC 7515 §4.1.9: a media type, compared case-insensitively, `application/` optional.
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : ''
    if (typ.replace(/^application\//, '') !== 'dpop+jwt') {
      throw invalidProof('the DPoP proof typ must be dpop+jwt')
    }
    if (!DPOP_ALGS.includes(header.alg as (typeof DPOP_ALGS)[number])) {
      throw invalidProof(`the DPoP proof must be signed with one of ${DPOP_ALGS.join(', ')}`)
    }
    if (typeof header.jwk !== 'object' || header.jwk === null) {
      throw invalidProof('the DPoP proof has no jwk header')
    }
    jwk = header.jwk
    alg = header.alg as string
  } catch (error) {
    if (error instanceof OAuthError) throw error
    throw invalidProof('the DPoP proof is not a well-formed JWT', error)
  }
  if (PRIVATE_JWK_MEMBERS.some((member) => member in jwk)) {
    throw invalidProof('the DPoP proof jwk must be a public key, without private members')
  }
  if (!ASYMMETRIC_KTY.has(String(jwk.kty))) {
    throw invalidProof('the DPoP proof jwk must be an asymmetric public key')
  }
  try {
    const key = await importJWK({ ...jwk, ext: true }, alg)
    if (key instanceof Uint8Array || key.type !== 'public') throw new Error('not a public key')
    return { key, jkt: await calculateJwkThumbprint(jwk, 'sha256'), alg }
  } catch (error) {
    throw invalidProof('the DPoP proof signature, type or key is invalid', error)
  }
}

/** RFC 9449 §4.3 step 9: htu equals the request URI without query and fragment. */
function sameTarget(htu: string, expected: string): boolean {
  if (!URL.canParse(htu)) return false
  const a = new URL(htu)
  const b = new URL(expected)
  return a.origin === b.origin && a.pathname === b.pathname
}

/**
 * The DPoP proof of a `/token` request (RFC 9449 §5): undefined without a `DPoP` header
 * (unless `DPOP_REQUIRED`), otherwise the verified proof for `POST PUBLIC_URL/token`. Several
 * `DPoP` headers (joined with commas by the platform) are refused, as §4.3 step 1 asks.
 */
export async function dpopAtTokenEndpoint(
  deps: DpopDeps & { readonly config: Pick<Config, 'issuer' | 'dpopRequired'> },
  header: string | undefined,
): Promise<DpopProof | undefined> {
  if (header === undefined) {
    if (deps.config.dpopRequired) {
      throw invalidProof('this server issues DPoP-bound tokens only; send a DPoP proof')
    }
    return undefined
  }
  if (/[\s,]/.test(header.trim())) throw invalidProof('send exactly one DPoP header')
  return verifyDpopProof(deps, header.trim(), {
    htm: 'POST',
    htu: `${deps.config.issuer}/token`,
  })
}

/** The access token of an `Authorization` header and the scheme it came with. */
export interface SchemeToken {
  readonly scheme: 'Bearer' | 'DPoP'
  readonly token: string
}

// RFC 6750 §2.1 and RFC 9449 §7.1: the scheme name (case-insensitive), then a b64token.
const AUTHORIZATION = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i

/** The token of `Authorization: Bearer …` or `Authorization: DPoP …`, or undefined. */
export function authorizationToken(authorization: string | undefined): SchemeToken | undefined {
  const match = AUTHORIZATION.exec(authorization ?? '')
  if (!match?.[1] || !match[2]) return undefined
  return { scheme: match[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: match[2] }
}

/** A request at the resource server, as the DPoP check needs it. */
export interface ResourceRequest extends SchemeToken {
  readonly method: string
  /** The request URL as `PUBLIC_URL` names it: never built from the Host header. */
  readonly url: string
  /** The `DPoP` header, if any. */
  readonly proof: string | undefined
}

/** The resource server's verdict: go on, or a 401 with its `DPoP` challenge. */
export type DpopVerdict =
  | { readonly ok: true }
  | {
      readonly ok: false
      readonly error: 'invalid_token' | 'invalid_dpop_proof'
      readonly description: string
      /** `DPoP algs="…", error="…", error_description="…"`: goes next to the Bearer challenge. */
      readonly challenge: string
    }

/**
 * The resource server's DPoP check (RFC 9449 §7), after the token itself has been verified
 * (which a cache may skip; this never is). A token bound to a key (`cnf.jkt`) must come with
 * the `DPoP` scheme and a fresh proof of that key for this method and URL carrying `ath`;
 * an unbound token must not use the `DPoP` scheme, and with `DPOP_REQUIRED` is refused.
 */
export async function verifyDpopAtResource(
  deps: DpopDeps & { readonly config: Pick<Config, 'dpopRequired'> },
  request: ResourceRequest,
  claims: { readonly jkt?: string | undefined },
): Promise<DpopVerdict> {
  const refuse = (error: 'invalid_token' | 'invalid_dpop_proof', description: string) => ({
    ok: false as const,
    error,
    description,
    challenge: dpopChallenge(error, description),
  })
  if (!claims.jkt) {
    if (request.scheme === 'DPoP') {
      return refuse('invalid_token', 'this access token is not DPoP-bound; present it as Bearer')
    }
    if (deps.config.dpopRequired) {
      return refuse('invalid_token', 'this resource accepts DPoP-bound access tokens only')
    }
    return { ok: true }
  }
  if (request.scheme !== 'DPoP') {
    return refuse(
      'invalid_token',
      'this access token is DPoP-bound; present it with the DPoP scheme and a proof',
    )
  }
  if (request.proof === undefined) return refuse('invalid_dpop_proof', 'a DPoP proof is required')
  if (/[\s,]/.test(request.proof.trim())) {
    return refuse('invalid_dpop_proof', 'send exactly one DPoP header')
  }
  let proof: DpopProof
  try {
    proof = await verifyDpopProof(deps, request.proof.trim(), {
      htm: request.method,
      htu: request.url,
      accessToken: request.token,
    })
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_dpop_proof') {
      return refuse('invalid_dpop_proof', error.description ?? 'the DPoP proof is invalid')
    }
    throw error
  }
  if (proof.jkt !== claims.jkt) {
    return refuse(
      'invalid_token',
      'the DPoP proof is signed by another key than the token is bound to',
    )
  }
  return { ok: true }
}

/**
 * A `DPoP` challenge (RFC 9449 §7.1). Descriptions are this module's own ASCII sentences and
 * proof problems that echo no input, so they are safe inside a quoted-string as they are.
 */
function dpopChallenge(error: string, description: string): string {
  const safe = description.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')
  return `DPoP algs="${DPOP_ALGS.join(' ')}", error="${error}", error_description="${safe}"`
}

import { errors, type JWTVerifyGetKey, jwtVerify } from 'jose'
import { UpstreamError } from './upstream.js'

/** What a verified logout token says (OpenID Connect Back-Channel Logout 1.0 §2.4). */
export interface LogoutClaims {
  /** The issuer exactly as the upstream states it; `jti` is unique only within it. */
  readonly issuer: string
  readonly jti: string
  /** The user whose sessions ended, when the token names one. */
  readonly sub?: string | undefined
  /** The upstream session that ended, when the token names one. */
  readonly sid?: string | undefined
  /** Seconds since the epoch. */
  readonly iat: number
}

export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

/** How old a logout token may be: the upstream sends it as the session ends. */
export const LOGOUT_TOKEN_MAX_AGE_SECONDS = 300
const CLOCK_TOLERANCE_SECONDS = 30
// Asymmetric algorithms only: an HMAC "signature" keyed with a public key is the classic forgery.
const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]
const TYPES = new Set(['logout+jwt', 'application/logout+jwt', 'jwt'])

/**
 * Validates a logout token as §2.6 asks: signed by the upstream (its JWKS, an asymmetric
 * algorithm), `iss` the upstream, `aud` the proxy's client id, `iat` within
 * `LOGOUT_TOKEN_MAX_AGE_SECONDS`, the back-channel logout event, `sub` and/or `sid`, a `jti`,
 * and no `nonce` (which would make it an ID token). Replay of the `jti` is the caller's to
 * refuse. A token that fails is `UpstreamError('rejected', 'invalid_request', why)`; keys that
 * cannot be fetched are `UpstreamError('unavailable', …)`.
 */
export async function verifyLogoutToken(
  token: string,
  options: { issuer: string; clientId: string; keys: JWTVerifyGetKey; now: number },
): Promise<LogoutClaims> {
  const refuse = (why: string, cause?: unknown) =>
    new UpstreamError('rejected', 'invalid_request', `the logout token ${why}`, { cause })
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload']
  let typ: string | undefined
  // The key set's own failures (unreachable, not JSON) are told apart from the token's.
  const keys: JWTVerifyGetKey = async (header, input) => {
    try {
      return await options.keys(header, input)
    } catch (error) {
      if (
        error instanceof errors.JWKSNoMatchingKey ||
        error instanceof errors.JWKSMultipleMatchingKeys
      )
        throw error
      throw new KeysUnavailable(error)
    }
  }
  try {
    const verified = await jwtVerify(token, keys, {
      issuer: options.issuer,
      audience: options.clientId,
      algorithms: ALGORITHMS,
      requiredClaims: ['iat', 'jti', 'events'],
      maxTokenAge: LOGOUT_TOKEN_MAX_AGE_SECONDS,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(options.now * 1000),
    })
    payload = verified.payload
    typ = verified.protectedHeader.typ
  } catch (error) {
    throw classify(error, refuse)
  }
  if (typ !== undefined && !TYPES.has(typ.toLowerCase())) throw refuse(`has type ${typ}`)
  const events = payload.events
  const event =
    typeof events === 'object' && events !== null
      ? (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT]
      : undefined
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    throw refuse('has no back-channel logout event')
  if (payload.nonce !== undefined) throw refuse('carries a nonce')
  const sub = nonEmpty(payload.sub)
  const sid = nonEmpty(payload.sid)
  if (payload.sub !== undefined && sub === undefined) throw refuse('has an invalid sub')
  if (payload.sid !== undefined && sid === undefined) throw refuse('has an invalid sid')
  if (!sub && !sid) throw refuse('names neither sub nor sid')
  const jti = nonEmpty(payload.jti)
  if (!jti) throw refuse('has an invalid jti')
  return { issuer: options.issuer, jti, sub, sid, iat: payload.iat as number }
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

class KeysUnavailable extends Error {
  constructor(cause: unknown) {
    super('the upstream JWKS could not be fetched', { cause })
  }
}

function classify(error: unknown, refuse: (why: string, cause?: unknown) => UpstreamError) {
  if (error instanceof KeysUnavailable)
    return new UpstreamError('unavailable', 'temporarily_unavailable', error.message, {
      cause: error.cause,
    })
  if (error instanceof errors.JWTExpired)
    return refuse(error.claim === 'iat' ? 'is too old' : 'has expired', error)
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return refuse(`has no ${error.claim} claim`, error)
    if (error.claim === 'iat') return refuse('is issued in the future', error)
    return refuse(`has an unacceptable ${error.claim} claim`, error)
  }
  if (
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys
  )
    return refuse('is not signed by the identity provider', error)
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse('uses a refused algorithm', error)
  return refuse('is malformed', error)
}

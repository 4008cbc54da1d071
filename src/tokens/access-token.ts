import { sign } from 'node:crypto'
import { decodeProtectedHeader, errors, jwtVerify } from 'jose'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import { randomToken } from '../crypto.js'
import { OAuthError } from '../errors.js'
import type { Keys, SigningKey } from './keys.js'
import { seal, unseal } from './seal.js'

/** Who holds the token: a person through a client, or an agent through client credentials. */
export type Actor = 'user' | 'agent'

/** Upstream claims that matter for authorization, carried in the clear. */
export interface IdentityClaims {
  readonly email?: string | undefined
  readonly orgCode?: string | undefined
  readonly orgCodes?: readonly string[] | undefined
  readonly orgId?: string | undefined
  readonly permissions?: readonly string[] | undefined
}

/** What rides encrypted inside the access token: the client holds it but cannot read it. */
export interface SealedUpstream {
  /** The upstream access token. */
  readonly at: string
  /** When it expires (seconds since the epoch). */
  readonly exp: number
  /** The grant it belongs to, for a transparent upstream refresh; absent for agents. */
  readonly gid?: string | undefined
}

export interface AccessTokenParams extends IdentityClaims {
  readonly sub: string
  readonly clientId: string
  readonly scopes: readonly string[]
  readonly actor: Actor
  readonly upstream: SealedUpstream
  /** Whether the proxy can refresh the upstream token without the client (a refresh token). */
  readonly upstreamRefreshable: boolean
  /** The DPoP key the token is bound to (RFC 9449 §6: `cnf.jkt`); absent for Bearer tokens. */
  readonly jkt?: string | undefined
}

/** A verified access token, with the upstream token unsealed. */
export interface VerifiedAccessToken extends IdentityClaims {
  readonly token: string
  readonly sub: string
  readonly clientId: string
  readonly scopes: readonly string[]
  readonly actor: Actor
  readonly jti: string
  readonly issuedAt: number
  readonly expiresAt: number
  readonly upstream: SealedUpstream
  /** `cnf.jkt`: the thumbprint of the DPoP key the token is bound to (RFC 9449 §6.1). */
  readonly jkt?: string | undefined
}

type TokenDeps = { config: Config; keys: Keys; clock: Clock }

/**
 * Mints an RFC 9068 JWT access token (`typ: at+jwt`, ES256, `kid`) for the MCP resource.
 * `exp` never outlives the upstream token unless the proxy can refresh that token itself, in
 * which case the bearer gate renews it transparently (hosted clients often never refresh).
 */
export async function mintAccessToken(
  deps: TokenDeps,
  params: AccessTokenParams,
): Promise<{ token: string; jti: string; expiresAt: number; expiresIn: number }> {
  const { config, keys, clock } = deps
  const now = Math.floor(clock.now())
  const ttlEnd = now + config.accessTokenTtlSeconds
  const expiresAt = params.upstreamRefreshable
    ? ttlEnd
    : Math.min(ttlEnd, Math.floor(params.upstream.exp))
  if (expiresAt <= now) {
    throw new OAuthError('invalid_grant', 'the upstream token has already expired')
  }
  const jti = randomToken(16)
  const { signing } = await keys.current()
  // Undefined claims (identity the upstream did not give) are left out by JSON.stringify.
  const claims = {
    client_id: params.clientId,
    scope: params.scopes.join(' '),
    actor: params.actor,
    email: params.email,
    org_code: params.orgCode,
    org_codes: params.orgCodes,
    org_id: params.orgId,
    permissions: params.permissions,
    upt: await seal(keys, params.upstream),
    cnf: params.jkt ? { jkt: params.jkt } : undefined,
    iss: config.issuer,
    sub: params.sub,
    aud: config.resource,
    iat: now,
    exp: expiresAt,
    jti,
  }
  const token = signCompact(
    signing,
    { alg: 'ES256', typ: 'at+jwt', kid: signing.kid },
    JSON.stringify(claims),
  )
  return { token, jti, expiresAt, expiresIn: expiresAt - now }
}

/**
 * An RFC 7515 §7.1 compact JWS over `payload`, ES256 (RFC 7518 §3.4: the signature is R || S,
 * 64 bytes, hence `ieee-p1363`), signed by `node:crypto` synchronously with the key imported
 * once: one core signs more tokens per second than through WebCrypto's thread-pool jobs.
 */
function signCompact(key: SigningKey, header: Record<string, string>, payload: string): string {
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(payload)}`
  const signature = sign('sha256', Buffer.from(signingInput), {
    key: key.privateKey,
    dsaEncoding: 'ieee-p1363',
  })
  return `${signingInput}.${signature.toString('base64url')}`
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url')
}

const MAX_TOKEN_LENGTH = 8192

/**
 * Verifies an access token with everything pinned, so no `none`, HMAC-with-a-public-key or
 * other audience's token slips through: issuer, audience (the MCP
 * resource), ES256 only, `typ: at+jwt`, required `exp`, a key of ours by `kid`; only then
 * unseals the upstream token. Any failure is `invalid_token` (RFC 6750 §3.1).
 */
export async function verifyAccessToken(
  deps: TokenDeps,
  token: string,
): Promise<VerifiedAccessToken> {
  const { config, keys, clock } = deps
  const invalid = (description: string, internal?: unknown) =>
    new OAuthError('invalid_token', description, { status: 401, internal })
  if (token.length > MAX_TOKEN_LENGTH) throw invalid('the access token is too long')
  let kid: string | undefined
  try {
    const header = decodeProtectedHeader(token)
    kid = header.kid
    if (header.alg !== 'ES256') throw invalid('the access token is not signed with ES256')
  } catch (error) {
    if (error instanceof OAuthError) throw error
    throw invalid('the access token is malformed')
  }
  const key = await keys.verificationKey(kid)
  if (!key) throw invalid('the access token is signed by an unknown key')
  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(token, key.publicKey, {
      issuer: config.issuer,
      audience: config.resource,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      currentDate: new Date(clock.now() * 1000),
    }))
  } catch (error) {
    if (error instanceof errors.JWTExpired) throw invalid('the access token has expired', error)
    if (error instanceof errors.JWTClaimValidationFailed) {
      throw invalid(`the access token's ${error.claim} claim is not valid here`, error)
    }
    throw invalid('the access token signature or format is invalid', error)
  }
  // We mint these as strings; anything else is not our token, and String() of an object whose
  // toString is not a function would throw (a 500 instead of invalid_token).
  for (const claim of ['sub', 'client_id', 'jti'] as const) {
    if (typeof payload[claim] !== 'string')
      throw invalid(`the access token's ${claim} claim is not valid here`)
  }
  let upstream: SealedUpstream
  try {
    upstream = await unseal<SealedUpstream>(keys, String(payload.upt))
  } catch (error) {
    throw invalid('the access token does not carry a valid upstream token', error)
  }
  return {
    token,
    sub: payload.sub as string,
    clientId: payload.client_id as string,
    scopes: typeof payload.scope === 'string' && payload.scope ? payload.scope.split(' ') : [],
    actor: payload.actor === 'agent' ? 'agent' : 'user',
    jti: payload.jti as string,
    issuedAt: Number(payload.iat),
    expiresAt: Number(payload.exp),
    email: optionalString(payload.email),
    orgCode: optionalString(payload.org_code),
    orgCodes: optionalStrings(payload.org_codes),
    orgId: optionalString(payload.org_id),
    permissions: optionalStrings(payload.permissions),
    upstream,
    jkt: confirmationJkt(payload.cnf),
  }
}

/** RFC 9449 §6.1 `cnf.jkt`, when the token is bound to a DPoP key. */
function confirmationJkt(cnf: unknown): string | undefined {
  if (typeof cnf !== 'object' || cnf === null) return undefined
  return optionalString((cnf as { jkt?: unknown }).jkt)
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

function optionalStrings(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : undefined
}

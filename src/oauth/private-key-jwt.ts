import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  jwtVerify,
} from 'jose'
import type { Clock } from '../clock.js'
import type { Config } from '../config.js'
import { sha256 } from '../crypto.js'
import { OAuthError } from '../errors.js'
import { KEY_TTL_SECONDS, storeKey } from '../store/keys.js'
import type { Store } from '../store/store.js'
import type { Client } from './client.js'
import { ASSERTION_ALGS, PublicJwks } from './client-keys.js'
import {
  cacheSeconds,
  DEFAULT_METADATA_DOCUMENT_OPTIONS,
  fetchDocument,
  type MetadataDocumentOptions,
} from './client-metadata-document.js'

/** `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2). */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

// "exp at most a few minutes ahead": the SDKs sign for 5 minutes; 10 leaves room for skew and
// slower clients while bounding how long a jti must be remembered.
const MAX_LIFETIME_SECONDS = 600
const CLOCK_TOLERANCE_SECONDS = 30
const MAX_ASSERTION_LENGTH = 8192
const MAX_JTI_LENGTH = 256
// A JWK Set of several RSA keys exceeds the 5 KiB a metadata document may have.
const MAX_JWKS_BYTES = 16 * 1024

/** What verifying assertions needs: the replay cache, the clock, and how to fetch a jwks_uri. */
export interface AssertionDeps {
  readonly config: Pick<Config, 'issuer'>
  readonly store: Store
  readonly clock: Clock
  readonly logger?: { warn(obj: object, msg: string): void }
  readonly metadataDocuments?: Partial<MetadataDocumentOptions> | undefined
}

/** Verifies `private_key_jwt` client assertions against the client's registered keys. */
export interface AssertionVerifier {
  /** Resolves when `assertion` authenticates `client`; `invalid_client` (401) otherwise. */
  verify(client: Client, assertion: string, assertionType: string | undefined): Promise<void>
}

/**
 * `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC Core §9): the assertion
 * is signed by a key of the client's `jwks` or `jwks_uri` (fetched with the metadata-document
 * fetcher's SSRF guards, cached per Cache-Control in the store, re-fetched on an unknown key at
 * most once a minute fleet-wide); `iss` = `sub` = the client id; `aud` the issuer or the token
 * endpoint; `exp` present and at most ten minutes ahead; `jti` never seen before (a single-slot
 * key until `exp`). Every failure is `invalid_client` with why.
 */
export function createAssertionVerifier(deps: AssertionDeps): AssertionVerifier {
  const audience = [deps.config.issuer, `${deps.config.issuer}/token`]
  const fetchOptions: MetadataDocumentOptions = {
    ...DEFAULT_METADATA_DOCUMENT_OPTIONS,
    ...deps.metadataDocuments,
    maxBytes: MAX_JWKS_BYTES,
  }

  const remoteKeys = async (uri: string, refetch: boolean): Promise<JSONWebKeySet> => {
    if (!refetch) {
      const cached = await deps.store.get<JSONWebKeySet>(storeKey.clientJwks(sha256(uri)))
      if (cached) return cached
    }
    let response: { body: string; cacheControl: string | undefined }
    try {
      response = await fetchDocument(new URL(uri), fetchOptions)
    } catch (error) {
      const reason = error instanceof OAuthError ? error.description : undefined
      deps.logger?.warn({ jwksUri: uri, reason }, 'client jwks_uri could not be fetched')
      throw invalid(
        `jwks_uri: the JWK Set could not be fetched${reason ? ` (${reason.replaceAll('the client metadata document', 'the document').replace(/^client_id: /, '')})` : ''}`,
        error,
      )
    }
    const jwks = parseJwks(response.body)
    const seconds = cacheSeconds(response.cacheControl, fetchOptions)
    if (seconds > 0) await deps.store.put(storeKey.clientJwks(sha256(uri)), jwks, seconds)
    return jwks
  }

  const check = async (client: Client, assertion: string, jwks: JSONWebKeySet) => {
    const algorithms = client.tokenEndpointAuthSigningAlg
      ? [client.tokenEndpointAuthSigningAlg]
      : [...ASSERTION_ALGS]
    const options = {
      issuer: client.clientId,
      subject: client.clientId,
      audience,
      algorithms,
      requiredClaims: ['exp', 'jti'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(deps.clock.now() * 1000),
    }
    try {
      return await jwtVerify(assertion, createLocalJWKSet(jwks), options)
    } catch (error) {
      // Without a kid several keys may fit (jose leaves trying each to the caller).
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error
      let last: unknown = error
      for await (const key of error) {
        try {
          return await jwtVerify(assertion, key, options)
        } catch (attempt) {
          last = attempt
        }
      }
      throw last
    }
  }

  return {
    async verify(client, assertion, assertionType) {
      if (assertionType !== JWT_BEARER_ASSERTION) {
        throw invalid(`client_assertion_type must be ${JWT_BEARER_ASSERTION}`)
      }
      if (assertion.length > MAX_ASSERTION_LENGTH) throw invalid('the client assertion is too long')
      try {
        const { alg } = decodeProtectedHeader(assertion)
        if (!ASSERTION_ALGS.includes(alg as (typeof ASSERTION_ALGS)[number])) {
          throw invalid(
            `the client assertion must be signed with one of ${ASSERTION_ALGS.join(', ')}`,
          )
        }
      } catch (error) {
        if (error instanceof OAuthError) throw error
        throw invalid('the client assertion is not a well-formed JWT', error)
      }
      let payload: Record<string, unknown>
      try {
        if (client.jwks) {
          ;({ payload } = await check(client, assertion, client.jwks))
        } else if (client.jwksUri) {
          try {
            ;({ payload } = await check(client, assertion, await remoteKeys(client.jwksUri, false)))
          } catch (error) {
            // A rotated key (an unknown kid, or no kid and no key that fits): look again, but
            // let no stream of unknown keys hammer the client's host.
            const rotated =
              error instanceof errors.JWKSNoMatchingKey ||
              (error instanceof errors.JWSSignatureVerificationFailed &&
                !decodeProtectedHeader(assertion).kid)
            if (!rotated) throw error
            const allowed = await deps.store.add(
              storeKey.clientJwksRefetch(sha256(client.jwksUri)),
              1,
              KEY_TTL_SECONDS.clientJwksRefetch,
            )
            if (!allowed) throw error
            ;({ payload } = await check(client, assertion, await remoteKeys(client.jwksUri, true)))
          }
        } else {
          throw invalid('the client has no registered keys')
        }
      } catch (error) {
        throw assertionRefusal(error)
      }
      const now = deps.clock.now()
      const { exp, jti } = payload
      if (typeof exp !== 'number' || exp > now + MAX_LIFETIME_SECONDS) {
        throw invalid(`the client assertion exp must be at most ${MAX_LIFETIME_SECONDS} s ahead`)
      }
      if (typeof jti !== 'string' || !jti || jti.length > MAX_JTI_LENGTH) {
        throw invalid('the client assertion jti claim is missing or invalid')
      }
      const first = await deps.store.add(
        storeKey.clientAssertion(sha256(`${client.clientId}:${jti}`)),
        1,
        Math.max(exp - now, 0) + CLOCK_TOLERANCE_SECONDS,
      )
      if (!first) throw invalid('the client assertion was already used (jti)')
    },
  }
}

/**
 * The client id an assertion names (RFC 7523 §3: `sub`, which must equal `iss`), read before
 * it is verified so the client's keys can be found; undefined when it names none.
 */
export function assertionClientId(assertion: string | undefined): string | undefined {
  if (!assertion || assertion.length > MAX_ASSERTION_LENGTH) return undefined
  try {
    const { sub } = decodeJwt(assertion)
    return typeof sub === 'string' && sub ? sub : undefined
  } catch {
    return undefined
  }
}

function invalid(description: string, internal?: unknown): OAuthError {
  return new OAuthError('invalid_client', description, { status: 401, internal })
}

function assertionRefusal(error: unknown): unknown {
  if (error instanceof OAuthError) return error
  if (error instanceof errors.JWTExpired) return invalid('the client assertion has expired', error)
  if (error instanceof errors.JWTClaimValidationFailed) {
    return invalid(`the client assertion ${error.claim} claim is missing or invalid`, error)
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return invalid('the client assertion is signed by a key the client has not registered', error)
  }
  if (error instanceof errors.JOSEError) {
    return invalid('the client assertion signature or format is invalid', error)
  }
  return error
}

function parseJwks(body: string): JSONWebKeySet {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    throw invalid('jwks_uri: the JWK Set is not valid JSON')
  }
  const parsed = PublicJwks.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw invalid(`jwks_uri: the JWK Set ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`)
  }
  return parsed.data as JSONWebKeySet
}

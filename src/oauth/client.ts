import type { JSONWebKeySet } from 'jose'
import type { ApplicationType } from './redirect-uri.js'

/** RFC 7591 §2 `token_endpoint_auth_method` values the proxy accepts. */
export type TokenEndpointAuthMethod =
  | 'none'
  | 'client_secret_basic'
  | 'client_secret_post'
  | 'private_key_jwt'

/** Grants a client may be registered for; `client_credentials` belongs to upstream M2M apps. */
export type ClientGrantType = 'authorization_code' | 'refresh_token'

/** Where a client's registration came from. */
export type ClientSource = 'dynamic' | 'metadata-document' | 'static'

/**
 * A registered OAuth client, whatever registered it: DCR (RFC 7591), a Client ID Metadata
 * Document, or configuration. Camel case inside; `toClientMetadata` gives the wire shape.
 */
export interface Client {
  readonly clientId: string
  readonly source: ClientSource
  /** SHA-256 of the secret (base64url); absent for public clients. */
  readonly clientSecretHash?: string | undefined
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod
  readonly applicationType: ApplicationType
  readonly redirectUris: readonly string[]
  readonly grantTypes: readonly ClientGrantType[]
  readonly responseTypes: readonly 'code'[]
  readonly clientName?: string | undefined
  readonly clientUri?: string | undefined
  readonly logoUri?: string | undefined
  readonly tosUri?: string | undefined
  readonly policyUri?: string | undefined
  readonly contacts?: readonly string[] | undefined
  readonly scope?: string | undefined
  readonly softwareId?: string | undefined
  readonly softwareVersion?: string | undefined
  /** Seconds since the epoch (RFC 7591 §3.2.1 `client_id_issued_at`). */
  readonly clientIdIssuedAt: number
  /** `private_key_jwt` clients: their public keys, inline (RFC 7591 §2 `jwks`)… */
  readonly jwks?: JSONWebKeySet | undefined
  /** …or where to fetch them (`jwks_uri`, https); never both. */
  readonly jwksUri?: string | undefined
  /** The one algorithm the client signs assertions with, when it registered one. */
  readonly tokenEndpointAuthSigningAlg?: string | undefined
}

/** The RFC 7591 §3.2.1 metadata of a client, as returned by `/register`. */
export function toClientMetadata(client: Client): Record<string, unknown> {
  const metadata: Record<string, unknown> = {
    client_id: client.clientId,
    client_id_issued_at: client.clientIdIssuedAt,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
    application_type: client.applicationType,
    redirect_uris: client.redirectUris,
    grant_types: client.grantTypes,
    response_types: client.responseTypes,
    client_name: client.clientName,
    client_uri: client.clientUri,
    logo_uri: client.logoUri,
    tos_uri: client.tosUri,
    policy_uri: client.policyUri,
    contacts: client.contacts,
    scope: client.scope,
    software_id: client.softwareId,
    software_version: client.softwareVersion,
    jwks: client.jwks,
    jwks_uri: client.jwksUri,
    token_endpoint_auth_signing_alg: client.tokenEndpointAuthSigningAlg,
  }
  for (const key of Object.keys(metadata)) if (metadata[key] === undefined) delete metadata[key]
  return metadata
}

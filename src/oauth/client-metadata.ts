import { z } from 'zod'
import { OAuthError } from '../errors.js'
import type { Client, ClientGrantType, TokenEndpointAuthMethod } from './client.js'
import { ASSERTION_ALGS, PublicJwks } from './client-keys.js'
import { type ApplicationType, checkRedirectUri, inferApplicationType } from './redirect-uri.js'

const MAX_REDIRECT_URIS = 20
const text = (max: number) => z.string().trim().min(1).max(max)

const httpsUrl = text(2048).refine(
  (value) => URL.canParse(value) && new URL(value).protocol === 'https:',
  'must be an https URL',
)

/**
 * The client metadata fields of RFC 7591 §2 the proxy understands. Unknown fields are dropped
 * (§2: "the authorization server MUST ignore any client metadata sent by the client that it
 * does not understand").
 */
const ClientMetadataSchema = z.object({
  redirect_uris: z
    .array(z.string().max(2048, 'is too long'))
    .min(1, 'must list at least one redirect URI')
    .max(MAX_REDIRECT_URIS, `must list at most ${MAX_REDIRECT_URIS} redirect URIs`),
  token_endpoint_auth_method: z
    .enum(['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'], {
      error: 'must be none, client_secret_basic, client_secret_post or private_key_jwt',
    })
    .optional(),
  jwks: PublicJwks.optional(),
  jwks_uri: httpsUrl.optional(),
  token_endpoint_auth_signing_alg: z
    .enum(ASSERTION_ALGS, { error: `must be one of ${ASSERTION_ALGS.join(', ')}` })
    .optional(),
  grant_types: z
    .array(z.string())
    .min(1)
    .optional()
    .superRefine((grants, ctx) => {
      for (const grant of grants ?? []) {
        if (grant !== 'authorization_code' && grant !== 'refresh_token') {
          ctx.addIssue({
            code: 'custom',
            message:
              grant === 'client_credentials'
                ? 'client_credentials is for the upstream M2M applications, not registered clients'
                : `unsupported grant type ${grant}`,
          })
        }
      }
    }),
  response_types: z
    .array(z.literal('code', { error: 'only "code" is supported' }))
    .min(1)
    .optional(),
  application_type: z.enum(['native', 'web'], { error: 'must be native or web' }).optional(),
  client_name: text(200).optional(),
  client_uri: httpsUrl.optional(),
  logo_uri: httpsUrl.optional(),
  tos_uri: httpsUrl.optional(),
  policy_uri: httpsUrl.optional(),
  contacts: z.array(text(320)).max(10).optional(),
  scope: text(1000)
    .regex(
      /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/,
      'must be space-separated scope tokens',
    )
    .optional(),
  software_id: text(200).optional(),
  software_version: text(100).optional(),
})

/** Validated client metadata, ready to become a `Client`. */
export type ValidatedClientMetadata = Omit<
  Client,
  'clientId' | 'clientIdIssuedAt' | 'clientSecretHash' | 'source'
>

/**
 * Validates RFC 7591 client metadata. Redirect URI problems are `invalid_redirect_uri`,
 * everything else `invalid_client_metadata` (RFC 7591 §3.2.2), each naming the field. Defaults:
 * `client_secret_basic` (§2), the `authorization_code` and `refresh_token` grants (§3.2.1 lets
 * the server replace omitted values; MCP clients need refresh to avoid hourly re-login), and an
 * `application_type` inferred from the redirect URIs when omitted.
 */
export function validateClientMetadata(input: unknown): ValidatedClientMetadata {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new OAuthError('invalid_client_metadata', 'the request body must be a JSON object')
  }
  const parsed = ClientMetadataSchema.safeParse(input)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = String(issue?.path[0] ?? 'metadata')
    const message = field in input ? issue?.message : 'is required'
    const code = field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata'
    throw new OAuthError(code, `${field}: ${message}`)
  }
  const metadata = parsed.data
  const applicationType: ApplicationType =
    metadata.application_type ?? inferApplicationType(metadata.redirect_uris)
  for (const uri of metadata.redirect_uris) {
    const problem = checkRedirectUri(uri, applicationType)
    if (problem) throw new OAuthError('invalid_redirect_uri', `redirect_uris: ${uri} ${problem}`)
  }
  const grantTypes = (metadata.grant_types ?? [
    'authorization_code',
    'refresh_token',
  ]) as ClientGrantType[]
  if (!grantTypes.includes('authorization_code')) {
    throw new OAuthError(
      'invalid_client_metadata',
      'grant_types: must include authorization_code (refresh_token alone cannot obtain a first token)',
    )
  }
  const tokenEndpointAuthMethod: TokenEndpointAuthMethod =
    metadata.token_endpoint_auth_method ?? 'client_secret_basic'
  const keys = clientKeys(tokenEndpointAuthMethod, metadata)
  return {
    ...keys,
    tokenEndpointAuthMethod,
    applicationType,
    redirectUris: [...new Set(metadata.redirect_uris)],
    grantTypes: [...new Set(grantTypes)],
    responseTypes: ['code'],
    clientName: metadata.client_name,
    clientUri: metadata.client_uri,
    logoUri: metadata.logo_uri,
    tosUri: metadata.tos_uri,
    policyUri: metadata.policy_uri,
    contacts: metadata.contacts,
    scope: metadata.scope,
    softwareId: metadata.software_id,
    softwareVersion: metadata.software_version,
  }
}

/**
 * The keys of a `private_key_jwt` client (RFC 7591 §2): exactly one of `jwks` and `jwks_uri`.
 * Other clients' keys are dropped: nothing here would ever use them.
 */
function clientKeys(
  method: TokenEndpointAuthMethod,
  metadata: z.output<typeof ClientMetadataSchema>,
): Pick<Client, 'jwks' | 'jwksUri' | 'tokenEndpointAuthSigningAlg'> {
  if (method !== 'private_key_jwt') return {}
  if (metadata.jwks && metadata.jwks_uri) {
    throw new OAuthError('invalid_client_metadata', 'jwks: must not be sent together with jwks_uri')
  }
  if (!metadata.jwks && !metadata.jwks_uri) {
    throw new OAuthError(
      'invalid_client_metadata',
      'jwks_uri: private_key_jwt needs the client keys, in jwks_uri or jwks',
    )
  }
  return {
    jwks: metadata.jwks as Client['jwks'],
    jwksUri: metadata.jwks_uri,
    tokenEndpointAuthSigningAlg: metadata.token_endpoint_auth_signing_alg,
  }
}

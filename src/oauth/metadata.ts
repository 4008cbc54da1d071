import { Hono } from 'hono'
import type { Config } from '../config.js'
import type { Deps } from '../deps.js'
import { methodNotAllowed, publicCors } from '../http.js'
import { DPOP_ALGS } from '../tokens/dpop.js'
import { ASSERTION_ALGS } from './client-keys.js'

/** RFC 9728 §2 protected-resource metadata for the MCP endpoint. */
export function protectedResourceMetadata(config: Config) {
  return {
    resource: config.resource,
    authorization_servers: [config.issuer],
    // offline_access is the authorization server's concern, not a scope of the resource:
    // MCP clients request exactly what is listed here.
    scopes_supported: config.scopes,
    bearer_methods_supported: ['header'],
    resource_name: 'MCP server',
    dpop_signing_alg_values_supported: DPOP_ALGS,
    dpop_bound_access_tokens_required: config.dpopRequired,
  }
}

/** RFC 8414 §2 authorization-server metadata, also served as OIDC discovery. */
export function authorizationServerMetadata(config: Config) {
  const at = (path: string) => `${config.issuer}${path}`
  const authMethods = ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']
  return {
    issuer: config.issuer,
    authorization_endpoint: at('/authorize'),
    token_endpoint: at('/token'),
    registration_endpoint: at('/register'),
    revocation_endpoint: at('/revoke'),
    jwks_uri: at('/.well-known/jwks.json'),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: authMethods,
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
    revocation_endpoint_auth_methods_supported: authMethods,
    revocation_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
    scopes_supported: [...config.scopes, 'offline_access'],
    client_id_metadata_document_supported: config.clientIdMetadataDocuments,
    authorization_response_iss_parameter_supported: true,
    resource_indicators_supported: true,
    dpop_signing_alg_values_supported: DPOP_ALGS,
  }
}

const CACHEABLE = { 'cache-control': 'public, max-age=3600' }

/**
 * The discovery documents (RFC 9728, RFC 8414, OIDC Discovery) and the JWKS (RFC 7517), with
 * CORS for browser-based clients, HEAD, and 405 for other methods.
 */
export function metadataRoutes(deps: Pick<Deps, 'config' | 'keys'>) {
  const { config, keys } = deps
  // Built once: these documents depend only on configuration.
  const prm = JSON.stringify(protectedResourceMetadata(config))
  const asm = JSON.stringify(authorizationServerMetadata(config))
  const json = (body: string, headers: Record<string, string>) =>
    new Response(body, { headers: { 'content-type': 'application/json', ...headers } })

  const app = new Hono()
  app.use('/.well-known/*', publicCors(['GET', 'HEAD']))
  for (const path of [
    '/.well-known/oauth-protected-resource',
    '/.well-known/oauth-protected-resource/mcp',
  ]) {
    app.get(path, () => json(prm, CACHEABLE))
  }
  for (const path of [
    '/.well-known/oauth-authorization-server',
    '/.well-known/openid-configuration',
  ]) {
    app.get(path, () => json(asm, CACHEABLE))
  }
  app.get('/.well-known/jwks.json', async () =>
    json(JSON.stringify((await keys.current()).jwks), { 'cache-control': 'public, max-age=300' }),
  )
  app.all('/.well-known/*', methodNotAllowed(['GET', 'HEAD']))
  return app
}

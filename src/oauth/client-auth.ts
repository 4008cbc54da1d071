import { safeEqual, sha256 } from '../crypto.js'
import { OAuthError } from '../errors.js'
import type { Client } from './client.js'
import type { Clients } from './clients.js'
import { assertionClientId } from './private-key-jwt.js'

/** `Authorization: Basic` credentials (RFC 6749 §2.3.1: form-urlencoded id and secret). */
export function basicCredentials(
  header: string | undefined,
): { id: string; secret: string } | undefined {
  const match = header?.match(/^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i)
  if (!match?.[1]) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  try {
    return {
      id: decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' ')),
      secret: decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' ')),
    }
  } catch {
    return undefined
  }
}

/**
 * Authenticates the client at the token and revocation endpoints by its registered method
 * (RFC 6749 §2.3, RFC 7591 §2): `client_secret_basic`, `client_secret_post`, `private_key_jwt`
 * (RFC 7523 §2.2: a `client_assertion`, `client_id` optional), or `none` with just
 * `client_id`. Secrets are compared as hashes in constant time. Failures are `invalid_client`
 * (401, with a Basic challenge when Basic was tried, RFC 6749 §5.2).
 */
export async function authenticateClient(
  clients: Clients,
  authorization: string | undefined,
  params: {
    client_id?: string | undefined
    client_secret?: string | undefined
    client_assertion?: string | undefined
    client_assertion_type?: string | undefined
  },
): Promise<Client> {
  const basic = basicCredentials(authorization)
  if (authorization && /^Basic\b/i.test(authorization) && !basic) {
    throw new OAuthError('invalid_request', 'the Basic authorization header is malformed')
  }
  if (basic && params.client_secret !== undefined) {
    throw new OAuthError(
      'invalid_request',
      'use one client authentication method, not Basic and client_secret together',
    )
  }
  if (basic && params.client_id !== undefined && params.client_id !== basic.id) {
    throw new OAuthError(
      'invalid_request',
      'client_id in the body differs from the Basic credentials',
    )
  }
  const assertion = params.client_assertion
  if (
    (assertion !== undefined || params.client_assertion_type !== undefined) &&
    (basic || params.client_secret !== undefined)
  ) {
    throw new OAuthError(
      'invalid_request',
      'use one client authentication method, not a client assertion and a secret together',
    )
  }
  const clientId = basic?.id ?? params.client_id ?? assertionClientId(assertion)
  const challenge = basic
    ? { 'www-authenticate': 'Basic realm="token", charset="UTF-8"' }
    : undefined
  const fail = (description: string) =>
    new OAuthError('invalid_client', description, { status: 401, headers: challenge })
  if (!clientId) throw fail('client authentication is required (client_id)')

  let client: Client | undefined
  try {
    client = await clients.find(clientId)
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_client')
      throw fail(error.description ?? 'unknown client')
    throw error
  }
  if (!client) throw fail('unknown client')

  const secret = basic?.secret ?? params.client_secret
  const method = basic
    ? 'client_secret_basic'
    : params.client_secret !== undefined
      ? 'client_secret_post'
      : assertion !== undefined || params.client_assertion_type !== undefined
        ? 'private_key_jwt'
        : 'none'
  if (client.tokenEndpointAuthMethod === 'none') {
    if (method !== 'none') throw fail('this client is public and has no secret')
    return client
  }
  if (method !== client.tokenEndpointAuthMethod) {
    throw fail(`this client must authenticate with ${client.tokenEndpointAuthMethod}`)
  }
  if (method === 'private_key_jwt') {
    if (!assertion) throw fail('client_assertion is missing')
    await clients.verifyAssertion(client, assertion, params.client_assertion_type)
    return client
  }
  if (!secret || !client.clientSecretHash || !safeEqual(sha256(secret), client.clientSecretHash)) {
    throw fail('client authentication failed')
  }
  return client
}

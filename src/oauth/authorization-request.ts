import type { Config } from '../config.js'
import { OAuthError } from '../errors.js'
import type { Client } from './client.js'
import { redirectUriMatches } from './redirect-uri.js'
import { isThisResource } from './resource.js'

const PKCE_S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/
const MAX_STATE_LENGTH = 2048

/** Where an error about an authorization request may be sent: the client's redirect URI. */
export interface RedirectTarget {
  readonly redirectUri: string
  /** The client's `state`, echoed; absent when it sent none or one not worth echoing. */
  readonly state: string | undefined
}

/** The parameters of an authorization request that passed every check of `/authorize`. */
export interface CheckedAuthorizationRequest extends RedirectTarget {
  /** Whether the client named the redirect URI (then `/token` must repeat it, RFC 6749 §4.1.3). */
  readonly redirectUriProvided: boolean
  readonly codeChallenge: string
  readonly scopes: readonly string[]
  /** OIDC `prompt` values (`consent` asks for the consent page again). */
  readonly prompt: readonly string[]
}

/**
 * What the checks decided: the request, or a refusal. Without `redirectTo` the refusal is
 * for the user's eyes (a page): the client or its redirect URI is not trusted, and nothing may
 * be redirected (OAuth 2.1 §4.1.2.1, RFC 9700 §4.1). With it, the refusal goes back to the
 * client at that redirect URI.
 */
export type AuthorizationCheck =
  | { readonly request: CheckedAuthorizationRequest; readonly refusal?: undefined }
  | { readonly refusal: OAuthError; readonly redirectTo?: RedirectTarget }

/** A query parameter's only value; `null` when it is repeated (RFC 6749 §3.1). */
function single(query: URLSearchParams, name: string): string | null | undefined {
  const values = query.getAll(name)
  return values.length > 1 ? null : values[0]
}

/** The `client_id` of an authorization request, or why there is none to look up. */
export function requestedClientId(query: URLSearchParams): string | OAuthError {
  const clientId = single(query, 'client_id')
  if (clientId === null) return new OAuthError('invalid_request', 'client_id is repeated')
  if (!clientId) return new OAuthError('invalid_request', 'client_id is missing')
  return clientId
}

/**
 * The RFC checks of `GET /authorize` for `client` (found by `requestedClientId`), in their two
 * phases: the redirect URI first (the registered string, any port on loopback, RFC 8252 §7.3),
 * then — with errors now redirected — `state`, `response_type=code`, PKCE S256 (RFC 7636),
 * `scope` (one of `config.scopes` or `offline_access`), `resource` (RFC 8707: this server's
 * only), `prompt=none` (never possible here) and the client's grant types. A repeated
 * parameter is `invalid_request`.
 */
export function checkAuthorizationRequest(
  config: Pick<Config, 'scopes' | 'resource'>,
  query: URLSearchParams,
  client: Client,
): AuthorizationCheck {
  const page = (description: string) => ({
    refusal: new OAuthError('invalid_request', description),
  })
  const requestedRedirect = single(query, 'redirect_uri')
  if (requestedRedirect === null) return page('redirect_uri is repeated')
  let redirectUri: string
  if (requestedRedirect === undefined || requestedRedirect === '') {
    const [only, ...more] = client.redirectUris
    if (!only || more.length) return page('redirect_uri is required: the client has several')
    redirectUri = only
  } else if (
    client.redirectUris.some((registered) => redirectUriMatches(registered, requestedRedirect))
  ) {
    redirectUri = requestedRedirect
  } else {
    return page('redirect_uri is not registered for this client')
  }

  // Phase two: errors go back to the client.
  const stateParam = single(query, 'state')
  // A state that is repeated or too long is not echoed: it is not a value the client set.
  const state =
    stateParam === null || (stateParam?.length ?? 0) > MAX_STATE_LENGTH ? undefined : stateParam
  const redirectTo = { redirectUri, state }
  const fail = (code: string, description: string) => ({
    refusal: new OAuthError(code, description),
    redirectTo,
  })
  if (stateParam === null) return fail('invalid_request', 'state is repeated')
  if (stateParam !== undefined && stateParam.length > MAX_STATE_LENGTH)
    return fail('invalid_request', 'state is too long')
  for (const name of [
    'response_type',
    'code_challenge',
    'code_challenge_method',
    'scope',
    'prompt',
  ]) {
    if (single(query, name) === null) return fail('invalid_request', `${name} is repeated`)
  }
  // Repeats were refused above, so each of these has at most one value.
  const param = (name: string) => query.get(name) ?? undefined
  const responseType = param('response_type')
  if (!responseType) return fail('invalid_request', 'response_type is missing')
  if (responseType !== 'code')
    return fail('unsupported_response_type', 'only response_type=code is supported')
  const codeChallenge = param('code_challenge')
  if (!codeChallenge) return fail('invalid_request', 'code_challenge is required (PKCE with S256)')
  if (param('code_challenge_method') !== 'S256')
    return fail('invalid_request', 'code_challenge_method must be S256')
  if (!PKCE_S256_CHALLENGE.test(codeChallenge))
    return fail('invalid_request', 'code_challenge is not a valid S256 challenge')
  const supported = new Set([...config.scopes, 'offline_access'])
  const requestedScopes = (param('scope') ?? '').split(' ').filter(Boolean)
  const unsupported = requestedScopes.find((scope) => !supported.has(scope))
  if (unsupported) return fail('invalid_scope', `scope ${unsupported} is not supported`)
  const scopes = requestedScopes.length ? [...new Set(requestedScopes)] : [...config.scopes]
  // RFC 8707 §2 allows several resource parameters; this server is the only one it serves.
  const foreign = query.getAll('resource').find((r) => !isThisResource(r, config.resource))
  if (foreign !== undefined) return fail('invalid_target', `resource must be ${config.resource}`)
  const prompt = (param('prompt') ?? '').split(' ')
  if (prompt.includes('none'))
    return fail('interaction_required', 'this server always needs the user to sign in')
  if (client.grantTypes.includes('authorization_code') === false) {
    return fail(
      'unauthorized_client',
      'the client is not registered for the authorization_code grant',
    )
  }
  return {
    request: {
      redirectUri,
      redirectUriProvided: Boolean(requestedRedirect),
      state,
      codeChallenge,
      scopes,
      prompt,
    },
  }
}

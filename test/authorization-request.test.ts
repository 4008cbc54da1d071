import { describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { OAuthError } from '../src/errors.js'
import {
  type AuthorizationCheck,
  checkAuthorizationRequest,
  requestedClientId,
} from '../src/oauth/authorization-request.js'
import type { Client } from '../src/oauth/client.js'
import { BASE_ENV } from './support/app.js'
import { pkce } from './support/flow.js'

// The RFC checks of GET /authorize as a plain function: no HTTP, no store, no upstream.

const config = loadConfig({ ...BASE_ENV, SCOPES: 'openid profile email tools:read' })
const CHALLENGE = pkce().challenge

const client = (overrides: Partial<Client> = {}): Client => ({
  clientId: 'client-1',
  source: 'dynamic',
  tokenEndpointAuthMethod: 'none',
  applicationType: 'native',
  redirectUris: ['http://127.0.0.1/cb'],
  grantTypes: ['authorization_code', 'refresh_token'],
  responseTypes: ['code'],
  clientIdIssuedAt: 0,
  ...overrides,
})

/** A valid request's query with `changes` (undefined removes a parameter). */
function query(changes: Record<string, string | string[] | undefined> = {}): URLSearchParams {
  const params: Record<string, string | string[] | undefined> = {
    client_id: 'client-1',
    response_type: 'code',
    redirect_uri: 'http://127.0.0.1:5555/cb',
    code_challenge: CHALLENGE,
    code_challenge_method: 'S256',
    state: 'st',
    ...changes,
  }
  const out = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) {
    for (const one of value === undefined ? [] : [value].flat()) out.append(name, one)
  }
  return out
}

/** The check's outcome as data: the request, or the refusal and where it would go. */
function outcome(check: AuthorizationCheck) {
  if (!check.refusal) return { request: check.request }
  return {
    error: check.refusal.code,
    description: check.refusal.description,
    redirectTo: check.redirectTo,
  }
}

describe('requestedClientId', () => {
  it.each([
    ['missing', new URLSearchParams(), 'client_id is missing'],
    ['empty', new URLSearchParams('client_id='), 'client_id is missing'],
    ['repeated', new URLSearchParams('client_id=a&client_id=b'), 'client_id is repeated'],
  ])('refuses a %s client_id with invalid_request', (_case, params, description) => {
    const result = requestedClientId(params)
    expect(result).toBeInstanceOf(OAuthError)
    expect(result).toMatchObject({ code: 'invalid_request', description })
  })

  it('returns the one client_id', () => {
    expect(requestedClientId(new URLSearchParams('client_id=abc'))).toBe('abc')
  })
})

describe('checkAuthorizationRequest', () => {
  it('accepts a valid request, on any loopback port (RFC 8252 §7.3)', () => {
    expect(outcome(checkAuthorizationRequest(config, query(), client()))).toEqual({
      request: {
        redirectUri: 'http://127.0.0.1:5555/cb',
        redirectUriProvided: true,
        state: 'st',
        codeChallenge: CHALLENGE,
        scopes: ['openid', 'profile', 'email', 'tools:read'],
        prompt: [''],
      },
    })
  })

  it('takes the one registered redirect URI when none is named, and remembers that', () => {
    const { request } = outcome(
      checkAuthorizationRequest(config, query({ redirect_uri: undefined }), client()),
    )
    expect(request).toMatchObject({
      redirectUri: 'http://127.0.0.1/cb',
      redirectUriProvided: false,
    })
  })

  it('keeps the requested scopes, once each, with offline_access', () => {
    const { request } = outcome(
      checkAuthorizationRequest(
        config,
        query({ scope: 'openid tools:read openid offline_access' }),
        client(),
      ),
    )
    expect(request?.scopes).toEqual(['openid', 'tools:read', 'offline_access'])
  })

  it('accepts this server’s resource, with or without a trailing slash or a query (RFC 8707)', () => {
    const resource = [config.resource, `${config.resource}/`, `${config.resource}?chatgpt=1`]
    expect(
      outcome(checkAuthorizationRequest(config, query({ resource }), client())).request,
    ).toBeDefined()
  })

  // Phase one: shown to the user, never redirected.
  it.each([
    [
      'an unregistered redirect_uri',
      { redirect_uri: 'https://evil.example/cb' },
      {},
      'redirect_uri is not registered for this client',
    ],
    [
      'another loopback path',
      { redirect_uri: 'http://127.0.0.1:5555/other' },
      {},
      'redirect_uri is not registered for this client',
    ],
    [
      'a repeated redirect_uri',
      { redirect_uri: ['http://127.0.0.1/cb', 'http://127.0.0.1/cb'] },
      {},
      'redirect_uri is repeated',
    ],
    [
      'no redirect_uri for a client with several',
      { redirect_uri: undefined },
      { redirectUris: ['http://127.0.0.1/a', 'http://127.0.0.1/b'] },
      'redirect_uri is required: the client has several',
    ],
  ] satisfies [string, Record<string, string | string[] | undefined>, Partial<Client>, string][])(
    'shows a page for %s, redirecting nowhere',
    (_case, changes, clientChanges, description) => {
      expect(
        outcome(checkAuthorizationRequest(config, query(changes), client(clientChanges))),
      ).toEqual({
        error: 'invalid_request',
        description,
        redirectTo: undefined,
      })
    },
  )

  // Phase two: back to the client, with its state.
  const back = { redirectUri: 'http://127.0.0.1:5555/cb', state: 'st' }
  it.each([
    [
      'no response_type',
      { response_type: undefined },
      'invalid_request',
      'response_type is missing',
    ],
    [
      'response_type=token',
      { response_type: 'token' },
      'unsupported_response_type',
      'only response_type=code is supported',
    ],
    [
      'no code_challenge',
      { code_challenge: undefined },
      'invalid_request',
      'code_challenge is required (PKCE with S256)',
    ],
    [
      'the plain PKCE method',
      { code_challenge_method: 'plain' },
      'invalid_request',
      'code_challenge_method must be S256',
    ],
    [
      'no PKCE method',
      { code_challenge_method: undefined },
      'invalid_request',
      'code_challenge_method must be S256',
    ],
    [
      'a challenge that is no S256 digest',
      { code_challenge: 'short' },
      'invalid_request',
      'code_challenge is not a valid S256 challenge',
    ],
    [
      'a repeated scope parameter',
      { scope: ['openid', 'email'] },
      'invalid_request',
      'scope is repeated',
    ],
    [
      'an unknown scope',
      { scope: 'openid admin' },
      'invalid_scope',
      'scope admin is not supported',
    ],
    [
      'another resource',
      { resource: 'https://other.example/mcp' },
      'invalid_target',
      `resource must be ${config.resource}`,
    ],
    [
      'another path of this server, with a query',
      { resource: `${config.resource}-admin?x=1` },
      'invalid_target',
      `resource must be ${config.resource}`,
    ],
    [
      'this resource with a fragment',
      { resource: `${config.resource}#f` },
      'invalid_target',
      `resource must be ${config.resource}`,
    ],
    [
      'prompt=none',
      { prompt: 'none' },
      'interaction_required',
      'this server always needs the user to sign in',
    ],
  ])('redirects %s to the client with %s', (_case, changes, error, description) => {
    expect(outcome(checkAuthorizationRequest(config, query(changes), client()))).toEqual({
      error,
      description,
      redirectTo: back,
    })
  })

  it('redirects unauthorized_client for a client without the authorization_code grant', () => {
    expect(
      outcome(
        checkAuthorizationRequest(config, query(), client({ grantTypes: ['refresh_token'] })),
      ),
    ).toMatchObject({ error: 'unauthorized_client', redirectTo: back })
  })

  it('refuses a repeated or oversized state without echoing it', () => {
    for (const state of [['a', 'b'], 'x'.repeat(2049)]) {
      expect(outcome(checkAuthorizationRequest(config, query({ state }), client()))).toMatchObject({
        error: 'invalid_request',
        redirectTo: { redirectUri: 'http://127.0.0.1:5555/cb', state: undefined },
      })
    }
  })
})

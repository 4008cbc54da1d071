import { Hono } from 'hono'
import { randomToken, sha256 } from '../crypto.js'
import type { Deps } from '../deps.js'
import { OAuthError } from '../errors.js'
import { methodNotAllowed } from '../http.js'
import {
  type AuthorizationRequest,
  errorPage,
  errorToClient,
  signInRateLimit,
  toUpstream,
} from './authorization-flow.js'
import { checkAuthorizationRequest, requestedClientId } from './authorization-request.js'
import { callbackRoutes } from './callback.js'
import type { Client } from './client.js'
import type { Clients } from './clients.js'
import { consentPage, consentRoutes } from './consent.js'
import { consentCovers, ensureBrowserId, rememberedConsents } from './cookies.js'

/**
 * `GET /authorize`, its consent form and `GET /callback`: the authorization-code flow with the
 * upstream login in the middle (OAuth 2.1 §4.1, RFC 7636, RFC 8707, RFC 9207).
 */
export function authorizeRoutes(deps: Deps, clients: Clients) {
  return new Hono()
    .route('/', authorizationEndpoint(deps, clients))
    .route('/', consentRoutes(deps))
    .route('/', callbackRoutes(deps, clients))
}

/** `GET /authorize`: the client's request, checked, then the consent page or the upstream. */
function authorizationEndpoint(deps: Deps, clients: Clients) {
  const { config, clock } = deps
  const app = new Hono()

  app.get('/authorize', signInRateLimit(deps), async (c) => {
    const query = new URL(c.req.url).searchParams

    // Phase one: nothing may redirect until client_id and redirect_uri are trusted.
    const clientId = requestedClientId(query)
    if (clientId instanceof OAuthError)
      return errorPage(deps, c, clientId.code, clientId.description ?? '')
    let client: Client | undefined
    try {
      client = await clients.find(clientId)
    } catch (error) {
      if (error instanceof OAuthError && error.code === 'invalid_client') {
        return errorPage(
          deps,
          c,
          'invalid_client',
          error.description ?? 'the client cannot be used',
        )
      }
      throw error
    }
    if (!client)
      return errorPage(
        deps,
        c,
        'invalid_client',
        'unknown client_id: the application must register first',
      )
    const checked = checkAuthorizationRequest(config, query, client)
    if (checked.refusal) {
      const { refusal } = checked
      return checked.redirectTo
        ? errorToClient(deps, c, checked.redirectTo, refusal)
        : errorPage(deps, c, refusal.code, refusal.description ?? '')
    }
    const { redirectUri, redirectUriProvided, state, codeChallenge, scopes, prompt } =
      checked.request

    const request: AuthorizationRequest = {
      clientId: client.clientId,
      redirectUri,
      redirectUriProvided,
      state,
      codeChallenge,
      scopes,
      resource: config.resource,
      browser: sha256(ensureBrowserId(c, config)),
      flowId: randomToken(12),
    }
    // No clients.touch here: only a completed sign-in or a token request is use of a client, or
    // anyone could keep an abandoned registration alive with links nobody follows.

    const skip =
      (config.consent === 'skip' && client.source === 'static') ||
      (!prompt.includes('consent') &&
        consentCovers(
          await rememberedConsents(c, config, deps.keys, clock.now()),
          client.clientId,
          redirectUri,
          scopes,
        ))
    if (skip) return toUpstream(deps, c, request, 302)
    return consentPage(deps, c, client, request)
  })
  app.all('/authorize', methodNotAllowed(['GET']))

  return app
}

import { Hono } from 'hono'
import { requestIdOf } from '../audit.js'
import type { Deps } from '../deps.js'
import { NO_STORE, OAuthError } from '../errors.js'
import { clientIp, hasMediaType, methodNotAllowed, publicCors, readBody } from '../http.js'
import { rateLimit } from '../rate-limit.js'
import { toClientMetadata } from './client.js'
import { validateClientMetadata } from './client-metadata.js'
import type { Clients } from './clients.js'

const MAX_REGISTRATION_BYTES = 16 * 1024

/** `POST /register`: Dynamic Client Registration (RFC 7591 §3). */
export function registerRoutes(
  deps: Pick<Deps, 'config' | 'store' | 'clock' | 'audit'>,
  clients: Clients,
) {
  const { config } = deps
  const app = new Hono()
  app.use('/register', publicCors(['POST']))
  app.post(
    '/register',
    rateLimit(deps, {
      name: 'register',
      perMinute: config.registerRateLimit,
      key: (c) => clientIp(c, config.trustProxy),
    }),
    async (c) => {
      if (!hasMediaType(c, 'application/json')) {
        throw new OAuthError(
          'invalid_client_metadata',
          'the request body must be JSON (Content-Type: application/json)',
        )
      }
      const metadata = validateClientMetadata(parseJson(await readBody(c, MAX_REGISTRATION_BYTES)))
      const { client, clientSecret } = await clients.register(metadata)
      deps.audit(
        'client.registered',
        { client_id: client.clientId, auth_method: client.tokenEndpointAuthMethod },
        requestIdOf(c),
      )
      const body = toClientMetadata(client)
      if (clientSecret)
        Object.assign(body, { client_secret: clientSecret, client_secret_expires_at: 0 })
      return c.json(body, 201, NO_STORE)
    },
  )
  app.all('/register', methodNotAllowed(['POST']))
  return app
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new OAuthError('invalid_client_metadata', 'the request body is not valid JSON')
  }
}

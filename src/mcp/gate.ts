import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { Context } from 'hono'
import type { Deps } from '../deps.js'
import { OAuthError, StoreUnavailableError, unavailable } from '../errors.js'
import type { VerifiedAccessToken } from '../tokens/access-token.js'
import { authorizationToken, createDpopKeyCache, verifyDpopAtResource } from '../tokens/dpop.js'
import { describeNeededScopes } from '../tokens/policy.js'
import { bearerChallenge } from './challenge.js'
import type { Caller } from './tools.js'

/**
 * What a request presents to the gate: its `Authorization` and `DPoP` headers, and the method
 * and path a DPoP proof must name (RFC 9449 §4.3; the URL is `PUBLIC_URL` + path, never the Host).
 */
export interface Credentials {
  readonly authorization: string | undefined
  readonly dpop: string | undefined
  readonly method: string
  readonly path: string
}

/**
 * A Hono request's credentials, for `verify` and `authenticate`. The DPoP header and the path
 * are read only when a DPoP check needs them: each header read scans the raw headers on
 * @hono/node-server, and most requests carry a plain Bearer token.
 */
export function credentialsOf(c: Context): Credentials {
  return {
    authorization: c.req.header('authorization'),
    get dpop() {
      return c.req.header('dpop')
    },
    method: c.req.method,
    get path() {
      return c.req.path
    },
  }
}

/** A request's bearer token, verified (signature, claims, revocation), not yet admitted. */
export interface PresentedToken {
  readonly token: string
  readonly verified: VerifiedAccessToken
}

/** Who a request is from, once the gate let it through. */
export interface Admitted extends PresentedToken {
  readonly caller: Caller
  /** What the MCP SDKs hand their handlers; `extra` is the `Caller`. */
  readonly authInfo: AuthInfo
}

export interface AdmitOptions {
  /** Scopes the request needs; a token lacking any gets 403 naming all of them. */
  readonly scopes?: readonly string[] | undefined
  /**
   * Resolve the caller's upstream token (refreshed when it has expired); default true. Without,
   * `caller.upstreamAccessToken` is the one sealed in the token, possibly stale.
   */
  readonly upstream?: boolean | undefined
  /** Correlates audit events with the request log. */
  readonly requestId?: string | undefined
}

/** The one bearer gate in front of the MCP resource's tokens: `/mcp` (both eras, forward mode included) and `requireAuth()`. */
export interface BearerGate {
  /**
   * The `Authorization` header's token, verified, with its DPoP proof when it is bound to a
   * key (RFC 9449 §7); throws the 401 refusal (or 503).
   */
  verify(credentials: Credentials, requestId?: string): Promise<PresentedToken>
  /** Checks `scopes` and resolves the upstream token; throws the 403/401 refusal (or 503). */
  admit(presented: PresentedToken, options?: AdmitOptions): Promise<Admitted>
  /** `verify`, then `admit`. */
  authenticate(credentials: Credentials, options?: AdmitOptions): Promise<Admitted>
  /** A 401/403 carrying this resource's exact challenge (for refusals decided elsewhere). */
  refuse(
    status: 401 | 403,
    code: string | undefined,
    description: string,
    scopes?: readonly string[],
  ): OAuthError
}

/**
 * The services a gate is made of: the instance's verifier (verification cache, revocation),
 * its upstream-token source (per-grant cache, renewal), its audit trail (`mcp.denied`; a
 * missing token is no event), and the store and clock of DPoP's replay cache. The gate keeps
 * no state of its own but a cache of imported DPoP keys, so gates built over the same services
 * are the same gate.
 */
export type BearerGateDeps = Pick<
  Deps,
  'config' | 'verifier' | 'upstreamTokens' | 'audit' | 'store' | 'clock'
>

/**
 * Turns a request's credentials into a caller or a refusal, the same way for every protected
 * route (RFC 6750, RFC 9728 §5.1, MCP authorization). The token is read from the
 * `Authorization` header only (never the query). No token: 401 with a challenge naming the
 * resource metadata and scopes but no error code (RFC 6750 §3.1); a token the verifier
 * refuses (malformed, expired, revoked, another audience): 401 `invalid_token` with why; a
 * token lacking a scope the request needs: 403 `insufficient_scope` naming them, so the
 * client can step up; a grant the upstream ended: 401 `invalid_token`; a store or upstream
 * that cannot answer: 503. Every challenge for the same token is the same bytes, whichever
 * adapter asked.
 */
export function createBearerGate(deps: BearerGateDeps): BearerGate {
  const { config, audit } = deps
  const resource = new URL(config.resource)
  const resourceMetadata = `${config.issuer}/.well-known/oauth-protected-resource/mcp`

  const refuse: BearerGate['refuse'] = (status, code, description, scopes = config.scopes) =>
    new OAuthError(code ?? 'invalid_token', description, {
      status,
      headers: {
        'www-authenticate': bearerChallenge({
          error: code,
          description,
          resourceMetadata,
          scopes,
        }),
      },
    })

  /** What the verifier or the upstream-token source threw, as this resource's refusal. */
  const challenged = (error: unknown): unknown => {
    if (error instanceof OAuthError && error.code === 'invalid_token') {
      return refuse(401, 'invalid_token', error.description ?? 'the access token is not valid')
    }
    if (error instanceof StoreUnavailableError) return unavailable(error)
    return error
  }

  const dpop = { ...deps, keyCache: createDpopKeyCache() }

  const verify: BearerGate['verify'] = async (credentials, requestId) => {
    const presented = authorizationToken(credentials.authorization)
    // Body code for people reading it; the header carries none, as RFC 6750 §3.1 asks.
    if (!presented) throw refuse(401, undefined, 'an access token is required')
    const { token } = presented
    let verified: VerifiedAccessToken
    try {
      verified = await deps.verifier.verify(token)
    } catch (error) {
      const refusal = challenged(error)
      if (refusal instanceof OAuthError && refusal.code === 'invalid_token') {
        audit('mcp.denied', { error: 'invalid_token', reason: refusal.description }, requestId)
      }
      throw refusal
    }
    // An unbound Bearer token where DPoP is optional has nothing more to prove (the common
    // case, kept off the DPoP path for the /mcp benchmark).
    if (!verified.jkt && presented.scheme === 'Bearer' && !config.dpopRequired) {
      return { token, verified }
    }
    // The verifier's cache may skip the token; the proof is checked on every request.
    const verdict = await verifyDpopAtResource(
      dpop,
      {
        ...presented,
        method: credentials.method,
        url: `${config.issuer}${credentials.path}`,
        proof: credentials.dpop,
      },
      verified,
    )
    if (!verdict.ok) {
      audit('mcp.denied', { error: verdict.error, reason: verdict.description }, requestId)
      // RFC 9449 §7.1: the DPoP challenge says what is wrong, next to the Bearer one.
      throw new OAuthError(verdict.error, verdict.description, {
        status: 401,
        headers: {
          'www-authenticate': `${bearerChallenge({ resourceMetadata, scopes: config.scopes })}, ${verdict.challenge}`,
        },
      })
    }
    return { token, verified }
  }

  const admit: BearerGate['admit'] = async ({ token, verified }, options = {}) => {
    const required = [...new Set(options.scopes ?? [])]
    if (required.some((scope) => !verified.scopes.includes(scope))) {
      audit(
        'mcp.denied',
        {
          client_id: verified.clientId,
          sub: verified.sub,
          org: verified.orgCode ?? verified.orgId,
          actor: verified.actor,
          error: 'insufficient_scope',
          scopes: required,
        },
        options.requestId,
      )
      throw refuse(403, 'insufficient_scope', describeNeededScopes(config, required), required)
    }
    let upstreamAccessToken = verified.upstream.at
    if (options.upstream ?? true) {
      try {
        upstreamAccessToken = await deps.upstreamTokens.accessToken(verified, options.requestId)
      } catch (error) {
        throw challenged(error)
      }
    }
    const caller = callerOf(verified, upstreamAccessToken)
    const authInfo: AuthInfo = {
      token,
      clientId: verified.clientId,
      scopes: [...verified.scopes],
      expiresAt: verified.expiresAt,
      resource,
      extra: { ...caller },
    }
    return { token, verified, caller, authInfo }
  }

  return {
    verify,
    admit,
    authenticate: async (credentials, options) =>
      admit(await verify(credentials, options?.requestId), options),
    refuse,
  }
}

/** The `Caller` tools (and `requireAuth` routes) see for a verified token. */
function callerOf(verified: VerifiedAccessToken, upstreamAccessToken: string): Caller {
  return {
    sub: verified.sub,
    email: verified.email,
    orgCode: verified.orgCode,
    orgId: verified.orgId,
    permissions: verified.permissions ?? [],
    actor: verified.actor,
    upstreamAccessToken,
  }
}

/**
 * The scopes the `tools/call` requests in a JSON-RPC body (one message or a batch) need:
 * every scope of each tool called, so the client asks for what the operation needs (MCP
 * scope challenge handling; the client unions it with what it already holds).
 */
export function scopesForToolCalls(
  body: unknown,
  toolScopes: ReadonlyMap<string, readonly string[]>,
): string[] {
  const needed = new Set<string>()
  for (const message of Array.isArray(body) ? body : [body]) {
    const name = toolCallName(message)
    for (const scope of (name !== undefined && toolScopes.get(name)) || []) needed.add(scope)
  }
  return [...needed]
}

function toolCallName(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined
  const { method, params } = message as { method?: unknown; params?: unknown }
  if (method !== 'tools/call' || typeof params !== 'object' || params === null) return undefined
  const { name } = params as { name?: unknown }
  return typeof name === 'string' ? name : undefined
}

import type { AuthInfo } from '@modelcontextprotocol/server'
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server'
import { Hono } from 'hono'
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose'
import { z } from 'zod'
import { serveApp } from './mcp.js'
import type { Upstream } from './upstream.js'

/** What a request to the backend carried. */
export interface SeenRequest {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
}

/** A 2026-07-28 MCP server on the v2 SDK that checks the upstream's tokens itself. */
export interface ModernBackend {
  readonly mcpUrl: string
  /** Every request that reached the backend, in order. */
  readonly requests: SeenRequest[]
  /** Accepts `upstream`'s JWT access tokens (issuer, audience, JWKS) from now on. */
  trust(upstream: Upstream): Promise<void>
  close(): Promise<void>
}

/**
 * An MCP backend as one is written for the 2026-07-28 revision: the v2 SDK's
 * `createMcpHandler` (both eras, the 2025 one stateless), an `McpServer` per request, and its
 * own check of the Bearer: a JWT access token of the upstream it `trust`s (issuer, audience,
 * JWKS), as a Kinde-protected API does; until then it refuses every token. With
 * `checkTokens: false` it serves anyone, for running a suite against it alone. Tools: `whoami` (the identity it verified), `upstream_userinfo`
 * (the upstream's userinfo with the token it was given) and `weather`, whose `region`
 * argument is mirrored into `Mcp-Param-Region` (`x-mcp-header`), which the SDK checks
 * against the body.
 */
export async function startModernBackend(
  options: { checkTokens?: boolean } = {},
): Promise<ModernBackend> {
  const checkTokens = options.checkTokens ?? true
  let trusted:
    | { upstream: Upstream; jwks: ReturnType<typeof createRemoteJWKSet>; userinfo: string }
    | undefined

  const text = (value: unknown) => ({
    content: [{ type: 'text' as const, text: JSON.stringify(value) }],
  })
  const handler = createMcpHandler(() => {
    const server = new McpServer({ name: 'modern-backend', version: '1.0.0' })
    server.registerTool('whoami', { description: 'The verified identity.' }, (ctx) =>
      text(ctx.http?.authInfo?.extra ?? null),
    )
    server.registerTool(
      'upstream_userinfo',
      { description: 'The identity provider’s userinfo, with the token the backend got.' },
      async (ctx) => {
        const response = await fetch(trusted?.userinfo ?? '', {
          headers: { authorization: `Bearer ${ctx.http?.authInfo?.token}` },
        })
        return text(await response.json())
      },
    )
    server.registerTool(
      'weather',
      {
        description: 'The weather in a region.',
        inputSchema: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }) }),
      },
      ({ region }) => text({ region, sky: 'clear' }),
    )
    return server
  })

  const requests: SeenRequest[] = []
  const app = new Hono().all('/mcp', async (c) => {
    const request = c.req.raw
    requests.push({ method: request.method, headers: Object.fromEntries(request.headers) })
    const token = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')?.[1]
    if (!checkTokens) return handler.fetch(request)
    let identity: JWTPayload
    try {
      if (!token || !trusted) throw new Error('no token, or no upstream to check it with')
      ;({ payload: identity } = await jwtVerify(token, trusted.jwks, {
        issuer: trusted.upstream.issuer,
        audience: trusted.upstream.audience,
        algorithms: ['RS256'],
      }))
    } catch {
      return c.json({ error: 'invalid_token' }, 401, { 'www-authenticate': 'Bearer' })
    }
    const authInfo: AuthInfo = { token, clientId: 'backend', scopes: [], extra: { ...identity } }
    return handler.fetch(request, { authInfo })
  })
  const served = await serveApp(app)
  return {
    mcpUrl: `${served.url}/mcp`,
    requests,
    async trust(upstream) {
      const discovery = (await (
        await fetch(`${upstream.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
      ).json()) as { jwks_uri: string; userinfo_endpoint: string }
      trusted = {
        upstream,
        jwks: createRemoteJWKSet(new URL(discovery.jwks_uri)),
        userinfo: discovery.userinfo_endpoint,
      }
    },
    async close() {
      await handler.close()
      await served.close()
    },
  }
}

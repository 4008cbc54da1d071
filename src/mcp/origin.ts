import type { MiddlewareHandler } from 'hono'
import type { Config } from '../config.js'
import { LOOPBACK_NAME_PATTERN } from '../loopback.js'
import type { McpEnv } from './endpoint.js'
import { jsonRpcError } from './transport.js'

const LOOPBACK_ORIGIN = new RegExp(`^http://(${LOOPBACK_NAME_PATTERN})(:\\d{1,5})?$`)

/**
 * Refuses requests to `/mcp` from browser origins it does not know, against DNS rebinding (MCP
 * 2025-11-25, basic/transports, Security Warning: servers MUST validate `Origin` and answer an
 * invalid one with 403). Allowed: no `Origin` at all (not a browser), this server's own origin,
 * loopback origins (a page on the user's own machine, such as the MCP Inspector), and
 * `MCP_ALLOWED_ORIGINS` (`*` allows every origin). Runs before CORS, so a refused origin gets
 * neither an answer nor a preflight approval.
 */
export function originGuard(
  config: Pick<Config, 'publicUrl' | 'mcpAllowedOrigins'>,
): MiddlewareHandler<McpEnv> {
  const allowed = new Set([config.publicUrl.origin, ...config.mcpAllowedOrigins])
  const any = allowed.has('*')
  return async function originGuardMiddleware(c, next) {
    const origin = c.req.header('origin')
    if (origin === undefined || any || allowed.has(origin) || LOOPBACK_ORIGIN.test(origin))
      return next()
    return jsonRpcError(403, -32000, 'Forbidden: this origin may not use this MCP server')
  }
}

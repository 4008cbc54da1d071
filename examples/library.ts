/**
 * Library mode: an application that embeds the proxy, serves its own MCP tool and protects its
 * own REST route with the same access tokens.
 *
 *   SCOPES="openid profile email reports:read" PUBLIC_URL=http://localhost:3000 \
 *   KINDE_ISSUER_URL=… KINDE_CLIENT_ID=… KINDE_CLIENT_SECRET=… KINDE_AUDIENCE=… \
 *   npx tsx examples/library.ts        (or: node --env-file=.env --import tsx examples/library.ts)
 *
 * `reports:read` is granted to users whose Kinde access token carries a `reports:read`
 * permission (or one that SCOPE_PERMISSIONS maps to it, e.g. reports:read=read:reports).
 *
 * Then point an MCP client at http://localhost:3000/mcp and call `list_reports`, or call
 * GET /api/me with the access token the client holds.
 */
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import {
  type Config,
  ConfigError,
  createMcpAuthProxy,
  defineTool,
  jsonResult,
  loadConfig,
  toolError,
} from 'mcp-oauth-proxy'
import { z } from 'zod'

/** Every tenant's reports, keyed by Kinde organization code. */
const REPORTS: Record<string, { id: string; title: string; quarter: string }[]> = {
  org_acme: [
    { id: 'r-101', title: 'Acme revenue', quarter: '2025-Q1' },
    { id: 'r-102', title: 'Acme churn', quarter: '2025-Q2' },
  ],
  org_globex: [{ id: 'r-201', title: 'Globex revenue', quarter: '2025-Q1' }],
}

const listReports = defineTool({
  name: 'list_reports',
  title: 'List reports',
  description: "Lists the reports of the caller's organization, optionally of one quarter.",
  inputSchema: {
    quarter: z
      .string()
      .regex(/^\d{4}-Q[1-4]$/)
      .optional()
      .describe('e.g. 2025-Q1'),
  },
  // Checked before the call reaches the tool: a token without it gets 403 insufficient_scope.
  requiredScopes: ['reports:read'],
  annotations: { readOnlyHint: true, openWorldHint: false },
  handler({ quarter }, { caller }) {
    // The tenant boundary: the organization comes from the verified token, never from the
    // arguments, so no prompt can make the tool read another tenant's data.
    if (!caller.orgCode) return toolError('sign in through an organization to see its reports')
    const reports = (REPORTS[caller.orgCode] ?? []).filter(
      (report) => quarter === undefined || report.quarter === quarter,
    )
    return jsonResult({ orgCode: caller.orgCode, reports })
  },
})

// Library mode never reads the environment by itself: hand it over explicitly.
let config: Config
try {
  config = loadConfig(process.env)
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  for (const problem of error.problems) console.error(`config error: ${problem}`)
  process.exit(1)
}

const proxy = await createMcpAuthProxy({
  config,
  tools: [listReports],
  // After ALLOWED_EMAIL_DOMAINS & co.: refused users are sent back to the client with
  // access_denied and this reason.
  authorizeUser: (user) =>
    user.emailVerified === true || 'a verified email address is required to use this server',
})

const app = new Hono()
app.get('/api/me', proxy.requireAuth(), (c) => {
  // Never hand out the upstream token: it is for calling upstream APIs as the caller.
  const { upstreamAccessToken: _, ...me } = c.get('auth')
  return c.json(me)
})
app.get('/api/reports', proxy.requireAuth({ scopes: ['reports:read'] }), (c) => {
  const { orgCode } = c.get('auth')
  return c.json({ orgCode, reports: orgCode ? (REPORTS[orgCode] ?? []) : [] })
})
// The proxy's routes hang under PUBLIC_URL, an origin: mount them at the root.
app.route('/', proxy.app)

const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
  console.log(`listening on port ${info.port}; MCP endpoint ${config.resource}`)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close()
    proxy.close().then(() => process.exit(0))
  })
}

/**
 * `npm run demo`: the proxy on the memory store in front of a built-in OpenID Connect provider
 * (oidc-provider, on loopback, see `./idp.ts`) that signs in one demo user with one click, so
 * the whole MCP OAuth flow runs on one machine without a Kinde or Auth0 account.
 *
 * The provider imitates Kinde rather than a plain OIDC provider: Kinde-style access tokens
 * carry `org_code` and `permissions`, so `whoami` shows what a real deployment's tools see.
 *
 * Environment: PORT (default 3000), PUBLIC_URL (default http://localhost:PORT), HOST (default
 * 127.0.0.1: the demo user is one click away, so the demo does not listen on the network),
 * LOG_LEVEL (default warn: the terminal stays quiet; info shows the audit trail, one line per
 * sign-in step and token). Nothing else is read — not even `.env`, whose upstream would clash.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigError, loadConfig } from '../src/config.js'
import { escapeHtml, renderPage } from '../src/oauth/pages.js'
import { type RunningServer, startServer } from '../src/server.js'
import type { Upstream, UpstreamUser } from './idp.js'

// oidc-provider warns, in red, that Node 20 is not its supported runtime and that it keeps its
// state in memory. Both are known and intended here (it works on Node 20, and the demo forgets
// everything on exit), and would read as errors to someone trying the demo; other warnings pass.
const warn = console.warn
console.warn = (...args: unknown[]) => {
  const text = String(args[0])
  if (/oidc-provider WARNING: (Unsupported runtime|a quick start development-only)/.test(text))
    return
  warn(...args)
}
// Imported after the filter: oidc-provider warns while it loads.
const { startUpstream } = await import('./idp.js')

const DEMO_USER: UpstreamUser = {
  sub: 'kp_demo_user',
  email: 'demo@example.com',
  email_verified: true,
  name: 'Demo User',
  org_code: 'org_demo',
  permissions: ['read:reports'],
}

/** The MCP protocol revision the printed `initialize` request asks for. */
const PROTOCOL_VERSION = '2025-11-25'

/** How the consent page names the demo's provider: it is not Kinde, though it looks like it. */
const PROVIDER_NAME = 'the built-in demo sign-in'

/** Oldest Node that runs the MCP Inspector (its own `engines`). */
const INSPECTOR_NODE = '22.19'

const env = process.env
const port = Number(env.PORT || 3000)
if (!Number.isInteger(port) || port < 1 || port > 65_535) exit('PORT must be a port number')
const host = env.HOST || '127.0.0.1'
const publicUrlSetting = env.PUBLIC_URL || `http://localhost:${port}`
// Checked in full (https, no path) by loadConfig; the provider needs the callback URL first.
const publicUrl = URL.canParse(publicUrlSetting)
  ? new URL(publicUrlSetting).origin
  : exit(`PUBLIC_URL: "${publicUrlSetting}" is not a URL`)
const mcpUrl = `${publicUrl}/mcp`

const running: { close(): Promise<void> }[] = []
let stopping = false
const STOP_GRACE_MS = 2000

/** Closes the callback page, the proxy and the provider, newest first, then exits. */
async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true
    const closed = Promise.allSettled(running.reverse().map((service) => service.close()))
    // An MCP client holding an SSE stream open must not keep the demo alive.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS))])
  }
  process.exit(code)
}

// The signal can arrive more than once (the terminal sends Ctrl-C to npm, tsx and this process
// alike); the first one starts stopping, later ones change nothing.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    process.stdout.write('\nmcp-oauth-proxy demo: stopping\n')
    void stop(0)
  })
}

try {
  await assertPortFree(host, port)
  // The proxy's confidential client at the provider, as it would be registered at Kinde.
  const proxyClient = {
    client_id: 'mcp-oauth-proxy-demo',
    client_secret: randomBytes(24).toString('base64url'),
  }
  const idp = await startIdp(port, proxyClient)
  running.push(idp)
  const proxy = await startProxy(idp, proxyClient)
  running.push(proxy)
  const callback = await startCallbackPage()
  running.push(callback)

  const client = {
    client_name: 'curl',
    redirect_uris: [callback.redirectUri],
    token_endpoint_auth_method: 'none',
  }
  const clientId = await register(proxy, client)
  const verifier = randomBytes(32).toString('base64url')
  const challenge = createHash('sha256').update(verifier).digest('base64url')
  const authorize = new URL('/authorize', publicUrl)
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: callback.redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    scope: 'openid profile email',
    resource: mcpUrl,
    state: randomBytes(12).toString('base64url'),
  }).toString()
  const exchange = (code: string) =>
    [
      `TOKEN=$(curl -s -X POST ${publicUrl}/token -d grant_type=authorization_code \\`,
      `  -d client_id=${clientId} -d code=${code} -d code_verifier=${verifier} \\`,
      `  --data-urlencode redirect_uri=${callback.redirectUri} \\`,
      `  | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token')`,
    ].join('\n')
  const rpc = (body: Record<string, unknown>) => JSON.stringify({ jsonrpc: '2.0', ...body })
  const initialize = rpc({
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'curl', version: '1.0.0' },
    },
  })
  // Headers are printed as curl shows them (HTTP/1.1 keeps the case the server sent); the sed
  // expression matches either case without GNU-only flags, for macOS as well.
  const startSession = [
    `SID=$(curl -si ${mcpUrl} -H "authorization: Bearer $TOKEN" \\`,
    `  -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\`,
    `  -d '${initialize}' \\`,
    `  | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: *\\([^[:space:]]*\\).*/\\1/p'); echo "session $SID"`,
  ].join('\n')
  const useSession = [
    `mcp() { curl -s ${mcpUrl} -H "authorization: Bearer $TOKEN" -H "mcp-session-id: $SID" \\`,
    `  -H 'mcp-protocol-version: ${PROTOCOL_VERSION}' -H 'content-type: application/json' \\`,
    `  -H 'accept: application/json, text/event-stream' -d "$1"; echo; }`,
    `mcp '${rpc({ method: 'notifications/initialized' })}'`,
    `mcp '${rpc({ id: 2, method: 'tools/list' })}'`,
    `mcp '${rpc({ id: 3, method: 'tools/call', params: { name: 'whoami', arguments: {} } })}'`,
  ].join('\n')
  callback.show({ exchange, startSession, useSession, authorizeUrl: authorize.href })

  const indent = (text: string, spaces: number) => text.replace(/^/gm, ' '.repeat(spaces))
  process.stdout.write(`
mcp-oauth-proxy demo

  MCP server  ${mcpUrl}
  Sign-in     built-in OpenID Connect provider (Kinde-style claims) at ${idp.url}
              one click signs in ${DEMO_USER.name} <${DEMO_USER.email}>, org ${DEMO_USER.org_code}
  Tools       whoami, upstream_userinfo

Connect an MCP client
  Cursor, VS Code, Claude Code and other remote-MCP clients: the URL ${mcpUrl}
    (claude.ai connects from the internet: run a tunnel and set PUBLIC_URL to its https URL)
  Claude Desktop and other stdio clients, through mcp-remote:
    {"mcpServers":{"demo":{"command":"npx","args":["mcp-remote","${mcpUrl}"]}}}
  MCP Inspector (needs Node >= ${INSPECTOR_NODE}): npx @modelcontextprotocol/inspector
    then Transport Type "Streamable HTTP", URL ${mcpUrl}, Connect

Or the OAuth dance with curl, in bash or zsh, from sign-in to a tool call
  1. Register a client (the demo did already; the same request returns the same client_id):
     curl -s -X POST ${publicUrl}/register -H 'content-type: application/json' \\
       -d '${JSON.stringify(client)}'
  2. Open in a browser (code_challenge is the S256 of the code_verifier in step 3), Allow, then
     "Sign in as demo user":
     ${authorize.href}
  3. The browser lands on a page that shows steps 3 to 5 with the code (valid 60 s) filled in.
     Exchange the code for an access token:
${indent(exchange('CODE'), 5)}
  4. Open an MCP session; its id comes back in the Mcp-Session-Id response header:
${indent(startSession, 5)}
  5. Call the MCP endpoint in that session: initialized, tools/list, then the whoami tool:
${indent(useSession, 5)}

See and revoke what you approved: ${publicUrl}/account
Check the deployment: npx mcp-oauth-proxy doctor ${mcpUrl}
See the audit trail (sign-ins, consents, tokens): restart with LOG_LEVEL=info npm run demo
Ctrl-C stops the demo.
`)
} catch (error) {
  process.stderr.write(
    `mcp-oauth-proxy demo: ${error instanceof Error ? error.message : String(error)}\n`,
  )
  await stop(1)
}

function exit(message: string): never {
  process.stderr.write(`mcp-oauth-proxy demo: ${message}\n`)
  process.exit(1)
}

/** Fails with a readable message rather than an EADDRINUSE stack when PORT is taken. */
async function assertPortFree(hostname: string, portNumber: number): Promise<void> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`port ${portNumber} is in use; set PORT to another one`)
          : error,
      ),
    )
    probe.listen(portNumber, hostname, () => probe.close(() => resolve()))
  })
}

/** The identity provider on PORT+1, or on any free port when that one is taken. */
async function startIdp(
  proxyPort: number,
  client: { client_id: string; client_secret: string },
): Promise<Upstream> {
  const options = {
    flavor: 'kinde' as const,
    users: [DEMO_USER],
    // The proxy's one fixed callback, registered once at the provider: all it ever redirects to.
    client: {
      ...client,
      redirect_uris: [`${publicUrl}/callback`],
      // Signing out at the provider (its /logout) ends the demo user's grants at the proxy.
      backchannel_logout_uri: `${publicUrl}/backchannel-logout`,
    },
  }
  if (proxyPort < 65_535) {
    try {
      return await startUpstream({ ...options, port: proxyPort + 1 })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
    }
  }
  return startUpstream({ ...options, port: 0 })
}

async function startProxy(
  idp: Upstream,
  client: { client_id: string; client_secret: string },
): Promise<RunningServer> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig({
      PUBLIC_URL: publicUrlSetting,
      HOST: host,
      PORT: String(port),
      LOG_LEVEL: env.LOG_LEVEL || 'warn',
      UPSTREAM_NAME: PROVIDER_NAME,
      KINDE_ISSUER_URL: idp.issuer,
      KINDE_CLIENT_ID: client.client_id,
      KINDE_CLIENT_SECRET: client.client_secret,
      KINDE_AUDIENCE: idp.audience,
    })
  } catch (error) {
    if (error instanceof ConfigError) throw new Error(error.problems.join('; '))
    throw error
  }
  return startServer(config)
}

/** Registers the curl dance's client (RFC 7591); identical public registrations share an id. */
async function register(proxy: RunningServer, metadata: Record<string, unknown>): Promise<string> {
  // Through the listening address: PUBLIC_URL may be a tunnel that is not up yet.
  const listening = new URL(proxy.url)
  if (listening.hostname === '0.0.0.0') listening.hostname = '127.0.0.1'
  if (listening.hostname === '[::]') listening.hostname = '[::1]'
  const response = await fetch(new URL('/register', listening), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(metadata),
  })
  const body = (await response.json()) as { client_id?: string }
  if (response.status !== 201 || !body.client_id) {
    throw new Error(`registering the curl client failed: ${response.status}`)
  }
  return body.client_id
}

/** What the callback page shows: the commands after the browser step, and where to start again. */
interface Commands {
  readonly exchange: (code: string) => string
  readonly startSession: string
  readonly useSession: string
  readonly authorizeUrl: string
}

interface CallbackPage {
  readonly redirectUri: string
  show(commands: Commands): void
  close(): Promise<void>
}

/**
 * The curl dance's redirect URI, a loopback one as a native app's (RFC 8252 §7.3): a page that
 * shows the token request with the code filled in, since a code lives only 60 seconds.
 */
async function startCallbackPage(): Promise<CallbackPage> {
  let commands: Commands | undefined
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (url.pathname !== '/callback' || !commands) {
      res.writeHead(404).end()
      return
    }
    const code = url.searchParams.get('code')
    const error = url.searchParams.get('error')
    const again = `<a id="start-again" href="${escapeHtml(commands.authorizeUrl)}">Start the sign-in again</a>`
    const page = code
      ? renderPage(
          'Signed in — mcp-oauth-proxy demo',
          `<h1>Signed in</h1>
<p class="sub">Run these in one terminal (bash or zsh), one after the other. The code is valid for 60 seconds.</p>
<p>3. Exchange the code for an access token:</p>
<pre>${escapeHtml(commands.exchange(code))}</pre>
<p>4. Open an MCP session; its id comes back in the Mcp-Session-Id header:</p>
<pre>${escapeHtml(commands.startSession)}</pre>
<p>5. Call the MCP endpoint in that session: initialized, tools/list, then the whoami tool:</p>
<pre>${escapeHtml(commands.useSession)}</pre>
<p class="note">Code expired? ${again}.</p>`,
          { wide: true },
        )
      : renderPage(
          'Not signed in — mcp-oauth-proxy demo',
          `<h1>Not signed in</h1>
<p class="sub" id="error-description">${escapeHtml(url.searchParams.get('error_description') ?? 'the sign-in ended without a code')}</p>
<p class="note">Error: <code id="error-code">${escapeHtml(error ?? 'no code')}</code>. This is the curl client's page of the demo: nothing was issued.</p>
<p>${again}, and press Allow, then "Sign in as demo user".</p>`,
        )
    res
      .writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      })
      .end(page)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port: callbackPort } = server.address() as AddressInfo
  return {
    redirectUri: `http://127.0.0.1:${callbackPort}/callback`,
    show(shown) {
      commands = shown
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

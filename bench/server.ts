/**
 * One process of the benchmark, run by `run.ts`: a bare Hono handler, the proxy, or the
 * oidc-provider test upstream, all on loopback. The orchestrator talks to it over IPC only
 * (see ipc.ts), so the proxy's HTTP surface is exactly what it serves in production.
 *
 * The upstream has a process of its own: oidc-provider runs its requests in an
 * AsyncLocalStorage, which turns on promise hooks for the whole process; sharing the proxy's
 * would charge the proxy for a cost its production deployment need not have.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { Hono } from 'hono'
import { loadConfig } from '../src/config.js'
import type { Deps } from '../src/deps.js'
import { startServer } from '../src/server.js'
import { mintAccessToken } from '../src/tokens/access-token.js'
import { createGrant, issueCode } from '../src/tokens/grants.js'
import { accessTokenOf, serveApp, signedInProvider } from '../test/support/mcp.js'
import { PROXY_CLIENT, upstreamEnv } from '../test/support/proxy.js'
import { startUpstream, type Upstream } from '../test/support/upstream.js'
import type { ChildMessage, Command, MintCodes, Reply, Request, ServerSpec } from './ipc.js'

interface Running {
  readonly url: string
  readonly upstreamEnv?: Readonly<Record<string, string>>
  /** A proxy's dependencies, for minting codes. */
  readonly deps?: Deps
  /** An upstream, for signing in. */
  readonly upstream?: Upstream
  close(): Promise<void>
}

/** `POST /mcp` answering one fixed JSON-RPC response, as a bare Hono app does. */
async function startBare(response: unknown): Promise<Running> {
  const app = new Hono()
  app.post('/mcp', (c) => c.json(response))
  return serveApp(app)
}

async function startIdentityProvider(proxyUrls: readonly string[]): Promise<Running> {
  const upstream = await startUpstream({
    flavor: 'kinde',
    client: { ...PROXY_CLIENT, redirect_uris: proxyUrls.map((url) => `${url}/callback`) },
  })
  return { url: upstream.url, upstreamEnv: upstreamEnv(upstream), upstream, close: upstream.close }
}

/**
 * The proxy configured through its environment, as deployed, with its production logger at
 * `info` (stdout is /dev/null), Redis as the store and the rate limits off (the load comes
 * from one address and one client).
 */
async function startProxy(spec: Extract<ServerSpec, { kind: 'proxy' }>): Promise<Running> {
  const url = `http://127.0.0.1:${spec.port}`
  const server = await startServer(
    loadConfig({
      PUBLIC_URL: url,
      HOST: '127.0.0.1',
      PORT: String(spec.port),
      LOG_LEVEL: 'info',
      ...(spec.redisEnv ?? { REDIS_URL: spec.redisUrl }),
      REDIS_KEY_PREFIX: spec.keyPrefix,
      MCP_SESSIONS: spec.sessions,
      REGISTER_RATE_LIMIT: '0',
      TOKEN_RATE_LIMIT: '0',
      ...spec.upstreamEnv,
    }),
  )
  return { url, deps: server.deps, close: server.close }
}

/** Upstream tokens about the size Kinde issues (JWT access and ID tokens). */
function upstreamTokens(now: number) {
  return {
    accessToken: randomBytes(660).toString('base64url'),
    idToken: randomBytes(800).toString('base64url'),
    refreshToken: randomBytes(32).toString('base64url'),
    expiresAt: now + 3600,
    scope: 'openid profile email offline',
  }
}

const MINT_BATCH = 200

/**
 * Codes exactly as `/authorize/consent` leaves them after an upstream login: a grant holding
 * the sealed upstream tokens, and a one-time code for it. Minting them here skips the login,
 * which is not what `/token` is measured for.
 */
async function mintCodes(deps: Deps, command: MintCodes): Promise<string[]> {
  const codes: string[] = []
  for (let start = 0; start < command.count; start += MINT_BATCH) {
    const size = Math.min(MINT_BATCH, command.count - start)
    const batch = Array.from({ length: size }, async (_, i) => {
      const grant = await createGrant(deps, {
        clientId: command.clientId,
        identity: { sub: `bench-user-${start + i}`, email: `user${start + i}@bench.test` },
        scopes: ['openid', 'profile', 'email'],
        upstream: upstreamTokens(deps.clock.now()),
      })
      return issueCode(deps, {
        grantId: grant.id,
        clientId: command.clientId,
        redirectUri: command.redirectUri,
        redirectUriProvided: true,
        codeChallenge: command.codeChallenge,
        resource: deps.config.resource,
      })
    })
    codes.push(...(await Promise.all(batch)))
  }
  return codes
}

function send(message: ChildMessage): void {
  if (!process.send) throw new Error('bench/server.ts runs under run.ts, with an IPC channel')
  process.send(message)
}

function start(spec: ServerSpec): Promise<Running> {
  switch (spec.kind) {
    case 'bare':
      return startBare(spec.response)
    case 'upstream':
      return startIdentityProvider(spec.proxyUrls)
    case 'proxy':
      return startProxy(spec)
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_SERVER ?? 'null') as ServerSpec | null
  if (!spec) throw new Error('BENCH_SERVER is not set; run bench/run.ts instead')
  const running = await start(spec)
  let profiler: Session | undefined

  const execute = async (command: Command): Promise<unknown> => {
    switch (command.op) {
      case 'sign-in': {
        if (!running.upstream) throw new Error('only the upstream signs in')
        // DCR, PKCE, consent, upstream login and code exchange, as an MCP client goes through.
        const provider = await signedInProvider({
          url: command.proxyUrl,
          upstream: running.upstream,
        })
        return accessTokenOf(provider)
      }
      case 'mint-codes':
        if (!running.deps) throw new Error('only a proxy mints codes')
        return mintCodes(running.deps, command)
      case 'mint-dpop-token': {
        if (!running.deps) throw new Error('only a proxy mints tokens')
        const now = running.deps.clock.now()
        const { token } = await mintAccessToken(running.deps, {
          sub: 'bench-dpop-user',
          clientId: 'bench-dpop-client',
          scopes: ['openid', 'profile', 'email'],
          actor: 'user',
          email: 'dpop@bench.test',
          upstream: { at: upstreamTokens(now).accessToken, exp: now + 3600 },
          upstreamRefreshable: false,
          jkt: command.jkt,
        })
        return token
      }
      case 'memory': {
        if (command.gc) (globalThis as { gc?: () => void }).gc?.()
        const { rss, heapUsed, external } = process.memoryUsage()
        return { rss, heapUsed, external }
      }
      case 'profile-start': {
        // The inspector's CPU profiler is what --cpu-prof runs, limited to the measured window.
        profiler = new Session()
        profiler.connect()
        await profiler.post('Profiler.enable')
        await profiler.post('Profiler.setSamplingInterval', { interval: command.intervalMicros })
        await profiler.post('Profiler.start')
        return null
      }
      case 'profile-stop': {
        if (!profiler) throw new Error('the profiler is not running')
        const { profile } = await profiler.post('Profiler.stop')
        profiler.disconnect()
        profiler = undefined
        await writeFile(command.path, JSON.stringify(profile))
        return null
      }
      case 'close':
        await running.close()
        return null
    }
  }

  process.on('message', (request: Request) => {
    execute(request).then(
      (result): void => {
        send({ type: 'reply', id: request.id, ok: true, result } satisfies Reply)
        if (request.op === 'close') process.disconnect()
      },
      (error: unknown) =>
        send({
          type: 'reply',
          id: request.id,
          ok: false,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        }),
    )
  })
  // The orchestrator gone (or done): nothing else may keep this process alive.
  process.once('disconnect', () => process.exit(0))
  send({ type: 'ready', url: running.url, upstreamEnv: running.upstreamEnv })
}

await main()

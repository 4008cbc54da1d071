import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectClient, resultJson, signedInProvider } from './support/mcp.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy, upstreamEnv } from './support/proxy.js'
import { startUpstream, type Upstream } from './support/upstream.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const STARTUP_MS = 20_000

/** A child running an example as users would, `node --import tsx examples/…`, with only `env`. */
interface Example {
  readonly child: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves once stdout matches `pattern`; rejects on exit or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>
  /** Resolves with the exit code; rejects after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<number | null>
  /** SIGTERM, then SIGKILL if it lingers. */
  stop(): Promise<void>
}

function runExample(file: string, env: Record<string, string>): Example {
  // A clean environment: the examples must not pick up REDIS_URL or anything else of ours.
  const inherited = Object.fromEntries(
    ['PATH', 'HOME', 'TMPDIR'].flatMap((name) => {
      const value = process.env[name]
      return value === undefined ? [] : [[name, value]]
    }),
  )
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk
  })
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  const bounded = <T>(promise: Promise<T>, timeoutMs: number, what: string) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${file}: ${what} within ${timeoutMs} ms\n${out}\n${err}`)),
        timeoutMs,
      )
      promise.then(resolve, reject).finally(() => clearTimeout(timer))
    })
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor(pattern, timeoutMs = STARTUP_MS) {
      const seen = new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) resolve()
        }
        child.stdout?.on('data', check)
        check()
        exit.then((code) => reject(new Error(`${file} exited (${code}) early:\n${out}\n${err}`)))
      })
      return bounded(seen, timeoutMs, `no output matching ${pattern}`)
    },
    exited: (timeoutMs = STARTUP_MS) => bounded(exit, timeoutMs, 'did not exit'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exit
      clearTimeout(killer)
    },
  }
}

const ALICE = {
  sub: 'user-alice',
  email: 'alice@acme.test',
  email_verified: true,
  org_code: 'org_acme',
  // What backs the example tool's reports:read scope.
  permissions: ['reports:read'],
}

describe('examples/library.ts', () => {
  let upstream: Upstream
  let example: Example
  let url: string

  beforeAll(async () => {
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${url}/callback`] },
      users: [ALICE],
    })
    example = runExample('examples/library.ts', {
      PUBLIC_URL: url,
      HOST: '127.0.0.1',
      PORT: String(port),
      SCOPES: 'openid profile email reports:read',
      LOG_LEVEL: 'silent',
      ...upstreamEnv(upstream),
    })
    await example.waitFor(/listening on port/)
  })
  afterAll(async () => {
    await example?.stop()
    await upstream?.close()
  })

  it('serves list_reports scoped to the caller’s organization after the full OAuth flow', async () => {
    const provider = await signedInProvider({ url, upstream }, { user: ALICE.sub, port: 43130 })
    const { client } = await connectClient(`${url}/mcp`, provider)
    try {
      const result = await client.callTool({ name: 'list_reports', arguments: {} })
      expect(result.isError).toBeFalsy()
      const body = resultJson(result) as { orgCode: string; reports: { id: string }[] }
      expect(body.orgCode).toBe('org_acme')
      expect(body.reports.map((report) => report.id)).toEqual(['r-101', 'r-102'])

      const quarter = resultJson(
        await client.callTool({ name: 'list_reports', arguments: { quarter: '2025-Q2' } }),
      ) as { reports: { id: string }[] }
      expect(quarter.reports.map((report) => report.id)).toEqual(['r-102'])

      const me = await fetch(`${url}/api/me`, {
        headers: { authorization: `Bearer ${provider.saved?.access_token}` },
      })
      expect(me.status).toBe(200)
      const identity = (await me.json()) as Record<string, unknown>
      expect(identity).toMatchObject({ sub: ALICE.sub, orgCode: 'org_acme', actor: 'user' })
      expect(identity).not.toHaveProperty('upstreamAccessToken')
      expect((await fetch(`${url}/api/me`)).status).toBe(401)
    } finally {
      await client.close()
    }
  })
})

describe('examples/agent.ts', () => {
  const AGENT = {
    client_id: 'agent-acme',
    client_secret: 'agent-acme-secret',
    org_code: 'org_acme',
  }
  let proxy: ProxyUnderTest
  let example: Example | undefined

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', upstream: { m2mClients: [AGENT] } })
  })
  afterAll(async () => {
    await example?.stop()
    await proxy?.close()
  })

  it('connects with its M2M credentials and prints whoami: an agent of its organization', async () => {
    example = runExample('examples/agent.ts', {
      MCP_URL: `${proxy.url}/mcp`,
      AGENT_CLIENT_ID: AGENT.client_id,
      AGENT_CLIENT_SECRET: AGENT.client_secret,
    })
    const code = await example.exited()
    expect(example.stderr()).not.toMatch(/error/i)
    expect(code).toBe(0)
    expect(JSON.parse(example.stdout())).toMatchObject({
      sub: AGENT.client_id,
      actor: 'agent',
      orgCode: 'org_acme',
      clientId: AGENT.client_id,
    })
  })
})

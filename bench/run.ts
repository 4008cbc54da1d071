/**
 * `npm run bench`: throughput of the proxy's hot paths next to a bare Hono handler measured in
 * the same run, alternating targets round by round so a shared machine's noise falls on all
 * of them alike. Each server runs in its own process pinned to one core (`taskset`); autocannon
 * runs in this process, pinned to the other with Redis and the test upstream. All traffic is
 * loopback. See bench/RESULTS.md for the latest full run.
 *
 *   npm run bench                3 rounds × 5 s, RSS after 10,000 sessions, CPU profiles
 *   npm run bench -- --quick     1 round × 2 s, 1,000 sessions, no profiles, no RESULTS.md
 *
 * Options: --duration S, --rounds N, --connections C, --sessions N (0 skips the memory run),
 * --no-profile, --only session,stateless,dpop,modern,token,register,token-cluster,
 * token-sentinel (bare Hono always runs), --out FILE.
 */
import { execFileSync } from 'node:child_process'
import { createHash, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { calculateJwkThumbprint, type JWK } from 'jose'
import { pkce, registerClient } from '../test/support/flow.js'
import { initializeMessage, mcpRequest, PROTOCOL_VERSION } from '../test/support/mcp.js'
import { freePort } from '../test/support/net.js'
import {
  type RedisCluster,
  type RedisSentinelSet,
  startRedisCluster,
  startRedisSentinelSet,
} from '../test/support/redis-server.js'
import { type LoadResult, runLoad } from './load.js'
import { canPin, pinSelf, type ServerProcess, startRedis, startServerProcess } from './processes.js'
import { summarizeProfile } from './profile.js'
import {
  type Goal,
  type MemoryReport,
  median,
  memoryText,
  type ProfileReport,
  resultsMarkdown,
  resultsTable,
  summarize,
  type TargetSummary,
} from './report.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const BENCH_DIR = `${ROOT}/bench`
/** The server under test gets core 1; this process (load), and Redis, core 0. */
const SERVER_CPU = 1
const CLIENT_CPU = 0
const REDIRECT_URI = 'http://127.0.0.1:8976/callback'
const MAX_CODES = 100_000

interface Options {
  readonly quick: boolean
  readonly rounds: number
  readonly durationSeconds: number
  readonly warmupSeconds: number
  readonly connections: number
  readonly sessions: number
  readonly profile: boolean
  /** Targets to run besides bare Hono (always run: it is the reference); all by default. */
  readonly only: readonly TargetKey[] | undefined
  readonly out: string | undefined
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      sessions: { type: 'string' },
      'no-profile': { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
    },
    strict: true,
  })
  const quick = values.quick ?? false
  const whole = (name: string, value: string | undefined, fallback: number, min = 1) => {
    if (value === undefined) return fallback
    const parsed = Number(value)
    if (!Number.isInteger(parsed) || parsed < min) throw new Error(`--${name} must be ≥ ${min}`)
    return parsed
  }
  const durationSeconds = whole('duration', values.duration, quick ? 2 : 5)
  return {
    quick,
    rounds: whole('rounds', values.rounds, quick ? 1 : 3),
    durationSeconds,
    warmupSeconds: Math.min(2, durationSeconds),
    connections: whole('connections', values.connections, 50),
    sessions: whole('sessions', values.sessions, quick ? 1000 : 10_000, 0),
    profile: !quick && !values['no-profile'],
    only: values.only === undefined ? undefined : targetKeys(values.only),
    // A smoke run must not overwrite the recorded results.
    out: values.out ?? (quick ? undefined : `${BENCH_DIR}/RESULTS.md`),
  }
}

/** The headers a Streamable HTTP client sends with each JSON-RPC POST. */
function mcpHeaders(token: string, sessionId?: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL_VERSION,
    authorization: `Bearer ${token}`,
    ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
  }
}

/** A proxy under test, and a real access token for it. */
interface SignedIn {
  readonly server: ServerProcess
  readonly token: string
}

/** Opens an MCP session as a client does: `initialize`, then `notifications/initialized`. */
async function openSession({ server, token }: SignedIn): Promise<string> {
  const url = `${server.url}/mcp`
  const opened = await mcpRequest(url, { token, body: initializeMessage() })
  const sessionId = opened.headers.get('mcp-session-id')
  await opened.text()
  if (opened.status !== 200 || !sessionId) throw new Error(`initialize: ${opened.status}`)
  const initialized = await mcpRequest(url, {
    token,
    sessionId,
    body: { jsonrpc: '2.0', method: 'notifications/initialized' },
  })
  await initialized.text()
  if (initialized.status !== 202) throw new Error(`initialized: ${initialized.status}`)
  return sessionId
}

/** The session's `tools/list` response, read from its SSE event. */
async function listTools({ server, token }: SignedIn, sessionId: string): Promise<unknown> {
  const response = await mcpRequest(`${server.url}/mcp`, {
    token,
    sessionId,
    body: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
  })
  const text = await response.text()
  // The server may answer a request with JSON or with an SSE stream (MCP transports).
  const data = response.headers.get('content-type')?.startsWith('text/event-stream')
    ? /^data: (.+)$/m.exec(text)?.[1]
    : text
  if (response.status !== 200 || !data) throw new Error(`tools/list: ${response.status} ${text}`)
  return JSON.parse(data)
}

// One id for every request: with a session per connection and no pipelining, a session never
// has two requests in flight, so ids cannot collide; and autocannon then sends a prebuilt
// buffer instead of rebuilding each request, keeping the load generator's cost per request low
// (it, not the server, limits bare Hono on two cores).
const TOOLS_LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })
const listsTools = (body: string) => body.includes('"whoami"')

// The same request in the 2026-07-28 era: `_meta` on the request, its headers mirrored.
const MODERN_VERSION = '2026-07-28'
const MODERN_TOOLS_LIST = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/list',
  params: {
    _meta: {
      'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
      'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1.0.0' },
      'io.modelcontextprotocol/clientCapabilities': {},
    },
  },
})
const modernHeaders = (token: string) => ({
  ...mcpHeaders(token),
  'mcp-protocol-version': MODERN_VERSION,
  'mcp-method': 'tools/list',
})

/** Authenticated `tools/list` POSTs, connection `i` using `headersFor(i)`. */
function toolsListLoad(
  url: string,
  connections: number,
  headersFor: (connection: number) => Record<string, string>,
): autocannon.Options & { requests: autocannon.Request[] } {
  let next = 0
  return {
    url: `${url}/mcp`,
    connections,
    requests: [{ method: 'POST', body: TOOLS_LIST, headers: headersFor(0) }],
    setupClient: (client) => client.setHeaders(headersFor(next++)),
  }
}

const TARGET_KEYS = [
  'bare',
  'session',
  'stateless',
  'dpop',
  'modern',
  'token',
  'register',
  'token-cluster',
  'token-sentinel',
] as const
type TargetKey = (typeof TARGET_KEYS)[number]

function targetKeys(list: string): TargetKey[] {
  const keys = list.split(',').map((key) => key.trim())
  const unknown = keys.filter((key) => !(TARGET_KEYS as readonly string[]).includes(key))
  if (unknown.length) throw new Error(`--only: unknown target ${unknown.join(', ')}`)
  return keys as TargetKey[]
}

interface Target {
  readonly key: TargetKey
  readonly label: string
  readonly server: ServerProcess
  readonly goal: Goal | undefined
  /** Work before a run that is not measured (and not profiled): minting `/token` codes. */
  prepare?(seconds: number): Promise<void>
  run(seconds: number): Promise<LoadResult>
}

/**
 * `/token`: a public client exchanging codes minted in `server` (one use each) with PKCE. Runs
 * by amount (each code once), sized from the last measured rate to last `seconds`.
 */
async function tokenTarget(
  key: TargetKey,
  label: string,
  server: ServerProcess,
  options: { goal: Goal | undefined; connections: number },
): Promise<Target> {
  const { connections } = options
  const client = await registerClient(server.url, {
    client_name: 'bench',
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  })
  const { verifier, challenge } = pkce()
  const tokenForm = (code: string) =>
    new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      client_id: client.client_id,
      code_verifier: verifier,
      resource: `${server.url}/mcp`,
    }).toString()
  let tokenRate = 500
  let codes: string[] = []
  return {
    key,
    label,
    server,
    goal: options.goal,
    async prepare(seconds) {
      const wanted = Math.min(MAX_CODES, Math.max(connections, tokenRate * seconds))
      codes = await server.call({
        op: 'mint-codes',
        count: Math.ceil(wanted / connections) * connections,
        clientId: client.client_id,
        redirectUri: REDIRECT_URI,
        codeChallenge: challenge,
      })
    },
    async run() {
      const pool = codes
      if (pool.length === 0) throw new Error('/token: prepare() mints the codes a run uses')
      codes = []
      let next = 0
      const result = await runLoad(server, {
        url: server.url,
        connections,
        amount: pool.length,
        requests: [
          {
            method: 'POST',
            path: '/token',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            setupRequest: (request) => ({
              ...request,
              body: tokenForm(pool[next++ % pool.length] ?? ''),
            }),
          },
        ],
        expect: (body) => body.includes('"access_token"'),
      })
      if (result.okPerSecond > 0) tokenRate = result.okPerSecond
      return result
    },
  }
}

interface Servers {
  readonly bare: ServerProcess
  readonly session: SignedIn
  readonly stateless: SignedIn
}

/** A client's DPoP key, signing proofs the way a client does: one per request, unique jti. */
interface DpopSigner {
  readonly jkt: string
  proofs(count: number, htu: string, accessToken: string): string[]
}

/**
 * An ES256 DPoP key in the load generator. Proofs are signed ahead of a run (each is good
 * once and for a minute), with node:crypto so that signing 10,000s takes a second or two.
 */
async function createDpopSigner(): Promise<DpopSigner> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' }) as JWK
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'dpop+jwt', jwk }))
  const es256 = (input: string, key: KeyObject) =>
    sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  return {
    jkt: await calculateJwkThumbprint(jwk),
    proofs(count, htu, accessToken) {
      const ath = createHash('sha256').update(accessToken).digest('base64url')
      const iat = Math.floor(Date.now() / 1000)
      return Array.from({ length: count }, () => {
        const payload = b64url(JSON.stringify({ jti: randomUUID(), htm: 'POST', htu, iat, ath }))
        const input = `${header}.${payload}`
        return `${input}.${es256(input, privateKey)}`
      })
    },
  }
}

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url')
}

async function createTargets(
  { bare, session, stateless }: Servers,
  options: Options,
): Promise<Target[]> {
  const { connections } = options
  const sessionIds: string[] = []
  for (let i = 0; i < connections; i++) sessionIds.push(await openSession(session))
  // Bare Hono gets byte for byte the requests the session proxy gets.
  const sessionHeaders = (i: number) => mcpHeaders(session.token, sessionIds[i % connections])
  const statelessHeaders = () => mcpHeaders(stateless.token)

  // DPoP: a token bound to the load generator's key, and a fresh proof for every request,
  // run by amount (each proof once), sized from the last measured rate to last `seconds`.
  const dpop = await createDpopSigner()
  const dpopToken = await stateless.server.call({ op: 'mint-dpop-token', jkt: dpop.jkt })
  const dpopHeaders = { ...mcpHeaders(dpopToken), authorization: `DPoP ${dpopToken}` }
  let dpopRate = 3000
  let proofs: string[] = []

  const registration = JSON.stringify({
    client_name: 'bench client [<id>]',
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  })

  return [
    {
      key: 'bare',
      label: 'bare Hono `POST /mcp`',
      server: bare,
      goal: undefined,
      run: (duration) =>
        runLoad(bare, {
          ...toolsListLoad(bare.url, connections, sessionHeaders),
          duration,
          expect: listsTools,
        }),
    },
    {
      key: 'session',
      label: '`tools/list`, session',
      server: session.server,
      goal: { ratio: 0.25 },
      run: (duration) =>
        runLoad(session.server, {
          ...toolsListLoad(session.server.url, connections, sessionHeaders),
          duration,
          expect: listsTools,
        }),
    },
    {
      key: 'stateless',
      label: '`tools/list`, stateless',
      server: stateless.server,
      goal: { ratio: 0.1 },
      run: (duration) =>
        runLoad(stateless.server, {
          ...toolsListLoad(stateless.server.url, connections, statelessHeaders),
          duration,
          expect: listsTools,
        }),
    },
    {
      key: 'dpop',
      label: '`tools/list`, DPoP-bound, stateless',
      server: stateless.server,
      goal: { ratio: 0.12 },
      async prepare(seconds) {
        const wanted = Math.min(MAX_CODES, Math.max(connections, dpopRate * seconds))
        proofs = dpop.proofs(wanted, `${stateless.server.url}/mcp`, dpopToken)
      },
      async run() {
        const pool = proofs
        if (pool.length === 0) throw new Error('dpop: prepare() signs the proofs a run uses')
        proofs = []
        let next = 0
        const result = await runLoad(stateless.server, {
          url: `${stateless.server.url}/mcp`,
          connections,
          amount: pool.length,
          requests: [
            {
              method: 'POST',
              body: TOOLS_LIST,
              setupRequest: (request) => ({
                ...request,
                headers: { ...dpopHeaders, dpop: pool[next++ % pool.length] ?? '' },
              }),
            },
          ],
          expect: listsTools,
        })
        if (result.okPerSecond > 0) dpopRate = result.okPerSecond
        return result
      },
    },
    {
      key: 'modern',
      label: '`tools/list`, 2026-07-28',
      server: session.server,
      goal: { ratio: 0.4 },
      run: (duration) =>
        runLoad(session.server, {
          url: `${session.server.url}/mcp`,
          connections,
          requests: [
            { method: 'POST', body: MODERN_TOOLS_LIST, headers: modernHeaders(session.token) },
          ],
          duration,
          expect: listsTools,
        }),
    },
    await tokenTarget('token', '`/token` code exchange (Redis)', session.server, {
      goal: { perSecond: 1000 },
      connections,
    }),
    {
      key: 'register',
      label: '`/register` (Redis)',
      server: session.server,
      goal: undefined,
      run: (duration) =>
        runLoad(session.server, {
          url: session.server.url,
          connections,
          duration,
          idReplacement: true,
          requests: [
            {
              method: 'POST',
              path: '/register',
              headers: { 'content-type': 'application/json' },
              body: registration,
            },
          ],
          expect: (body) => body.includes('"client_id"'),
        }),
    },
  ]
}

function describe(result: LoadResult): string {
  const failures = result.failures
    ? `, ${result.failures} FAILED ${JSON.stringify(result.statusCodes)}`
    : ''
  return (
    `${Math.round(result.okPerSecond).toString().padStart(6)} ok/s` +
    `${Math.round(result.okPerCpuSecond).toString().padStart(7)} ok/CPU-s` +
    `  p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms` +
    `  server ${result.serverCores.toFixed(2)} cores  load ${result.clientCores.toFixed(2)} cores` +
    failures
  )
}

/** Every target once per round, the order rotated each round; warmed up first. */
async function measure(targets: readonly Target[], options: Options): Promise<TargetSummary[]> {
  for (const target of targets) {
    process.stdout.write(`warm-up  ${target.label}\n`)
    await target.prepare?.(options.warmupSeconds)
    await target.run(options.warmupSeconds)
  }
  const runs = new Map<TargetKey, LoadResult[]>(targets.map((target) => [target.key, []]))
  for (let round = 0; round < options.rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(round + i) % targets.length]
      if (!target) continue
      await target.prepare?.(options.durationSeconds)
      const result = await target.run(options.durationSeconds)
      runs.get(target.key)?.push(result)
      process.stdout.write(`round ${round + 1}  ${target.label.padEnd(34)} ${describe(result)}\n`)
    }
  }
  const bareRuns = runs.get('bare') ?? []
  const bare = {
    perSecond: median(bareRuns.map((run) => run.okPerSecond)),
    perCpuSecond: median(bareRuns.map((run) => run.okPerCpuSecond)),
  }
  return targets.map((target) =>
    summarize(target.label, target.goal, runs.get(target.key) ?? [], bare),
  )
}

/**
 * RSS of a fresh session-mode proxy before and after `count` sessions are opened
 * (`initialize` POSTs), read by the server itself, with and without a full GC.
 */
async function measureSessionMemory(proxy: SignedIn, options: Options): Promise<MemoryReport> {
  const { server } = proxy
  try {
    await listTools(proxy, await openSession(proxy))
    const before = await server.call({ op: 'memory', gc: true })
    const opened = await runLoad(server, {
      url: `${server.url}/mcp`,
      connections: Math.min(options.connections, options.sessions),
      amount: options.sessions,
      requests: [
        {
          method: 'POST',
          headers: mcpHeaders(proxy.token),
          body: JSON.stringify(initializeMessage()),
        },
      ],
      expect: (body) => body.includes('"protocolVersion"'),
    })
    const after = await server.call({ op: 'memory', gc: false })
    const afterGc = await server.call({ op: 'memory', gc: true })
    return {
      sessions: options.sessions,
      opened: opened.ok,
      openPerSecond: opened.okPerSecond,
      rssBefore: before.rss,
      rssAfter: after.rss,
      rssAfterGc: afterGc.rss,
      heapBefore: before.heapUsed,
      heapAfterGc: afterGc.heapUsed,
    }
  } finally {
    await server.close()
  }
}

/** CPU profiles of the server while `targets` run, summarised. */
async function profileTargets(
  targets: readonly Target[],
  options: Options,
): Promise<ProfileReport[]> {
  const dir = `${BENCH_DIR}/profiles`
  await mkdir(dir, { recursive: true })
  const reports: ProfileReport[] = []
  for (const target of targets) {
    const file = `${dir}/${target.key}.cpuprofile`
    await target.prepare?.(options.durationSeconds)
    await target.server.call({ op: 'profile-start', intervalMicros: 250 })
    const result = await target.run(options.durationSeconds)
    await target.server.call({ op: 'profile-stop', path: file })
    process.stdout.write(`profile  ${target.label.padEnd(34)} ${describe(result)}\n`)
    reports.push({
      label: target.label,
      okPerSecond: result.okPerSecond,
      file: file.slice(ROOT.length + 1),
      summary: await summarizeProfile(file, ROOT),
    })
  }
  return reports
}

/** How the Cluster's keys fall over its masters (hash tags must not pile them on one). */
async function keySpread(cluster: RedisCluster): Promise<string> {
  const masters = await cluster.masters()
  const counts = await Promise.all(
    masters.map(async ({ port }) => {
      const redis = new Redis({ port, host: '127.0.0.1' })
      try {
        return await redis.dbsize()
      } finally {
        redis.disconnect()
      }
    }),
  )
  const total = counts.reduce((a, b) => a + b, 0)
  const shares = counts.map((count) => `${((100 * count) / Math.max(1, total)).toFixed(1)} %`)
  return `Key spread over the Cluster's ${masters.length} masters after the run: ${shares.join(', ')} of ${total.toLocaleString('en')} keys`
}

function machine(pinned: boolean): string[] {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]
  const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim()
  return [
    `${nproc} cores (nproc), ${cpuModel ?? os.cpus()[0]?.model ?? 'unknown CPU'}, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM; ${os.type()} ${os.release()}`,
    `Node ${process.version}; load average at start ${os
      .loadavg()
      .map((load) => load.toFixed(2))
      .join(' ')} (the machine is shared)`,
    pinned
      ? `Servers under test pinned to core ${SERVER_CPU}; load generator, Redis and the test upstream to core ${CLIENT_CPU} (taskset)`
      : 'taskset unavailable: nothing pinned, so server and load generator share both cores',
  ]
}

function settings(options: Options): string {
  return [
    `${options.rounds} round(s) × ${options.durationSeconds} s per target after a ` +
      `${options.warmupSeconds} s warm-up each, ${options.connections} connections, no ` +
      'pipelining, autocannon 9 in the orchestrator process; targets alternate and each round ' +
      'rotates the order. "ok/s" counts only 2xx responses with the expected body. "vs bare" ' +
      'is the median against bare Hono’s median from the same run. "ok per server CPU-s" ' +
      'divides by the CPU time the server process used (from /proc): on a shared machine the ' +
      'server rarely gets its whole core, and bare Hono, the lightest target, is the one most ' +
      'often held back by a starved load generator, which flatters the wall-clock ratio.',
    '',
    '- **bare Hono**: `@hono/node-server` answering `POST /mcp` with the proxy’s own ' +
      '`tools/list` response via `c.json()`, sent byte for byte the session target’s requests.',
    '- **session**: the proxy (`MCP_SESSIONS=stateful`), one MCP session per connection, ' +
      'all with one real access token from the full flow (DCR, PKCE, consent, upstream login, ' +
      'code exchange); the verifier’s cache holds it, as for a client reusing its token.',
    '- **stateless**: `MCP_SESSIONS=stateless`, each POST a self-contained `tools/list`.',
    '- **DPoP-bound**: the stateless proxy with a token bound to an ES256 key (`cnf.jkt`), sent ' +
      'as `Authorization: DPoP` with a fresh proof (unique `jti`, `ath`) per request, signed in ' +
      'the load generator before each run; the server verifies every proof and records its ' +
      '`jti` in Redis (the token itself comes from the verifier’s cache).',
    '- **2026-07-28**: the session proxy answering the modern era’s `tools/list` (per-request ' +
      '`_meta`, `MCP-Protocol-Version: 2026-07-28`, `Mcp-Method`), which needs no session.',
    '- **/token**: authorization-code exchanges by a public client with PKCE, each code used ' +
      'once; codes and grants are minted in the server process before each run (the upstream ' +
      'login is not what is measured), refresh tokens issued. Store: a private Redis; then the ' +
      'same on a Redis Cluster (3 masters, 3 replicas) and on a Sentinel-watched master with ' +
      'one replica and three sentinels (both unpinned), where each new grant and rotated ' +
      'refresh token waits for a replica (`WAIT 1`).',
    '- **/register**: public-client registrations, each with a unique `client_name` (no ' +
      'deduplication hit); `REGISTER_RATE_LIMIT=0`, `TOKEN_RATE_LIMIT=0`.',
    '- Proxies log at `info` (the production default) to /dev/null. The upstream ' +
      '(oidc-provider, looking like Kinde) runs in a process of its own: its AsyncLocalStorage ' +
      'would otherwise turn on promise hooks in the proxy’s process.',
  ].join('\n')
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`
  // Described before pinning: nproc counts only the cores this process may use.
  const machineLines = machine(canPin)
  const pinned = canPin && pinSelf(CLIENT_CPU)
  for (const line of machineLines) process.stdout.write(`${line}\n`)
  const date = new Date().toISOString()
  const redis = await startRedis(pinned ? CLIENT_CPU : undefined)
  const servers: ServerProcess[] = []
  let cluster: RedisCluster | undefined
  let sentinelSet: RedisSentinelSet | undefined
  const start = async (...args: Parameters<typeof startServerProcess>) => {
    const server = await startServerProcess(...args)
    servers.push(server)
    return server
  }
  try {
    const ports = {
      stateful: await freePort(),
      stateless: await freePort(),
      memory: await freePort(),
    }
    const upstream = await start(
      'upstream',
      {
        kind: 'upstream',
        proxyUrls: Object.values(ports).map((port) => `http://127.0.0.1:${port}`),
      },
      { cpu: pinned ? CLIENT_CPU : undefined },
    )
    const proxy = async (
      name: keyof typeof ports,
      nodeFlags: readonly string[] = [],
    ): Promise<SignedIn> => {
      const server = await start(
        name,
        {
          kind: 'proxy',
          port: ports[name],
          sessions: name === 'stateless' ? 'stateless' : 'stateful',
          redisUrl: redis.url,
          keyPrefix: `bench:${name}:`,
          upstreamEnv: upstream.upstreamEnv,
        },
        { cpu: SERVER_CPU, nodeFlags },
      )
      return { server, token: await upstream.call({ op: 'sign-in', proxyUrl: server.url }) }
    }
    const session = await proxy('stateful')
    const stateless = await proxy('stateless')
    const response = await listTools(session, await openSession(session))
    const bare = await start('bare', { kind: 'bare', response }, { cpu: SERVER_CPU })
    const targets = (await createTargets({ bare, session, stateless }, options)).filter(
      (target) => target.key === 'bare' || !options.only || options.only.includes(target.key),
    )
    // The same /token run against a proxy on a Redis Cluster (3 masters, 3 replicas) and on a
    // Sentinel-watched master with a replica, started here like the tests start them
    // (unpinned), so grants wait for a replica (WAIT 1) as they do in production.
    const onTopology = async (name: string, redisEnv: Record<string, string>) =>
      start(
        name,
        {
          kind: 'proxy',
          port: await freePort(),
          sessions: 'stateful',
          redisUrl: redis.url,
          // REDIS_WAIT_REPLICAS=0 npm run bench … shows what waiting for a replica costs.
          redisEnv: { ...redisEnv, REDIS_WAIT_REPLICAS: process.env.REDIS_WAIT_REPLICAS ?? '1' },
          keyPrefix: `bench:${name}:`,
          upstreamEnv: upstream.upstreamEnv,
        },
        { cpu: SERVER_CPU },
      )
    const wants = (key: TargetKey) => !options.only || options.only.includes(key)
    if (wants('token-cluster')) {
      cluster = await startRedisCluster()
      const nodes = cluster.nodes.map(({ host, port }) => `${host}:${port}`).join(',')
      const server = await onTopology('cluster', { REDIS_CLUSTER_NODES: nodes })
      targets.push(
        await tokenTarget('token-cluster', '`/token` code exchange (Redis Cluster)', server, {
          goal: { perSecond: 1500 },
          connections: options.connections,
        }),
      )
    }
    if (wants('token-sentinel')) {
      sentinelSet = await startRedisSentinelSet()
      const server = await onTopology('sentinel', {
        REDIS_SENTINELS: sentinelSet.sentinels.map(({ host, port }) => `${host}:${port}`).join(','),
        REDIS_SENTINEL_MASTER: sentinelSet.masterName,
      })
      targets.push(
        await tokenTarget('token-sentinel', '`/token` code exchange (Sentinel)', server, {
          goal: { perSecond: 1000 },
          connections: options.connections,
        }),
      )
    }

    const summaries = await measure(targets, options)
    process.stdout.write(`\n${resultsTable(summaries)}\n\n`)
    const spread = cluster ? await keySpread(cluster) : undefined
    if (spread) process.stdout.write(`${spread}\n\n`)

    let memory: MemoryReport | undefined
    if (options.sessions > 0) {
      process.stdout.write(`opening ${options.sessions} sessions on a fresh proxy…\n`)
      // A fresh proxy, so the sessions are all its state holds besides the warm-up's.
      memory = await measureSessionMemory(await proxy('memory', ['--expose-gc']), options)
      process.stdout.write(`${memoryText(memory)}\n\n`)
    }

    const profiles = options.profile
      ? await profileTargets(
          targets.filter((t) =>
            ['session', 'stateless', 'dpop', 'modern', 'token'].includes(t.key),
          ),
          options,
        )
      : []

    if (options.out) {
      const markdown = resultsMarkdown({
        date,
        command,
        machine: [
          ...machineLines,
          `Load average at end ${os
            .loadavg()
            .map((l) => l.toFixed(2))
            .join(' ')}`,
        ],
        settings: spread ? `${settings(options)}\n\n${spread}.` : settings(options),
        targets: summaries,
        memory,
        profiles,
      })
      await writeFile(options.out, markdown)
      process.stdout.write(`wrote ${options.out}\n`)
    }
  } finally {
    for (const server of servers.reverse()) await server.close()
    await redis.stop()
    await cluster?.dispose()
    await sentinelSet?.dispose()
  }
}

await main()

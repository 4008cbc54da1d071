/**
 * The MCP project's own conformance suite (@modelcontextprotocol/conformance 0.2.x, on Node 22)
 * against the proxy:
 *
 * - its authorization-server scenarios against the proxy as the issuer: the RFC 8414 metadata,
 *   then an authorization code grant with PKCE for a client registered through DCR, the login
 *   done by our headless browser script on the URL the suite prints;
 * - its server scenarios (the active suite) against `/mcp`, with an access token the proxy
 *   issued through its own OAuth flow. The suite's server runner has no auth of its own, so a
 *   loopback forwarder adds the bearer header. Three setups:
 *   - the built-in tools, stateful and stateless sessions: `/mcp` is a tools-only server, so
 *     the scenarios for the suite's reference fixtures are expected failures, listed with the
 *     reason in `conformance-server-baseline.yml`;
 *   - forward mode (`MCP_UPSTREAM_URL`) to a backend that has those fixtures
 *     (`support/everything-backend.ts`), which passes every scenario on its own (checked
 *     first): through the proxy everything must pass but what
 *     `conformance-server-baseline.forward.yml` lists.
 *   The suite enforces a baseline both ways: a failure not listed fails the run, and so does a
 *   listed scenario that passes.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { registerClient } from '../support/flow.js'
import { accessTokenOf, signedInProvider } from '../support/mcp.js'
import { type ModernBackend, startModernBackend } from '../support/modern-backend.js'
import { freePort } from '../support/net.js'
import type { ProxyUnderTest } from '../support/proxy.js'
import { startBearerForwarder } from './support/bearer-forwarder.js'
import { type Backend, startEverythingBackend } from './support/everything-backend.js'
import { startOutsideProxy, tempDir } from './support/fixture.js'
import {
  BROWSER_LOGIN,
  CONFORMANCE,
  NODE20,
  NODE22,
  OUTSIDE_DIR,
  requireTools,
  startNode,
  versionOf,
} from './support/tools.js'

requireTools()
const VERSION = versionOf('@modelcontextprotocol/conformance')

interface Check {
  id: string
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO'
  errorMessage?: string
}

/** Every scenario's checks from the suite's `-o` directory (`<kind>-<scenario>-<timestamp>`). */
async function readResults(dir: string, kind: string): Promise<Map<string, Check[]>> {
  const results = new Map<string, Check[]>()
  // No directory: the suite stopped before any scenario ran; the assertions show its output.
  const entries = await readdir(dir).catch(() => [])
  for (const entry of entries) {
    const scenario = entry.replace(`${kind}-`, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '')
    const checks = JSON.parse(await readFile(join(dir, entry, 'checks.json'), 'utf8')) as Check[]
    results.set(scenario, checks)
  }
  return results
}

/** `scenario: status` of each scenario's worst check, for a readable assertion and log. */
function verdicts(results: Map<string, Check[]>): Record<string, string> {
  // INFO checks report what was observed (a stateless server's skipped lifecycle, say): passes.
  const order = ['FAILURE', 'WARNING', 'SKIPPED', 'SUCCESS']
  return Object.fromEntries(
    [...results].map(([scenario, checks]) => [
      scenario,
      checks
        .map((c) => (c.status === 'INFO' ? 'SUCCESS' : c.status))
        .sort((a, b) => order.indexOf(a) - order.indexOf(b))[0] ?? 'NO CHECKS',
    ]),
  )
}

const baselineFile = (name: string) => join(OUTSIDE_DIR, name)

/** The 2026-07-28 server scenarios that apply to a tools-only server on the proxy's own `/mcp`. */
const MODERN_REQUIRED = [
  'server-stateless',
  'tools-list',
  'caching',
  'dns-rebinding-protection',
  'http-header-validation',
]

/**
 * Runs the active server suite against `mcpUrl` with `baseline` as its expected failures;
 * returns the exit code, the verdict per scenario and the output.
 */
async function runServerSuite(
  mcpUrl: string,
  baseline: string | undefined,
  label: string,
  extraArgs: readonly string[] = [],
): Promise<{
  code: number | null
  verdict: Record<string, string>
  results: Map<string, Check[]>
  output: string
}> {
  const out = await tempDir(`conformance-server-${label}`)
  try {
    const args = ['server', '--url', mcpUrl, '--output-dir', join(out.path, 'results')]
    args.push(...extraArgs)
    if (baseline !== undefined) {
      await writeFile(join(out.path, 'baseline.yml'), baseline)
      args.push('--expected-failures', join(out.path, 'baseline.yml'))
    }
    const suite = startNode(NODE22, CONFORMANCE, args)
    const done = await suite.finish(240_000)
    const results = await readResults(join(out.path, 'results'), 'server')
    const verdict = verdicts(results)
    console.log(`conformance ${VERSION} server scenarios (${label}):`, verdict)
    return { code: done.code, verdict, results, output: suite.output() }
  } finally {
    await out.remove()
  }
}

describe(`@modelcontextprotocol/conformance ${VERSION}`, () => {
  let proxy: ProxyUnderTest

  beforeAll(async () => {
    proxy = await startOutsideProxy()
  })

  afterAll(async () => {
    await proxy?.close()
  })

  it('passes the authorization-server scenarios (metadata, code grant with PKCE and a DCR client)', async () => {
    const out = await tempDir('conformance-as')
    try {
      const port = await freePort()
      const { client_id } = await registerClient(proxy.url, {
        client_name: 'MCP conformance suite',
        redirect_uris: [`http://127.0.0.1:${port}/callback`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      })
      const suite = startNode(NODE22, CONFORMANCE, [
        'authorization',
        ...['--url', proxy.url, '--client-id', client_id, '--resource', `${proxy.url}/mcp`],
        ...['--port', String(port), '--output-dir', out.path],
      ])
      try {
        // The suite prints the authorization URL for a person to open; our browser opens it.
        const [authorizeUrl] = await suite.waitFor(/^http\S+\/authorize\?\S+$/m, 30_000)
        await suite.waitFor(/Callback server started/, 10_000)
        const browser = await startNode(NODE20, BROWSER_LOGIN, [authorizeUrl]).finish(30_000)
        expect(browser.code, browser.stderr).toBe(0)
        const done = await suite.finish(60_000)
        const verdict = verdicts(await readResults(out.path, 'authorization-server'))
        console.log(`conformance ${VERSION} authorization-server scenarios:`, verdict)
        expect(verdict).toEqual({
          'authorization-server-metadata-endpoint': 'SUCCESS',
          'authorization-code-grant': 'SUCCESS',
        })
        expect(done.code, suite.output()).toBe(0)
      } finally {
        suite.stop()
      }
    } finally {
      await out.remove()
    }
  })

  it.each(['stateful', 'stateless'] as const)(
    'passes the server scenarios a tools-only /mcp can pass (built-in tools, %s sessions)',
    async (mode) => {
      const under = mode === 'stateful' ? proxy : await startOutsideProxy({ MCP_SESSIONS: mode })
      const signedIn = await signedInProvider(under, { port: await freePort() })
      const forwarder = await startBearerForwarder(under.url, accessTokenOf(signedIn))
      try {
        let baseline = await readFile(baselineFile('conformance-server-baseline.yml'), 'utf8')
        // Stateless: GET /mcp is 405 (the transport allows it), so there is no session for the
        // suite's multiple-streams check; baselined by check id, the scenario's others count.
        if (mode === 'stateless') {
          baseline = `${baseline.trimEnd()}\n  - server-sse-multiple-streams:server-sse-multiple-streams-session\n`
        }
        const { code, verdict, output } = await runServerSuite(
          `${forwarder.url}/mcp`,
          baseline,
          mode,
        )
        // What a tools-only Streamable HTTP server must pass, whatever the baseline says. A
        // stateless server has no session: the suite then skips the lifecycle checks (INFO).
        expect(verdict).toMatchObject({
          'server-initialize': 'SUCCESS',
          ping: 'SUCCESS',
          'tools-list': 'SUCCESS',
          'server-session-lifecycle': 'SUCCESS',
          'server-sse-multiple-streams': mode === 'stateful' ? 'SUCCESS' : 'WARNING',
        })
        expect(code, output).toBe(0)
      } finally {
        await forwarder.close()
        if (under !== proxy) await under.close()
      }
    },
  )

  it.each(['stateful', 'stateless'] as const)(
    'passes the 2026-07-28 requirements a tools-only /mcp can pass (built-in tools, %s sessions)',
    async (mode) => {
      const under = mode === 'stateful' ? proxy : await startOutsideProxy({ MCP_SESSIONS: mode })
      const signedIn = await signedInProvider(under, { port: await freePort() })
      const forwarder = await startBearerForwarder(under.url, accessTokenOf(signedIn))
      try {
        const baseline = await readFile(
          baselineFile('conformance-server-baseline.2026-07-28.yml'),
          'utf8',
        )
        const { code, results, output } = await runServerSuite(
          `${forwarder.url}/mcp`,
          baseline,
          `2026-07-28-${mode}`,
          ['--requirements', '2026-07-28'],
        )
        // What the modern era of a tools-only server must pass, whatever the baseline says:
        // every check of these scenarios but those the baseline names one by one (a check the
        // suite skips, such as prompts list-changed on a server without prompts, is no failure).
        const excused = new Set(
          [...baseline.matchAll(/^\s*-\s*([\w-]+:[\w-]+)\s*$/gm)].map(([, id]) => id),
        )
        for (const scenario of MODERN_REQUIRED) {
          const checks = results.get(scenario)
          expect(checks?.length, `${scenario} ran no check\n${output}`).toBeGreaterThan(0)
          const failing = (checks ?? []).filter(
            (check) =>
              !['SUCCESS', 'INFO', 'SKIPPED'].includes(check.status) &&
              !excused.has(`${scenario}:${check.id}`),
          )
          expect(failing, scenario).toEqual([])
        }
        expect(code, output).toBe(0)
      } finally {
        await forwarder.close()
        if (under !== proxy) await under.close()
      }
    },
  )

  describe('forward mode (MCP_UPSTREAM_URL) to a backend with the suite fixtures', () => {
    let backend: Backend
    let forwarding: ProxyUnderTest
    let scenarios: string[] = []

    beforeAll(async () => {
      backend = await startEverythingBackend()
      forwarding = await startOutsideProxy({ MCP_UPSTREAM_URL: backend.url })
    })

    afterAll(async () => {
      await forwarding?.close()
      await backend?.close()
    })

    it('the backend alone passes every active server scenario (the control)', async () => {
      const { code, verdict, output } = await runServerSuite(backend.url, undefined, 'backend')
      scenarios = Object.keys(verdict).sort()
      expect(scenarios.length, output).toBeGreaterThan(0)
      expect(
        Object.values(verdict).every((status) => status === 'SUCCESS'),
        output,
      ).toBe(true)
      expect(code, output).toBe(0)
    })

    it('through the proxy, every active server scenario passes as it does on the backend', async () => {
      const signedIn = await signedInProvider(forwarding, { port: await freePort() })
      const forwarder = await startBearerForwarder(forwarding.url, accessTokenOf(signedIn))
      try {
        const { code, verdict, output } = await runServerSuite(
          `${forwarder.url}/mcp`,
          undefined,
          'forward',
        )
        expect(Object.keys(verdict).sort()).toEqual(scenarios)
        const failing = Object.entries(verdict).filter(([, status]) => status !== 'SUCCESS')
        expect(failing, output).toEqual([])
        expect(code, output).toBe(0)
      } finally {
        await forwarder.close()
      }
    })
  })

  describe('forward mode (MCP_UPSTREAM_URL) to a 2026-07-28 backend (v2 SDK)', () => {
    let backend: ModernBackend
    let forwarding: ProxyUnderTest

    beforeAll(async () => {
      backend = await startModernBackend({ checkTokens: false })
      forwarding = await startOutsideProxy({ MCP_UPSTREAM_URL: backend.mcpUrl })
    })

    afterAll(async () => {
      await forwarding?.close()
      await backend?.close()
    })

    it('passes through the proxy every 2026-07-28 scenario the backend passes on its own', async () => {
      const requirements = ['--requirements', '2026-07-28']
      const alone = await runServerSuite(backend.mcpUrl, undefined, 'backend-2026', requirements)
      const passing = Object.keys(alone.verdict).filter((s) => alone.verdict[s] === 'SUCCESS')
      // The control: the backend (three tools, one with an `x-mcp-header` parameter) passes
      // the header scenarios on its own, so through the proxy they show the mirrored headers
      // (Mcp-Method, Mcp-Name, Mcp-Param-*) crossing forward mode intact.
      expect(passing, alone.output).toEqual(
        expect.arrayContaining([
          'tools-list',
          'http-header-validation',
          'http-custom-header-server-validation',
        ]),
      )
      const signedIn = await signedInProvider(forwarding, { port: await freePort() })
      const forwarder = await startBearerForwarder(forwarding.url, accessTokenOf(signedIn))
      try {
        const through = await runServerSuite(
          `${forwarder.url}/mcp`,
          undefined,
          'forward-2026',
          requirements,
        )
        const lost = passing.filter((scenario) => through.verdict[scenario] !== 'SUCCESS')
        expect(lost, through.output).toEqual([])
      } finally {
        await forwarder.close()
      }
    })
  })
})

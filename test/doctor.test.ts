import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  assessChallenge,
  assessCors,
  assessDiscover,
  assessOfflineAccess,
  assessProtectedResourceMetadata,
  authorizationServerMetadataUrl,
  CHECK,
  type CheckResult,
  formatReport,
  parseBearerChallenge,
  protectedResourceMetadataUrls,
  runDoctor,
} from '../src/cli/doctor.js'
import { serveApp } from './support/mcp.js'
import { freePort } from './support/net.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const run = promisify(execFile)

/** Runs the CLI from source as a child process; resolves with its exit code and output. */
async function doctor(...args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'doctor', ...args],
      { timeout: 30_000 },
    )
    return { code: 0, stdout }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: `${failed.stdout ?? ''}${failed.stderr ?? ''}` }
  }
}

const statusOf = (results: CheckResult[], name: string) =>
  results.find((result) => result.name === name)?.status

describe('mcp-oauth-proxy doctor', () => {
  let proxy: ProxyUnderTest
  let broken: { url: string; close(): Promise<void> }

  beforeAll(async () => {
    proxy = await startProxy({ flavor: 'kinde', store: 'memory' })
    // A deployment gone wrong: metadata naming another resource, an MCP endpoint that lets
    // anyone in, no registration endpoint and no readiness probe.
    const app = new Hono()
    const wrongPrm = (c: { json: (body: unknown) => Response }) =>
      c.json({
        resource: 'https://elsewhere.example/mcp',
        authorization_servers: [proxy.url],
        scopes_supported: ['openid', 'offline_access'],
      })
    app.get('/.well-known/oauth-protected-resource', wrongPrm)
    app.get('/.well-known/oauth-protected-resource/mcp', wrongPrm)
    app.post('/mcp', (c) => c.json({ jsonrpc: '2.0', id: 1, result: {} }))
    broken = await serveApp(app)
  })

  afterAll(async () => {
    await Promise.all([proxy?.close(), broken?.close()])
  })

  it('passes every check against a running proxy and exits 0', async () => {
    const { code, stdout } = await doctor(`${proxy.url}/mcp`)
    expect(code, stdout).toBe(0)
    const lines = stdout.split('\n').filter((line) => /^[✔✘-] /.test(line))
    expect(lines).toHaveLength(12)
    expect(
      lines.every((line) => line.startsWith('✔ ')),
      stdout,
    ).toBe(true)
    expect(stdout).toContain('registers a public client "mcp-oauth-proxy doctor"')
    expect(stdout).toContain(`✔ ${CHECK.upstream}`)
    expect(stdout).toContain('✔ /readyz (store: memory)')
    expect(stdout).toContain('a modern request without a token gets the 401 challenge')
    expect(stdout).toContain('12 passed, 0 failed')
    expect(stdout).not.toContain('did you mean')
  })

  it('fails against a broken deployment, naming the failing checks, and exits 1', async () => {
    const { code, stdout } = await doctor(`${broken.url}/mcp`)
    expect(code, stdout).toBe(1)
    const resourceProblem = `resource is "https://elsewhere.example/mcp", expected "${broken.url}/mcp"`
    expect(stdout).toContain(
      `✘ protected resource metadata at /.well-known/oauth-protected-resource/mcp — ${resourceProblem}`,
    )
    expect(stdout).toContain(
      `✘ protected resource metadata at /.well-known/oauth-protected-resource — ${resourceProblem}`,
    )
    expect(stdout).toContain(
      '✘ 401 challenge with resource_metadata — a request without a token answered 200, expected 401',
    )
    expect(stdout).toContain(
      '✘ offline_access only in authorization server metadata — the protected resource metadata lists offline_access',
    )
    expect(stdout).toContain('✘ /readyz — GET /readyz answered 404, expected 200')
    expect(stdout).toContain(
      '✘ MCP 2026-07-28 server/discover — answered 200: the endpoint does not serve MCP 2026-07-28 requests',
    )
    // The authorization server it points at is the healthy proxy: those checks still pass.
    expect(stdout).toContain('✔ PKCE S256 advertised')
    expect(stdout).toContain('✔ JWKS reachable')
  })

  it('reports an unreachable deployment without a stack trace', async () => {
    const { code, stdout } = await doctor(
      `http://127.0.0.1:${await freePort()}/mcp`,
      '--no-register',
      '--timeout',
      '2',
    )
    expect(code).toBe(1)
    expect(stdout).toMatch(/✘ \/readyz — GET \/readyz: cannot connect \(ECONNREFUSED\)/)
    expect(stdout).toContain('- dynamic client registration of a loopback native client')
    expect(stdout).not.toMatch(/\n\s+at /)
  })

  it('asks "did you mean …/mcp?" when given the origin alone', async () => {
    const { code, stdout } = await doctor(proxy.url, '--no-register')
    expect(code).toBe(1)
    expect(stdout).toContain(`${proxy.url} has no path: did you mean ${proxy.url}/mcp?`)
    // With the trailing slash people paste, too.
    const slash = await doctor(`${proxy.url}/`, '--no-register')
    expect(slash.stdout).toContain(`did you mean ${proxy.url}/mcp?`)
  })

  it('prints its usage for --help and -h and exits 0', async () => {
    for (const flag of ['--help', '-h']) {
      const { code, stdout } = await doctor(flag)
      expect(code, stdout).toBe(0)
      expect(stdout).toMatch(/^Usage: mcp-oauth-proxy doctor <mcp-url>/)
      expect(stdout).not.toContain('mcp-oauth-proxy: ')
    }
  })

  it('refuses a command line without a URL with exit code 2', async () => {
    const { code, stdout } = await doctor()
    expect(code).toBe(2)
    expect(stdout).toContain('Usage: mcp-oauth-proxy doctor <mcp-url>')
  })

  it('runs in-process with an injected fetch, skipping the registration when asked', async () => {
    let registrations = 0
    const counting: typeof fetch = (input, init) => {
      if (String(input).endsWith('/register')) registrations++
      return fetch(input, init)
    }
    const results = await runDoctor(`${proxy.url}/mcp`, { fetch: counting, register: false })
    expect(registrations).toBe(0)
    expect(statusOf(results, CHECK.registration)).toBe('skip')
    expect(results.filter((r) => r.status === 'fail')).toEqual([])
    expect(formatReport(results)).toMatch(/11 passed, 0 failed, 1 skipped\n$/)
  })
})

describe('doctor check functions', () => {
  it('says which request got no answer in time', async () => {
    const silent: typeof fetch = () =>
      Promise.reject(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))
    const results = await runDoctor('https://mcp.example.com/mcp', { fetch: silent })
    expect(results.find((r) => r.name === CHECK.ready)).toEqual({
      name: CHECK.ready,
      status: 'fail',
      detail: 'GET /readyz: no answer within 10 s',
    })
    expect(results.find((r) => r.name === CHECK.challenge)?.detail).toBe(
      'POST /mcp: no answer within 10 s',
    )
  })

  it('derives both protected-resource metadata URLs (RFC 9728 §3.1)', () => {
    expect(protectedResourceMetadataUrls(new URL('https://mcp.example.com/mcp'))).toEqual([
      'https://mcp.example.com/.well-known/oauth-protected-resource/mcp',
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ])
    expect(protectedResourceMetadataUrls(new URL('https://mcp.example.com'))).toEqual([
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ])
  })

  it('derives the authorization-server metadata URL of an issuer (RFC 8414 §3.1)', () => {
    expect(authorizationServerMetadataUrl('https://as.example.com')).toBe(
      'https://as.example.com/.well-known/oauth-authorization-server',
    )
    expect(authorizationServerMetadataUrl('https://as.example.com/tenant/')).toBe(
      'https://as.example.com/.well-known/oauth-authorization-server/tenant',
    )
  })

  it('parses a Bearer challenge among others, undoing quoted-string escapes', () => {
    expect(
      parseBearerChallenge(
        'Basic realm="x", Bearer error="invalid_token", error_description="a \\"quoted\\" word", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"',
      ),
    ).toEqual({
      error: 'invalid_token',
      error_description: 'a "quoted" word',
      resource_metadata: 'https://h/.well-known/oauth-protected-resource/mcp',
    })
    expect(parseBearerChallenge('Basic realm="x"')).toBeUndefined()
    expect(parseBearerChallenge(null)).toBeUndefined()
  })

  it('accepts a 401 with resource_metadata and refuses one without', () => {
    const challenge = (value: string | undefined, status = 401) =>
      assessChallenge({
        status,
        headers: new Headers(value ? { 'www-authenticate': value } : {}),
      })
    expect(challenge('Bearer resource_metadata="https://h/.well-known/x"')).toEqual({
      result: { name: CHECK.challenge, status: 'pass', detail: undefined },
      resourceMetadata: 'https://h/.well-known/x',
    })
    expect(challenge('Bearer realm="mcp"').result).toMatchObject({
      status: 'fail',
      detail: 'the challenge has no resource_metadata: Bearer realm="mcp"',
    })
    expect(challenge(undefined).result.detail).toBe(
      'no Bearer challenge in WWW-Authenticate: (none)',
    )
    expect(challenge(undefined, 200).result.status).toBe('fail')
  })

  it('checks that metadata names exactly the resource it was fetched for', () => {
    const name = CHECK.prmAt('/x')
    const doc = (json: Record<string, unknown>) => ({ url: 'https://h/x', json })
    expect(
      assessProtectedResourceMetadata(
        name,
        doc({ resource: 'https://h/mcp', authorization_servers: ['https://h'] }),
        'https://h/mcp',
      ).status,
    ).toBe('pass')
    expect(
      assessProtectedResourceMetadata(
        name,
        doc({ resource: 'https://h/mcp/', authorization_servers: ['https://h'] }),
        'https://h/mcp',
      ),
    ).toMatchObject({
      status: 'fail',
      detail: 'resource is "https://h/mcp/", expected "https://h/mcp"',
    })
    expect(
      assessProtectedResourceMetadata(
        name,
        { url: 'https://h/x', problem: 'GET /x answered 404' },
        '',
      ),
    ).toMatchObject({ status: 'fail', detail: 'GET /x answered 404' })
  })

  it('wants offline_access in the authorization server metadata only', () => {
    const asm = { scopes_supported: ['openid', 'offline_access'] }
    expect(assessOfflineAccess([{ scopes_supported: ['openid'] }], asm).status).toBe('pass')
    expect(
      assessOfflineAccess([{ scopes_supported: ['openid', 'offline_access'] }], asm).status,
    ).toBe('fail')
    expect(assessOfflineAccess([{}], { scopes_supported: ['openid'] }).detail).toBe(
      'the authorization server metadata does not list offline_access',
    )
  })

  it('wants server/discover answered, or challenged with the 401 of a protected endpoint', () => {
    const challenged = {
      status: 401,
      headers: new Headers({
        'www-authenticate': 'Bearer resource_metadata="https://mcp.example.com/.well-known/x"',
      }),
    }
    expect(assessDiscover(challenged, undefined).status).toBe('pass')
    const open = { status: 200, headers: new Headers() }
    expect(assessDiscover(open, { result: { supportedVersions: ['2026-07-28'] } }).detail).toBe(
      'supported versions: 2026-07-28',
    )
    // A 2025-only server refuses the request it cannot read.
    expect(assessDiscover({ status: 400, headers: new Headers() }, undefined).status).toBe('fail')
    expect(assessDiscover({ status: 401, headers: new Headers() }, undefined).status).toBe('fail')
  })

  it('wants WWW-Authenticate exposed and Authorization allowed explicitly', () => {
    const challenge = {
      headers: new Headers({
        'access-control-allow-origin': '*',
        'access-control-expose-headers': 'WWW-Authenticate,Mcp-Session-Id',
      }),
    }
    const preflight = (allowHeaders: string) => ({
      status: 204,
      headers: new Headers({
        'access-control-allow-origin': '*',
        'access-control-allow-headers': allowHeaders,
      }),
    })
    expect(
      assessCors(
        challenge,
        preflight('Authorization,Content-Type,MCP-Protocol-Version,Mcp-Method,Mcp-Name'),
      ).status,
    ).toBe('pass')
    // A 2025-era allow-list leaves 2026-07-28 browser clients out.
    expect(
      assessCors(challenge, preflight('Authorization,Content-Type,MCP-Protocol-Version')).detail,
    ).toBe('the preflight does not allow mcp-method, mcp-name')
    // Fetch: the `*` wildcard never covers Authorization.
    expect(assessCors(challenge, preflight('*')).detail).toBe(
      'the preflight does not allow authorization',
    )
    expect(
      assessCors({ headers: new Headers({ 'access-control-allow-origin': '*' }) }, preflight('*'))
        .detail,
    ).toBe('Access-Control-Expose-Headers does not include WWW-Authenticate')
  })
})

/**
 * `mcp-oauth-proxy revoke`: the operator's command, run as a child process with the server's
 * environment against the server's Redis, while the server keeps serving.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveClient, mcpStatus, refreshOutcome } from './support/grants.js'
import { freePort } from './support/net.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { UpstreamUser } from './support/upstream.js'

const run = promisify(execFile)
const ALICE: UpstreamUser = { sub: 'kp_alice', email: 'alice@example.test' }
const BOB: UpstreamUser = { sub: 'kp_bob', email: 'bob@example.test' }

/** Runs the CLI from source with exactly `env` (plus PATH); its exit code and output. */
async function revoke(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'revoke', ...args],
      { timeout: 30_000, env: { PATH: process.env.PATH ?? '', ...env } },
    )
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

describe('mcp-oauth-proxy revoke against Redis', () => {
  let proxy: ProxyUnderTest
  let dir: string
  let env: Record<string, string>

  beforeAll(async () => {
    ;[proxy, dir] = await Promise.all([
      startProxy({ flavor: 'kinde', store: 'redis', upstream: { users: [ALICE, BOB] } }),
      mkdtemp(join(tmpdir(), 'revoke-cli-')),
    ])
    env = { ...proxy.env, AUDIT_LOG: join(dir, 'audit.log') }
  })
  afterAll(async () => {
    await proxy?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it("ends one client's grants, then all of a user's, and nobody else's", async () => {
    const [claude, cursor, bobs] = await Promise.all([
      approveClient(proxy, 'Claude', ALICE.sub),
      approveClient(proxy, 'Cursor', ALICE.sub),
      approveClient(proxy, 'Bob tool', BOB.sub),
    ])

    const one = await revoke(env, '--sub', ALICE.sub, '--client', claude.clientId)
    expect(one).toMatchObject({ code: 0 })
    expect(one.stdout).toBe(`ended 1 grant of ${ALICE.sub} for client ${claude.clientId}\n`)
    expect(await mcpStatus(proxy, claude.accessToken)).toBe(401)
    expect(await refreshOutcome(proxy, claude)).toBe('invalid_grant')
    expect(await refreshOutcome(proxy, cursor)).toBe(200)

    const all = await revoke(env, '--sub', ALICE.sub)
    expect(all).toMatchObject({ code: 0, stdout: `ended 1 grant of ${ALICE.sub}\n` })
    expect(await mcpStatus(proxy, cursor.accessToken)).toBe(401)
    expect(await mcpStatus(proxy, bobs.accessToken)).toBe(200)
    expect(await refreshOutcome(proxy, bobs)).toBe(200)

    const again = await revoke(env, '--sub', ALICE.sub)
    expect(again).toMatchObject({ code: 0, stdout: `ended 0 grants of ${ALICE.sub}\n` })

    const audit = (await readFile(env.AUDIT_LOG as string, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(audit.filter((e) => e.event === 'grant.revoked')).toEqual([
      expect.objectContaining({ by: 'operator', sub: ALICE.sub, client_id: claude.clientId }),
      expect.objectContaining({ by: 'operator', sub: ALICE.sub, client_id: cursor.clientId }),
    ])
  })

  it('fails with one clear line and exit 1 without REDIS_URL, or when Redis does not answer', async () => {
    const { REDIS_URL: _url, ...memory } = env
    const noRedis = await revoke(memory, '--sub', ALICE.sub)
    expect(noRedis.code).toBe(1)
    expect(noRedis.stdout).toBe('')
    expect(noRedis.stderr).toMatch(
      /^mcp-oauth-proxy: revoke needs the Redis store \(REDIS_URL, .+\n$/,
    )

    const port = await freePort()
    const down = await revoke(
      { ...env, REDIS_URL: `redis://:secret@127.0.0.1:${port}`, REDIS_TIMEOUT_MS: '300' },
      '--sub',
      ALICE.sub,
    )
    expect(down.code).toBe(1)
    expect(down.stderr).toBe(
      `mcp-oauth-proxy: cannot reach Redis at redis://:***@127.0.0.1:${port}\n`,
    )

    const { PUBLIC_URL: _public, ...unconfigured } = env
    const bad = await revoke(unconfigured, '--sub', ALICE.sub)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^config error: PUBLIC_URL/m)
  })

  it('answers a wrong command line with usage and exit 2', async () => {
    const missing = await revoke(env)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/revoke needs --sub/)
    const extra = await revoke(env, '--sub', ALICE.sub, 'stray')
    expect(extra.code).toBe(2)
  })
})

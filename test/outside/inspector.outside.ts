/**
 * The MCP Inspector's CLI (@modelcontextprotocol/inspector 2.x, `mcp-inspector --cli`, on
 * Node 22) against the proxy. It does the OAuth flow itself: discovery, DCR, PKCE, a loopback
 * callback (`--callback-url`), and opens the authorization URL with the `open` package, that is
 * `$BROWSER` here (MCP_AUTO_OPEN_ENABLED=true: it would not open a browser without a TTY). The
 * token goes to its file secret store, so a second run with `--stored-auth-only` (its mode for
 * CI) calls a tool without any login.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/net.js'
import type { ProxyUnderTest } from '../support/proxy.js'
import { OUTSIDE_USER, startOutsideProxy, tempDir } from './support/fixture.js'
import {
  clientEnv,
  INSPECTOR,
  NODE22,
  requireTools,
  startNode,
  versionOf,
} from './support/tools.js'

requireTools()
const VERSION = versionOf('@modelcontextprotocol/inspector')

describe(`MCP Inspector CLI ${VERSION}`, () => {
  let proxy: ProxyUnderTest
  let home: Awaited<ReturnType<typeof tempDir>>
  let callbackUrl: string

  beforeAll(async () => {
    let port: number
    ;[proxy, home, port] = await Promise.all([
      startOutsideProxy(),
      tempDir('inspector-home'),
      freePort(),
    ])
    callbackUrl = `http://127.0.0.1:${port}/oauth/callback`
  })

  afterAll(async () => {
    await proxy?.close()
    await home?.remove()
  })

  /** `mcp-inspector --cli <proxy>/mcp --format json ...args`; returns the parsed result. */
  async function inspector(args: string[]): Promise<Record<string, unknown>> {
    const run = startNode(
      NODE22,
      INSPECTOR,
      ['--cli', `${proxy.url}/mcp`, '--callback-url', callbackUrl, '--format', 'json', ...args],
      {
        env: clientEnv(home.path, {
          MCP_AUTO_OPEN_ENABLED: 'true',
          // No keychain on a headless machine: say so rather than let it fall back to memory.
          MCP_INSPECTOR_SECRET_STORE: 'file',
        }),
      },
    )
    const done = await run.finish(90_000)
    expect(done.code, run.output()).toBe(0)
    return JSON.parse(done.stdout) as Record<string, unknown>
  }

  it('runs tools/list after signing in through $BROWSER with its own OAuth client', async () => {
    const { result } = (await inspector(['--method', 'tools/list'])) as {
      result: { tools: { name: string }[] }
    }
    expect(result.tools.map((tool) => tool.name).sort()).toEqual(['upstream_userinfo', 'whoami'])
    const browserLog = readFileSync(join(home.path, 'browser-login.log'), 'utf8')
    expect(browserLog).toContain(`signed in; ${callbackUrl} received the code`)
  })

  it('calls whoami with the stored token only (--stored-auth-only, no browser)', async () => {
    const before = readFileSync(join(home.path, 'browser-login.log'), 'utf8')
    const { result } = (await inspector([
      ...['--method', 'tools/call', '--tool-name', 'whoami', '--stored-auth-only'],
    ])) as { result: { content: { type: string; text: string }[] } }
    expect(JSON.parse(result.content[0]?.text ?? '{}')).toMatchObject({
      sub: OUTSIDE_USER.sub,
      email: OUTSIDE_USER.email,
      orgCode: OUTSIDE_USER.org_code,
      actor: 'user',
    })
    expect(readFileSync(join(home.path, 'browser-login.log'), 'utf8')).toBe(before)
  })
})

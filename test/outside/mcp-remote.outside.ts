/**
 * mcp-remote (the stdio bridge Claude Desktop and other stdio-only hosts use for remote MCP
 * servers) against the proxy, on the project's Node 20, as a host runs it: a child process
 * spoken to over stdin/stdout. It discovers the proxy, registers itself (DCR), opens the
 * authorization URL with `$BROWSER` (our sign-in script: consent, then the IdP's one-click
 * sign-in, then its loopback callback), exchanges the code and relays MCP to `/mcp`.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION } from '../support/mcp.js'
import { freePort } from '../support/net.js'
import type { ProxyUnderTest } from '../support/proxy.js'
import { OUTSIDE_USER, startOutsideProxy, tempDir } from './support/fixture.js'
import { StdioRpc } from './support/stdio-rpc.js'
import {
  clientEnv,
  MCP_REMOTE,
  NODE20,
  type Running,
  requireTools,
  startNode,
  versionOf,
} from './support/tools.js'

requireTools()
const VERSION = versionOf('mcp-remote')

describe(`mcp-remote ${VERSION}`, () => {
  let proxy: ProxyUnderTest
  let home: Awaited<ReturnType<typeof tempDir>>
  let callbackPort: number
  const started: Running[] = []

  beforeAll(async () => {
    ;[proxy, home, callbackPort] = await Promise.all([
      startOutsideProxy(),
      tempDir('mcp-remote-home'),
      freePort(),
    ])
  })

  afterAll(async () => {
    for (const remote of started) remote.stop()
    await proxy?.close()
    await home?.remove()
  })

  /** `mcp-remote <url> <port> --host 127.0.0.1`, as a host's MCP config starts it. */
  function startRemote(env: Record<string, string> = {}): { remote: Running; rpc: StdioRpc } {
    const remote = startNode(
      NODE20,
      MCP_REMOTE,
      [`${proxy.url}/mcp`, String(callbackPort), '--host', '127.0.0.1'],
      // mcp-remote keeps its registrations and tokens under MCP_REMOTE_CONFIG_DIR (~/.mcp-auth).
      {
        env: clientEnv(home.path, { MCP_REMOTE_CONFIG_DIR: join(home.path, '.mcp-auth'), ...env }),
        stdin: 'pipe',
      },
    )
    started.push(remote)
    return { remote, rpc: new StdioRpc(remote) }
  }

  /** initialize, tools/list and tools/call whoami over stdio; returns whoami's JSON. */
  async function session(
    rpc: StdioRpc,
  ): Promise<{ tools: string[]; whoami: Record<string, unknown> }> {
    const initialized = await rpc.request(
      'initialize',
      {
        protocolVersion: PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'outside-host', version: '1.0.0' },
      },
      60_000,
    )
    expect(initialized).toMatchObject({ serverInfo: { name: 'mcp-oauth-proxy' } })
    rpc.notify('notifications/initialized')
    const { tools } = (await rpc.request('tools/list')) as { tools: { name: string }[] }
    const called = (await rpc.request('tools/call', { name: 'whoami', arguments: {} })) as {
      content: { type: string; text: string }[]
    }
    const text = called.content[0]?.type === 'text' ? called.content[0].text : '{}'
    return { tools: tools.map((tool) => tool.name).sort(), whoami: JSON.parse(text) }
  }

  /** Closes stdin, which is how a host stops a stdio server, and waits for the exit. */
  async function stop(remote: Running): Promise<void> {
    remote.child.stdin?.end()
    await remote.finish(10_000)
  }

  it('signs in through $BROWSER and relays initialize, tools/list and tools/call over stdio', async () => {
    const { remote, rpc } = startRemote()
    const { tools, whoami } = await session(rpc)
    expect(tools).toEqual(['upstream_userinfo', 'whoami'])
    expect(whoami).toMatchObject({
      sub: OUTSIDE_USER.sub,
      email: OUTSIDE_USER.email,
      orgCode: OUTSIDE_USER.org_code,
      permissions: OUTSIDE_USER.permissions,
      actor: 'user',
    })
    const browserLog = readFileSync(join(home.path, 'browser-login.log'), 'utf8')
    expect(browserLog).toContain(
      `signed in; http://127.0.0.1:${callbackPort}/oauth/callback received the code`,
    )
    await stop(remote)
  })

  it('starts again from its stored tokens without opening a browser', async () => {
    const log = join(home.path, 'browser-login.log')
    const before = existsSync(log) ? readFileSync(log, 'utf8') : ''
    const { remote, rpc } = startRemote()
    const { whoami } = await session(rpc)
    expect(whoami).toMatchObject({ email: OUTSIDE_USER.email, actor: 'user' })
    expect(existsSync(log) ? readFileSync(log, 'utf8') : '').toBe(before)
    await stop(remote)
  })
})

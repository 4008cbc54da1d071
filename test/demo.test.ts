/**
 * `npm run demo` as a new user meets it: started with npm in its own process group, then the
 * MCP SDK client signs in (consent page, then the built-in provider's one-click form) and calls
 * the tools; the printed curl dance is run as printed, to a tool call; the pages are clicked
 * through in headless Chromium, on a desktop and a phone; SIGTERM stops both servers.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium, overflowsSideways, PHONE_VIEWPORT, screenshot } from './support/browser.js'
import { TestOAuthProvider } from './support/flow.js'
import { noHang } from './support/hang.js'
import { connectClient, resultJson } from './support/mcp.js'
import { freePort } from './support/net.js'
import { location, UserAgent } from './support/user-agent.js'

const run = promisify(execFile)

describe('npm run demo', () => {
  let port: number
  let demo: ChildProcess
  let output = ''
  let exited: Promise<void>
  let mcpUrl: string
  let idpPort: number
  const clients: Client[] = []

  beforeAll(async () => {
    port = await freePortWithFreeNext()
    demo = spawn('npm', ['run', 'demo'], {
      env: { ...process.env, PORT: String(port) },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    exited = new Promise((resolve) => demo.once('exit', () => resolve()))
    demo.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    demo.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    await waitForOutput(/Ctrl-C stops the demo/)
    mcpUrl = /MCP server\s+(\S+)/.exec(output)?.[1] ?? ''
    idpPort = Number(/provider .* at http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1])
  })

  afterAll(async () => {
    await Promise.allSettled(clients.map((client) => client.close()))
    if (demo?.pid && demo.exitCode === null && demo.signalCode === null) {
      process.kill(-demo.pid, 'SIGKILL')
      await exited
    }
  })

  async function waitForOutput(pattern: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(output)) {
      if (demo.exitCode !== null) throw new Error(`the demo exited:\n${output}`)
      if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  it('prints the MCP URL and snippets for the URLs it runs on', () => {
    expect(mcpUrl).toBe(`http://localhost:${port}/mcp`)
    // PORT+1 was free when the test chose PORT; another test may have taken it since.
    expect(idpPort).toBeGreaterThan(0)
    expect(output).toContain(
      `{"mcpServers":{"demo":{"command":"npx","args":["mcp-remote","http://localhost:${port}/mcp"]}}}`,
    )
    expect(output).toContain(
      'MCP Inspector (needs Node >= 22.19): npx @modelcontextprotocol/inspector',
    )
    expect(output).toMatch(/Streamable HTTP", URL http:\/\/localhost:\d+\/mcp/)
    expect(output).toContain(
      'See the audit trail (sign-ins, consents, tokens): restart with LOG_LEVEL=info npm run demo',
    )
    expect(output).not.toMatch(/oidc-provider WARNING/)
  })

  it('signs the demo user in with the MCP SDK client and serves the demo tools', async () => {
    const redirectUrl = 'http://127.0.0.1:43151/oauth/callback'
    const provider = new TestOAuthProvider(redirectUrl, {
      client_name: 'Demo e2e',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    })
    expect(await auth(provider, { serverUrl: mcpUrl })).toBe('REDIRECT')
    const [authorizeUrl] = provider.authorizationUrls
    if (!authorizeUrl) throw new Error('no authorization URL')

    const back = await browse(authorizeUrl, (url) => url.href.startsWith(redirectUrl))
    const code = back.searchParams.get('code')
    expect(code, back.href).toBeTruthy()
    expect(await auth(provider, { serverUrl: mcpUrl, authorizationCode: code ?? '' })).toBe(
      'AUTHORIZED',
    )

    const { client } = await connectClient(mcpUrl, provider)
    clients.push(client)
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name).sort()).toEqual(['upstream_userinfo', 'whoami'])
    const whoami = resultJson(await client.callTool({ name: 'whoami', arguments: {} }))
    expect(whoami).toMatchObject({
      email: 'demo@example.com',
      orgCode: 'org_demo',
      permissions: ['read:reports'],
      actor: 'user',
    })
    const userinfo = resultJson(await client.callTool({ name: 'upstream_userinfo', arguments: {} }))
    expect(userinfo).toMatchObject({ email: 'demo@example.com', name: 'Demo User' })
  })

  it('runs the printed curl dance as printed, from registration to a whoami result', async () => {
    const register = commandAfter('1. Register a client')
    const registered = JSON.parse((await bash(register)).stdout) as { client_id: string }
    const authorizeUrl = printedAuthorizeUrl()
    // The demo registered the same metadata, so the printed URL already has this client id.
    expect(authorizeUrl.searchParams.get('client_id')).toBe(registered.client_id)

    const redirectUri = authorizeUrl.searchParams.get('redirect_uri') ?? ''
    const back = await browse(authorizeUrl, (url) => url.href.startsWith(redirectUri))
    const code = back.searchParams.get('code') ?? ''
    // The page the browser lands on shows steps 3 to 5 as printed, the code filled in.
    const page = await (await fetch(back)).text()
    const shown = [...page.matchAll(/<pre>([^<]*)<\/pre>/g)].map((m) => decodeHtml(m[1] ?? ''))
    const printed = [
      blockAfter('Exchange the code for an access token').replace('code=CODE', `code=${code}`),
      blockAfter('4. Open an MCP session'),
      blockAfter('5. Call the MCP endpoint in that session'),
    ]
    expect(shown).toEqual(printed)

    // Pasted into one shell, one after the other, as the steps say.
    const { stdout } = await bash(shown.join('\n'))
    expect(stdout).toMatch(/^session [\w-]{16,}$/m)
    const answers = stdout
      .split('\n')
      .filter((line) => line.startsWith('data: ') || line.startsWith('{'))
      .map((line) => JSON.parse(line.replace(/^data: /, '')) as Record<string, unknown>)
    expect(answers.map((answer) => answer.id)).toEqual([2, 3])
    expect(answers[0]).toMatchObject({
      result: { tools: expect.arrayContaining([expect.objectContaining({ name: 'whoami' })]) },
    })
    const whoami = answers[1] as { result: { content: { text: string }[] } }
    expect(JSON.parse(whoami.result.content[0]?.text ?? '')).toMatchObject({
      email: 'demo@example.com',
      orgCode: 'org_demo',
      actor: 'user',
    })
  })

  describe('its pages in headless Chromium', () => {
    let browser: Browser

    beforeAll(async () => {
      browser = await launchChromium()
    })

    afterAll(async () => {
      await browser?.close()
    })

    async function freshPage(viewport = { width: 1280, height: 800 }): Promise<Page> {
      const context = await browser.newContext({ viewport })
      context.setDefaultTimeout(10_000)
      return context.newPage()
    }

    const isIdp = (url: URL) =>
      url.port === String(idpPort) && url.pathname.startsWith('/interaction/')

    it('names the demo sign-in on the consent page, then shows the demo provider and the next steps', async () => {
      const page = await freshPage()
      await page.goto(printedAuthorizeUrl().href)
      await expect(page.locator('p.sub').textContent()).resolves.toBe(
        'You will sign in with the built-in demo sign-in next.',
      )
      await screenshot(page, 'demo-consent')

      await Promise.all([
        page.waitForURL(isIdp),
        page.getByRole('button', { name: 'Allow' }).click(),
      ])
      await expect(page.locator('p.sub').textContent()).resolves.toContain(
        'built-in demo identity provider of mcp-oauth-proxy, standing in for Kinde',
      )
      await expect(page.locator('#demo-user').textContent()).resolves.toBe(
        'Demo User <demo@example.com>, organization org_demo',
      )
      await screenshot(page, 'demo-sign-in')

      await page.getByRole('button', { name: 'Sign in as demo user' }).click()
      await page.getByRole('heading', { name: 'Signed in' }).waitFor()
      expect(await page.locator('pre').count()).toBe(3)
      await screenshot(page, 'demo-signed-in')
      await page.context().close()
    })

    it('after Deny, says why and links back to the sign-in', async () => {
      const page = await freshPage()
      await page.goto(printedAuthorizeUrl().href)
      await page.getByRole('button', { name: 'Deny' }).click()
      await page.getByRole('heading', { name: 'Not signed in' }).waitFor()
      await expect(page.locator('#error-code').textContent()).resolves.toBe('access_denied')
      await expect(page.locator('#error-description').textContent()).resolves.toBe(
        'the user denied the request',
      )
      await screenshot(page, 'demo-denied')

      await page.getByRole('link', { name: 'Start the sign-in again' }).click()
      await page.getByRole('button', { name: 'Allow' }).waitFor()
      expect(new URL(page.url()).pathname).toBe('/authorize')
      await page.context().close()
    })

    it('reads on a phone, and a sign-in cancelled at the provider ends on the same page', async () => {
      const page = await freshPage(PHONE_VIEWPORT)
      await page.goto(printedAuthorizeUrl().href)
      expect(await overflowsSideways(page)).toBe(false)
      await screenshot(page, 'demo-consent-phone')

      await Promise.all([
        page.waitForURL(isIdp),
        page.getByRole('button', { name: 'Allow' }).click(),
      ])
      expect(await overflowsSideways(page)).toBe(false)
      await screenshot(page, 'demo-sign-in-phone')

      await page.getByRole('button', { name: 'Cancel' }).click()
      await page.getByRole('heading', { name: 'Not signed in' }).waitFor()
      await expect(page.locator('#error-code').textContent()).resolves.toBe('access_denied')
      expect(await overflowsSideways(page)).toBe(false)
      await screenshot(page, 'demo-cancelled-phone')
      await page.context().close()
    })
  })

  it('stops both servers on SIGTERM, even with an MCP client still connected', async () => {
    expect(clients).toHaveLength(1) // its GET stream is open: the proxy alone would wait 10 s
    const pid = demo.pid as number
    process.kill(-pid, 'SIGTERM')
    // Held by the open stream, the proxy would wait out its 10 s shutdown grace before cutting
    // connections: that wait is the hang this detects, with seconds to spare either side.
    await noHang(exited, 'the demo after SIGTERM', 9000)
    await waitUntilClosed(port)
    await waitUntilClosed(idpPort)
    expect(output).toContain('mcp-oauth-proxy demo: stopping')
    // No process of the group is left behind.
    await waitUntilGroupGone(pid)
  })

  function printedAuthorizeUrl(): URL {
    return new URL(/^\s*(http\S+\/authorize\?\S+)$/m.exec(output)?.[1] ?? '')
  }

  /** The lines printed under the heading that starts with `heading`, up to the next step. */
  function blockAfter(heading: string): string {
    const lines = output.split('\n')
    const start = lines.findIndex((line) => line.trim().startsWith(heading))
    expect(start, heading).toBeGreaterThan(-1)
    const block: string[] = []
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith('     ')) break
      block.push(line.slice(5))
    }
    return block.join('\n')
  }

  /** The command printed under the step whose heading starts with `heading`. */
  function commandAfter(heading: string): string {
    const lines = output.split('\n')
    const start = lines.findIndex((line) => line.trim().startsWith(heading))
    const command: string[] = []
    for (const line of lines.slice(start + 1)) {
      command.push(line.trim())
      if (!line.trimEnd().endsWith('\\')) break
    }
    return command.join('\n')
  }
})

describe('the demo identity provider', () => {
  it('is never imported by the proxy itself (oidc-provider is a devDependency)', async () => {
    const files = (await readdir('src', { recursive: true })).filter((f) => f.endsWith('.ts'))
    expect(files.length).toBeGreaterThan(10)
    for (const file of files) {
      const source = await readFile(join('src', file), 'utf8')
      // Any module specifier: static, side-effect, dynamic or re-export.
      expect(source, file).not.toMatch(/['"](oidc-provider|(\.\.\/)+demo\/[^'"]*)['"]/)
    }
  })
})

/**
 * Follows a sign-in through the proxy and the demo's provider as a browser without scripts
 * would: redirects, and on each page the one form, submitted with Allow (the consent page) or
 * "Sign in as demo user" (the provider's login page). Returns the redirect `isDone` accepts.
 */
async function browse(start: URL, isDone: (url: URL) => boolean): Promise<URL> {
  const agent = new UserAgent()
  let url = start
  let init: RequestInit | undefined
  for (let hop = 0; hop < 20; hop++) {
    const response = await agent.fetch(url, init)
    init = undefined
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel()
      const next = location(response)
      if (isDone(next)) return next
      url = next
      continue
    }
    const html = await response.text()
    if (response.status !== 200) throw new Error(`${response.status} from ${url.href}: ${html}`)
    const form = submission(html, /^(Allow|Sign in as demo user)$/)
    url = new URL(form.action, url)
    init = {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.body,
    }
  }
  throw new Error('too many hops')
}

/** The form of a page as submitted with the button whose label matches `button`. */
function submission(html: string, button: RegExp): { action: string; body: URLSearchParams } {
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1]
  if (!action) throw new Error(`no form on the page:\n${html}`)
  const body = new URLSearchParams()
  for (const [, name = '', value = ''] of html.matchAll(
    /<input type="hidden" name="([^"]+)" value="([^"]*)"/g,
  )) {
    body.set(decodeHtml(name), decodeHtml(value))
  }
  const pressed = [
    ...html.matchAll(/<button[^>]*name="([^"]+)" value="([^"]*)"[^>]*>([^<]*)<\/button>/g),
  ].find(([, , , label = '']) => button.test(label.trim()))
  if (!pressed) throw new Error(`no ${button} button on the page:\n${html}`)
  body.set(decodeHtml(pressed[1] ?? ''), decodeHtml(pressed[2] ?? ''))
  return { action: decodeHtml(action), body }
}

function decodeHtml(value: string): string {
  return value.replace(/&(#\d+|amp|lt|gt|quot);/g, (_, entity: string) =>
    entity.startsWith('#')
      ? String.fromCharCode(Number(entity.slice(1)))
      : (({ amp: '&', lt: '<', gt: '>', quot: '"' } as Record<string, string>)[entity] ?? ''),
  )
}

function bash(script: string): Promise<{ stdout: string; stderr: string }> {
  return run('bash', ['-euo', 'pipefail', '-c', script], { timeout: 20_000 })
}

/** A free port whose successor is free too: the demo puts its provider on PORT+1. */
async function freePortWithFreeNext(): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port < 65_535 && (await isFree(port + 1))) return port
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

async function waitUntilClosed(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (!open) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`port ${port} still accepts connections`)
}

/** Waits until no process of the group `pgid` is alive (Linux: read from /proc). */
async function waitUntilGroupGone(pgid: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const members: number[] = []
    for (const entry of await readdir('/proc').catch(() => [])) {
      if (!/^\d+$/.test(entry)) continue
      const stat = await readFile(join('/proc', entry, 'stat'), 'utf8').catch(() => '')
      // Fields after the command name (which may hold spaces): state ppid pgrp …
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry))
    }
    if (!members.length) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`processes of group ${pgid} are still running`)
}

import { mkdir, stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'

/** Headless Chromium as installed on the test machine, without background network chatter. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** A native MCP client's loopback redirect URI (RFC 8252 §7.3), plus pages of its own origin. */
export interface ClientServer {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string
  /** `${origin}/callback`, the redirect URI the client registers. */
  readonly redirectUri: string
  /** The query of every request the redirect URI received, in order. */
  readonly received: readonly URLSearchParams[]
  /** Resolves with the first query the redirect URI receives carrying `state`. */
  callback(state: string): Promise<URLSearchParams>
  /** Serves `html` at `path`: a page of another site than the proxy (an attacker's, say). */
  page(path: string, html: string): void
  close(): Promise<void>
}

/** Starts a {@link ClientServer} on 127.0.0.1; it answers its redirect URI with 200 "done". */
export async function startClientServer(): Promise<ClientServer> {
  const received: URLSearchParams[] = []
  const waiting: { state: string; resolve: (query: URLSearchParams) => void }[] = []
  const pages = new Map<string, string>()
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const html = pages.get(url.pathname)
    if (html !== undefined) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html)
      return
    }
    if (url.pathname !== '/callback') {
      res.writeHead(404).end()
      return
    }
    received.push(url.searchParams)
    for (const waiter of waiting.filter((w) => w.state === url.searchParams.get('state'))) {
      waiting.splice(waiting.indexOf(waiter), 1)
      waiter.resolve(url.searchParams)
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('done')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    origin,
    redirectUri: `${origin}/callback`,
    received,
    callback(state) {
      const seen = received.find((query) => query.get('state') === state)
      return seen
        ? Promise.resolve(seen)
        : new Promise((resolve) => waiting.push({ state, resolve }))
    },
    page(path, html) {
      pages.set(path, html)
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

/** A phone's viewport (CSS pixels): pages must read without sideways scrolling here. */
export const PHONE_VIEWPORT = { width: 390, height: 844 }

/**
 * Saves a full-page screenshot as `<name>.png` in `SCREENSHOTS_DIR` (to look at them), or in
 * a directory under the system's temporary one; returns the path of a non-empty file.
 */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = process.env.SCREENSHOTS_DIR || join(tmpdir(), 'mcp-oauth-proxy-screenshots')
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  if (!((await stat(path)).size > 0)) throw new Error(`empty screenshot ${path}`)
  return path
}

/** Whether the page is wider than its viewport (text cut off or scrolling sideways). */
export async function overflowsSideways(page: Page): Promise<boolean> {
  // A string: the project's TypeScript has no DOM types.
  return (await page.evaluate(
    'document.documentElement.scrollWidth > window.innerWidth',
  )) as boolean
}

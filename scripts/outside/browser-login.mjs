#!/usr/bin/env node
/**
 * A headless "browser" for outside MCP clients (mcp-remote, the MCP Inspector CLI, the
 * conformance suite's authorization-code scenario): given the authorization URL the client
 * wants opened, it goes through the proxy's consent page (Allow) and the built-in identity
 * provider's sign-in page ("Sign in as demo user") the way a person would, then follows the
 * last redirect to the client's loopback callback so the client receives its code.
 *
 * Point `BROWSER` at it: `xdg-open` (what the `open` package runs on Linux) runs
 * `$BROWSER <url>` when no desktop environment is detected (unset DISPLAY, or
 * XDG_CURRENT_DESKTOP=X-Generic). Plain HTTP, no dependencies, any Node >= 20.
 *
 *   browser-login.mjs <url>
 *
 * Environment:
 *   BROWSER_LOGIN_USER  value of the sign-in button to press (default: the first button)
 *   BROWSER_LOGIN_LOG   append every hop to this file (the launcher discards our output)
 *
 * Exits 0 when the client's redirect URI was reached with a `code`, 1 otherwise.
 */
import { appendFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const MAX_HOPS = 30

/** Cookies per host, path-scoped (oidc-provider scopes its interaction cookies by path). */
class CookieJar {
  /** @type {Map<string, { name: string, value: string, path: string }[]>} */
  #hosts = new Map()

  /** @param {URL} url @param {Response} response */
  store(url, response) {
    const cookies = this.#hosts.get(url.host) ?? []
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
      const eq = pair.indexOf('=')
      if (eq < 1) continue
      const name = pair.slice(0, eq)
      const value = pair.slice(eq + 1)
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/'
      let expired = value === ''
      for (const attribute of attributes) {
        const [key = '', val = ''] = attribute.split('=')
        const lower = key.toLowerCase()
        if (lower === 'path' && val) path = val
        if (lower === 'max-age' && Number(val) <= 0) expired = true
        if (lower === 'expires' && Date.parse(val) <= Date.now()) expired = true
      }
      const kept = cookies.filter((c) => c.name !== name || c.path !== path)
      if (!expired) kept.push({ name, value, path })
      cookies.splice(0, cookies.length, ...kept)
    }
    this.#hosts.set(url.host, cookies)
  }

  /** @param {URL} url */
  header(url) {
    return (this.#hosts.get(url.host) ?? [])
      .filter(
        (c) => c.path === '/' || url.pathname === c.path || url.pathname.startsWith(`${c.path}/`),
      )
      .map((c) => `${c.name}=${c.value}`)
      .join('; ')
  }
}

/** @param {string} html @param {string} name */
function hiddenField(html, name) {
  return new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1]
}

/** @param {string} value */
function decodeHtml(value) {
  return value.replace(/&#(\d+);/g, (_, code) => String.fromCharCode(Number(code)))
}

/**
 * Walks from `start` to the client's redirect URI. Returns that final URL (with `code` or
 * `error`); throws on anything a person would have been stuck at.
 * @param {string} start
 * @param {{ user?: string, log?: (line: string) => void }} [options]
 * @returns {Promise<URL>}
 */
export async function completeLogin(start, options = {}) {
  const log = options.log ?? (() => {})
  const jar = new CookieJar()
  let url = new URL(start)
  /** @type {URLSearchParams | undefined} */
  let form
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const cookie = jar.header(url)
    /** @type {Record<string, string>} */
    const headers = { accept: 'text/html,application/xhtml+xml' }
    if (cookie) headers.cookie = cookie
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded'
      // What a browser sends with a same-origin form POST.
      headers.origin = url.origin
      headers['sec-fetch-site'] = 'same-origin'
    }
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      headers,
      body: form,
      redirect: 'manual',
    })
    log(`${form ? 'POST' : 'GET'} ${url.origin}${url.pathname} -> ${response.status}`)
    jar.store(url, response)
    form = undefined
    const location = response.headers.get('location')
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel()
      url = new URL(location, url)
      continue
    }
    const body = await response.text()
    if (response.status !== 200) {
      throw new Error(`${response.status} from ${url.href}: ${body.slice(0, 300)}`)
    }
    // The proxy's consent page: press Allow.
    const requestId = hiddenField(body, 'request_id')
    const csrfToken = hiddenField(body, 'csrf_token')
    if (requestId && csrfToken && /action="\/authorize\/consent"/.test(body)) {
      url = new URL('/authorize/consent', url)
      form = new URLSearchParams({
        request_id: decodeHtml(requestId),
        csrf_token: decodeHtml(csrfToken),
        decision: 'allow',
      })
      continue
    }
    // The identity provider's sign-in page: press the user's button.
    const signIn = /<form method="post" action="([^"]+)">/.exec(body)
    const buttons = [...body.matchAll(/<button type="submit" name="user" value="([^"]*)"/g)].map(
      (m) => decodeHtml(m[1] ?? ''),
    )
    if (signIn?.[1] && buttons.length > 0) {
      const user = options.user ?? buttons[0] ?? ''
      if (!buttons.includes(user)) throw new Error(`no sign-in button for ${user}`)
      url = new URL(decodeHtml(signIn[1]), url)
      form = new URLSearchParams({ user })
      continue
    }
    // Any other page is where the flow ends: the client's redirect URI, which has the code.
    if (url.searchParams.has('code')) return url
    if (url.searchParams.has('error')) {
      throw new Error(
        `authorization failed: ${url.searchParams.get('error')} ${url.searchParams.get('error_description') ?? ''}`.trim(),
      )
    }
    throw new Error(`stuck at ${url.href}: ${body.slice(0, 300)}`)
  }
  throw new Error(`more than ${MAX_HOPS} hops`)
}

const invoked = process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
if (invoked) {
  const target = process.argv[2]
  const logFile = process.env.BROWSER_LOGIN_LOG
  /** @param {string} line */
  const log = (line) => {
    const stamped = `${new Date().toISOString()} browser-login: ${line}\n`
    process.stderr.write(stamped)
    if (logFile) appendFileSync(logFile, stamped)
  }
  if (!target) {
    log('usage: browser-login.mjs <url>')
    process.exit(2)
  }
  try {
    const done = await completeLogin(target, { user: process.env.BROWSER_LOGIN_USER || undefined })
    log(`signed in; ${done.origin}${done.pathname} received the code`)
  } catch (error) {
    log(`failed: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
}

/**
 * The consent page as a person meets it: headless Chromium against the proxy, a real upstream
 * (oidc-provider shaped like Kinde) and a native MCP client's loopback redirect URI.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { randomToken } from '../src/crypto.js'
import { escapeHtml } from '../src/oauth/pages.js'
import { type ClientServer, launchChromium, startClientServer } from './support/browser.js'
import { authorizationUrl, formPost, pkce, registerClient } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'

const CLIENT_NAME = 'Consent Test Client'

describe('the consent page in headless Chromium', () => {
  let proxy: ProxyUnderTest
  let client: ClientServer
  let browser: Browser
  let clientId: string
  let screenshots: string
  const contexts: BrowserContext[] = []

  beforeAll(async () => {
    ;[proxy, client, browser, screenshots] = await Promise.all([
      startProxy({ flavor: 'kinde', store: 'memory' }),
      startClientServer(),
      launchChromium(),
      mkdtemp(join(tmpdir(), 'consent-browser-')),
    ])
    clientId = await register(CLIENT_NAME)
  })

  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()))
  })

  afterAll(async () => {
    await browser?.close()
    await Promise.all([proxy?.close(), client?.close()])
    if (screenshots) await rm(screenshots, { recursive: true, force: true })
  })

  async function register(name: string): Promise<string> {
    const registered = await registerClient(proxy.url, {
      client_name: name,
      redirect_uris: [client.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    })
    return registered.client_id
  }

  /** A fresh authorization request of the MCP client: its URL, state and PKCE verifier. */
  function newRequest(forClient = clientId) {
    const { verifier, challenge } = pkce()
    const state = randomToken(16)
    const url = authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: forClient,
      redirect_uri: client.redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      scope: 'openid profile email',
      resource: `${proxy.url}/mcp`,
    })
    return { url: url.href, state, verifier }
  }

  /** A new page in a new browser context: its own cookies, closed after the test. */
  async function freshPage(): Promise<Page> {
    const context = await browser.newContext()
    contexts.push(context)
    // Fail a wait with Playwright's message before the test itself times out.
    context.setDefaultTimeout(10_000)
    return context.newPage()
  }

  /** Every URL the page's browser context requests from now on. */
  function requestedUrls(page: Page): URL[] {
    const urls: URL[] = []
    page.context().on('request', (request) => urls.push(new URL(request.url())))
    return urls
  }

  const isUpstreamLogin = (url: URL) =>
    url.origin === proxy.upstream.url && url.pathname.startsWith('/interaction/')
  const isProxyCallback = (url: string) => url.startsWith(`${proxy.url}/callback`)
  const callbacksFor = (state: string) =>
    client.received.filter((query) => query.get('state') === state)

  async function allow(page: Page): Promise<void> {
    await Promise.all([
      page.waitForURL(isUpstreamLogin),
      page.getByRole('button', { name: 'Allow' }).click(),
    ])
  }

  async function signInAsDemoUser(page: Page): Promise<void> {
    await page.getByRole('button', { name: 'Sign in as demo user' }).click()
  }

  /** Waits until the browser shows the client's redirect URI; returns the query it received. */
  async function backAtClient(page: Page, state: string): Promise<URLSearchParams> {
    const [received] = await Promise.all([
      client.callback(state),
      page.waitForURL((url) => url.href.startsWith(client.redirectUri)),
    ])
    return received
  }

  it('shows the client, where it returns and the scopes; Allow and sign-in give the client a code it can exchange', async () => {
    const page = await freshPage()
    const request = newRequest()
    await page.goto(request.url)

    expect(await page.locator('#client-name').textContent()).toBe(CLIENT_NAME)
    const port = new URL(client.origin).port
    expect(await page.locator('#redirect-target').textContent()).toBe(
      `an application on this computer (127.0.0.1:${port})`,
    )
    expect(await page.locator('#scopes li').allTextContents()).toEqual(['profile', 'email'])
    const screenshot = join(screenshots, 'consent.png')
    await page.screenshot({ path: screenshot, fullPage: true })
    expect((await stat(screenshot)).size).toBeGreaterThan(0)

    // The form's own POST must carry our Origin: a `no-referrer` policy would make it `null`.
    const [consent] = await Promise.all([
      page.waitForResponse(`${proxy.url}/authorize/consent`),
      page.getByRole('button', { name: 'Allow' }).click(),
    ])
    expect(await consent.request().headerValue('origin')).toBe(proxy.url)
    expect(consent.status()).toBe(303)
    await page.waitForURL(isUpstreamLogin)
    await signInAsDemoUser(page)
    const received = await backAtClient(page, request.state)
    expect(received.get('code')).toMatch(/^[\w-]{43}$/)
    expect(received.get('iss')).toBe(proxy.url)
    expect(received.get('error')).toBeNull()
    expect(await page.locator('body').textContent()).toBe('done')

    const token = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code: received.get('code') as string,
      redirect_uri: client.redirectUri,
      code_verifier: request.verifier,
      client_id: clientId,
    })
    expect(token.status).toBe(200)
    expect(await token.json()).toMatchObject({
      access_token: expect.any(String),
      token_type: 'Bearer',
    })
  })

  it('Deny sends access_denied to the client without visiting the upstream', async () => {
    const page = await freshPage()
    const visited = requestedUrls(page)
    const request = newRequest()
    await page.goto(request.url)

    await page.getByRole('button', { name: 'Deny' }).click()
    const received = await backAtClient(page, request.state)
    expect(received.get('error')).toBe('access_denied')
    expect(received.get('iss')).toBe(proxy.url)
    expect(received.get('code')).toBeNull()
    expect(visited.filter((url) => url.origin === proxy.upstream.url)).toEqual([])
  })

  it('remembers an approval in the same browser, and asks again in another one', async () => {
    const page = await freshPage()
    const first = newRequest()
    await page.goto(first.url)
    await allow(page)
    await signInAsDemoUser(page)
    await backAtClient(page, first.state)

    const second = newRequest()
    const [authorize] = await Promise.all([
      page.waitForResponse((response) => response.url() === second.url),
      page.goto(second.url),
    ])
    expect(authorize.status()).toBe(302)
    expect(new URL((await authorize.headerValue('location')) as string).origin).toBe(
      proxy.upstream.url,
    )
    // The upstream still has its session, so the browser comes straight back with a code.
    expect((await backAtClient(page, second.state)).get('code')).toMatch(/^[\w-]{43}$/)

    const other = await freshPage()
    const third = newRequest()
    const response = await other.goto(third.url)
    expect(response?.status()).toBe(200)
    expect(await other.locator('#client-name').textContent()).toBe(CLIENT_NAME)
  })

  it('refuses a consent form whose CSRF token was tampered with', async () => {
    const page = await freshPage()
    const request = newRequest()
    await page.goto(request.url)
    await page
      .locator('input[name="csrf_token"]')
      .evaluate((input) => input.setAttribute('value', 'forged-csrf-token'))

    const [response] = await Promise.all([
      page.waitForResponse(`${proxy.url}/authorize/consent`),
      page.getByRole('button', { name: 'Allow' }).click(),
    ])
    expect(response.status()).toBe(403)
    expect(await page.locator('#error-description').textContent()).toContain('forgery check')
    expect(page.url()).toBe(`${proxy.url}/authorize/consent`)
    expect(callbacksFor(request.state)).toEqual([])
  })

  // 127.0.0.1 on another port is the same site (cookies are per host, SameSite=Lax sends
  // them); `localhost` is another site, so the browser also withholds the Lax cookies there.
  it.each([
    { site: 'same-site', host: '127.0.0.1', cookie: true },
    { site: 'cross-site', host: 'localhost', cookie: false },
  ])(
    'refuses a consent form auto-submitted from a $site page ($host)',
    async ({ site, host, cookie }) => {
      const page = await freshPage()
      const request = newRequest()
      await page.goto(request.url)
      const fields = {
        request_id: await page.locator('input[name="request_id"]').getAttribute('value'),
        csrf_token: await page.locator('input[name="csrf_token"]').getAttribute('value'),
      }
      const path = `/attack-${randomToken(8)}`
      client.page(
        path,
        `<!doctype html><form method="post" action="${proxy.url}/authorize/consent">
        <input type="hidden" name="request_id" value="${fields.request_id}">
        <input type="hidden" name="csrf_token" value="${fields.csrf_token}">
        <input type="hidden" name="decision" value="allow">
      </form><script>document.forms[0].submit()</script>`,
      )

      const attacker = new URL(path, client.origin)
      attacker.hostname = host
      const [response] = await Promise.all([
        page.waitForResponse(`${proxy.url}/authorize/consent`),
        page.goto(attacker.href),
      ])
      const headers = await response.request().allHeaders()
      expect(headers['sec-fetch-site']).toBe(site)
      expect(headers.cookie?.includes('mcp-browser=') ?? false).toBe(cookie)
      expect(response.status()).toBe(403)
      expect(await response.text()).toContain('submitted from another site')
      expect(callbacksFor(request.state)).toEqual([])
    },
  )

  it('refuses a sign-in completed in another browser than the one that started it', async () => {
    const victim = await freshPage()
    const request = newRequest()
    await victim.goto(request.url)
    const [upstreamRequest] = await Promise.all([
      victim.waitForRequest((req) => new URL(req.url()).origin === proxy.upstream.url),
      allow(victim),
    ])

    // Another browser, with a proxy binding cookie of its own, finishes the victim's sign-in.
    const attacker = await freshPage()
    await attacker.goto(newRequest().url)
    await attacker.goto(upstreamRequest.url())
    const [callback] = await Promise.all([
      attacker.waitForResponse((response) => isProxyCallback(response.url())),
      signInAsDemoUser(attacker),
    ])
    expect(callback.status()).toBe(403)
    await attacker.waitForURL((url) => isProxyCallback(url.href))
    expect(await attacker.locator('#error-description').textContent()).toContain(
      'started in another browser',
    )
    expect(callbacksFor(request.state)).toEqual([])
  })

  it('cannot be framed by another page', async () => {
    const page = await freshPage()
    const request = newRequest()
    const response = await page.goto(request.url)
    expect(response?.headers()['x-frame-options']).toBe('DENY')
    expect(response?.headers()['content-security-policy']).toContain("frame-ancestors 'none'")

    const framing = await freshPage()
    const path = `/frame-${randomToken(8)}`
    const framed = newRequest()
    client.page(path, `<!doctype html><iframe src="${escapeHtml(framed.url)}"></iframe>`)
    const [consent] = await Promise.all([
      framing.waitForResponse((r) => r.url() === framed.url),
      framing.goto(`${client.origin}${path}`, { waitUntil: 'load' }),
    ])
    // The proxy answered with the consent page; Chromium refused to render it in the frame.
    expect(consent.status()).toBe(200)
    const [frame] = framing.mainFrame().childFrames()
    expect(frame?.url()).not.toBe(framed.url)
    expect(await frame?.locator('form').count()).toBe(0)
  })

  it('shows a client name with markup as text', async () => {
    const name = '<img src=x onerror=alert(1)>Evil'
    const evilClient = await register(name)
    const page = await freshPage()
    const dialogs: string[] = []
    page.on('dialog', (dialog) => dialogs.push(dialog.message()))
    await page.goto(newRequest(evilClient).url)

    expect(await page.locator('#client-name').textContent()).toBe(name)
    expect(await page.locator('main').textContent()).toContain(name)
    expect(await page.title()).toBe(`Allow ${name}?`)
    expect(await page.locator('img').count()).toBe(0)
    expect(dialogs).toEqual([])
  })
})

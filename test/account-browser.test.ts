/**
 * The account page as a person meets it: headless Chromium against the proxy and a real
 * upstream (oidc-provider shaped like Kinde) with two people, on the memory store and on Redis.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { randomToken } from '../src/crypto.js'
import { listUserGrants } from '../src/tokens/end-grants.js'
import { type ClientServer, launchChromium, startClientServer } from './support/browser.js'
import { authorizationUrl, formPost, pkce, registerClient } from './support/flow.js'
import { type ApprovedClient, approveClient, mcpStatus, refreshOutcome } from './support/grants.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import type { UpstreamUser } from './support/upstream.js'

const ALICE: UpstreamUser = { sub: 'kp_alice', email: 'alice@example.test', name: 'Alice' }
const BOB: UpstreamUser = { sub: 'kp_bob', email: 'bob@example.test', name: 'Bob' }

describe.each(['memory', 'redis'] as const)('the account page on %s', (store) => {
  let proxy: ProxyUnderTest
  let client: ClientServer
  let browser: Browser
  let screenshots: string
  const contexts: BrowserContext[] = []

  beforeAll(async () => {
    ;[proxy, client, browser, screenshots] = await Promise.all([
      startProxy({ flavor: 'kinde', store, upstream: { users: [ALICE, BOB] } }),
      startClientServer(),
      launchChromium(),
      mkdtemp(join(tmpdir(), 'account-browser-')),
    ])
  })

  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()))
  })

  afterAll(async () => {
    await browser?.close()
    await Promise.all([proxy?.close(), client?.close()])
    // KEEP_SCREENSHOTS=1 keeps them to look at.
    if (screenshots && !process.env.KEEP_SCREENSHOTS)
      await rm(screenshots, { recursive: true, force: true })
  })

  async function freshPage(): Promise<Page> {
    const context = await browser.newContext()
    contexts.push(context)
    context.setDefaultTimeout(10_000)
    return context.newPage()
  }

  const isUpstreamLogin = (url: URL) =>
    url.origin === proxy.upstream.url && url.pathname.startsWith('/interaction/')
  const accountUrl = () => `${proxy.url}/account`

  /** Opens /account and signs in as `user` at the upstream (or through its live session). */
  async function signInToAccount(page: Page, user: UpstreamUser): Promise<void> {
    await page.goto(accountUrl())
    await page.getByRole('link', { name: 'Sign in with Kinde' }).click()
    await page.waitForURL((url) => url.href === accountUrl() || isUpstreamLogin(url))
    if (page.url() !== accountUrl()) {
      await page.getByRole('button', { name: `Sign in as ${user.email}` }).click()
      await page.waitForURL(accountUrl())
    }
    expect(await page.locator('#who').textContent()).toBe(user.email)
  }

  /** In this browser: approves a new client on its consent page and signs in as `user`. */
  async function approveInBrowser(page: Page, name: string, user: UpstreamUser) {
    const registered = await registerClient(proxy.url, {
      client_name: name,
      redirect_uris: [client.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
    })
    const request = () => {
      const { verifier, challenge } = pkce()
      const state = randomToken(16)
      const url = authorizationUrl(proxy.url, {
        response_type: 'code',
        client_id: registered.client_id,
        redirect_uri: client.redirectUri,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        state,
        scope: 'openid profile email',
        resource: `${proxy.url}/mcp`,
      })
      return { url: url.href, state, verifier }
    }
    const first = request()
    await page.goto(first.url)
    await Promise.all([
      page.waitForURL(isUpstreamLogin),
      page.getByRole('button', { name: 'Allow' }).click(),
    ])
    await page.getByRole('button', { name: `Sign in as ${user.email}` }).click()
    const received = await client.callback(first.state)
    const res = await formPost(proxy.url, {
      grant_type: 'authorization_code',
      code: received.get('code') ?? '',
      redirect_uri: client.redirectUri,
      code_verifier: first.verifier,
      client_id: registered.client_id,
    })
    expect(res.status).toBe(200)
    const tokens = (await res.json()) as { access_token: string; refresh_token: string }
    const approved: ApprovedClient = {
      clientId: registered.client_id,
      redirectUri: client.redirectUri,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
    }
    /** Whether this browser's next request for the client gets the consent page (not the upstream). */
    const asksAgain = async () => {
      const res = await page.context().request.get(request().url, { maxRedirects: 0 })
      return res.status() === 200 && (await res.text()).includes('id="client-name"')
    }
    return { approved, asksAgain }
  }

  const listedNames = (page: Page) => page.locator('.grant .client-name').allTextContents()

  it("lists only the person's own approvals; Revoke ends that client's access alone and asks for consent again", async () => {
    const page = await freshPage()
    const alpha = await approveInBrowser(page, 'Alpha Agent', ALICE)
    const [beta, bobs] = await Promise.all([
      approveClient(proxy, 'Beta Desktop', ALICE.sub, 'https://beta.example.test/callback'),
      approveClient(proxy, 'Bob Private Tool', BOB.sub),
    ])
    // A remembered approval: the next connection skips the consent page.
    expect(await alpha.asksAgain()).toBe(false)

    await signInToAccount(page, ALICE)
    expect((await listedNames(page)).sort()).toEqual(['Alpha Agent', 'Beta Desktop'])
    expect(await page.content()).not.toContain('Bob Private Tool')
    const betaCard = page.locator('.grant', { hasText: 'Beta Desktop' })
    expect(await betaCard.locator('.redirect-target').textContent()).toBe('beta.example.test')
    expect(await betaCard.locator('.scopes code').allTextContents()).toEqual(['profile', 'email'])
    const alphaCard = page.locator('.grant', { hasText: 'Alpha Agent' })
    expect(await alphaCard.locator('.redirect-target').textContent()).toBe(
      `an application on this computer (${new URL(client.origin).host})`,
    )
    expect(await alphaCard.locator('time').count()).toBe(2)

    const desktop = join(screenshots, `account-${store}.png`)
    await page.screenshot({ path: desktop, fullPage: true })
    await page.setViewportSize({ width: 390, height: 844 })
    const phone = join(screenshots, `account-${store}-phone.png`)
    await page.screenshot({ path: phone, fullPage: true })
    // Readable on a phone: nothing wider than the screen.
    const width = await page.locator('html').evaluate((html) => html.scrollWidth)
    expect(width).toBeLessThanOrEqual(390)
    expect((await stat(desktop)).size).toBeGreaterThan(0)
    expect((await stat(phone)).size).toBeGreaterThan(0)

    const [revoked] = await Promise.all([
      page.waitForResponse(`${proxy.url}/account/revoke`),
      page.getByRole('button', { name: 'Revoke Alpha Agent' }).click(),
    ])
    expect(revoked.status()).toBe(303)
    await page.waitForURL(accountUrl())
    expect(await listedNames(page)).toEqual(['Beta Desktop'])

    expect(await mcpStatus(proxy, alpha.approved.accessToken)).toBe(401)
    expect(await refreshOutcome(proxy, alpha.approved)).toBe('invalid_grant')
    expect(await mcpStatus(proxy, beta.accessToken)).toBe(200)
    expect(await mcpStatus(proxy, bobs.accessToken)).toBe(200)
    expect(await refreshOutcome(proxy, beta)).toBe(200)
    expect(await alpha.asksAgain()).toBe(true)
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text()
    expect(metrics).toMatch(/^mcp_oauth_proxy_grants_revoked_total\{by="user"\} 1$/m)
  })

  it('serves the page unframeable, uncached, and its session in a short-lived HttpOnly Lax cookie', async () => {
    const page = await freshPage()
    const response = await page.goto(accountUrl())
    const headers = response?.headers() ?? {}
    expect(headers['cache-control']).toBe('no-store')
    expect(headers['x-frame-options']).toBe('DENY')
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'")
    expect(headers['content-security-policy']).toContain("default-src 'none'")
    const signInPage = join(screenshots, `account-sign-in-${store}.png`)
    await page.screenshot({ path: signInPage, fullPage: true })
    expect((await stat(signInPage)).size).toBeGreaterThan(0)
    await signInToAccount(page, BOB)
    const cookie = (await page.context().cookies()).find((c) => c.name === 'mcp-account')
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' })
    const lifetime = (cookie?.expires ?? 0) - Date.now() / 1000
    expect(lifetime).toBeGreaterThan(800)
    expect(lifetime).toBeLessThanOrEqual(900)
    expect(await page.locator('script').count()).toBe(0)
  })

  it('Sign out ends the session: the page asks to sign in, and its old forms are refused', async () => {
    const page = await freshPage()
    const kept = await approveClient(proxy, 'Kept Client', BOB.sub)
    await signInToAccount(page, BOB)
    const csrf = await page.locator('input[name="csrf_token"]').first().getAttribute('value')
    const session = (await page.context().cookies()).find((c) => c.name === 'mcp-account')
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.waitForURL((url) => url.pathname === '/account' && url.search === '?signed_out')
    expect(await page.getByText('You are signed out').count()).toBe(1)
    expect((await page.context().cookies()).some((c) => c.name === 'mcp-account')).toBe(false)

    // The old cookie, replayed with its CSRF token, no longer opens anything.
    const [grant] = await listUserGrants(proxy.server.deps, BOB.sub)
    const replay = await formPost(
      proxy.url,
      { csrf_token: csrf ?? '', grant_id: grant?.id ?? '' },
      '/account/revoke',
      { cookie: `mcp-account=${session?.value}`, origin: proxy.url },
    )
    expect(replay.status).toBe(403)
    expect(await mcpStatus(proxy, kept.accessToken)).toBe(200)
  })

  // 127.0.0.1 on another port is the same site (SameSite=Lax sends the cookie); `localhost` is
  // another site. Either way the proxy refuses, even with the right CSRF token in the form.
  it.each([
    { site: 'same-site', host: '127.0.0.1' },
    { site: 'cross-site', host: 'localhost' },
  ])('refuses a Revoke auto-submitted from a $site page ($host)', async ({ site, host }) => {
    const page = await freshPage()
    const victim = await approveClient(proxy, 'Victim Client', ALICE.sub)
    await signInToAccount(page, ALICE)
    const grant = (await listUserGrants(proxy.server.deps, ALICE.sub)).find(
      (g) => g.clientId === victim.clientId,
    )
    const csrf = await page.locator('input[name="csrf_token"]').first().getAttribute('value')
    const path = `/attack-${randomToken(8)}`
    client.page(
      path,
      `<!doctype html><form method="post" action="${proxy.url}/account/revoke">
      <input type="hidden" name="csrf_token" value="${csrf}">
      <input type="hidden" name="grant_id" value="${grant?.id}">
    </form><script>document.forms[0].submit()</script>`,
    )
    const attacker = new URL(path, client.origin)
    attacker.hostname = host
    const [response] = await Promise.all([
      page.waitForResponse(`${proxy.url}/account/revoke`),
      page.goto(attacker.href),
    ])
    expect((await response.request().allHeaders())['sec-fetch-site']).toBe(site)
    expect(response.status()).toBe(403)
    expect(await response.text()).toContain('submitted from another site')
    expect(await mcpStatus(proxy, victim.accessToken)).toBe(200)
  })

  it("cannot revoke another person's grant by its id", async () => {
    const page = await freshPage()
    await approveClient(proxy, 'Alice Own', ALICE.sub)
    const bobs = await approveClient(proxy, 'Bob Only', BOB.sub)
    const bobGrant = (await listUserGrants(proxy.server.deps, BOB.sub)).find(
      (g) => g.clientId === bobs.clientId,
    )
    await signInToAccount(page, ALICE)
    // Alice edits her own Revoke form to name Bob's grant, as developer tools allow.
    await page
      .locator('input[name="grant_id"]')
      .first()
      .evaluate((input, id) => input.setAttribute('value', id), bobGrant?.id ?? '')
    await page.locator('.grant button').first().click()
    await page.waitForURL(accountUrl())
    expect(await mcpStatus(proxy, bobs.accessToken)).toBe(200)
    expect(await refreshOutcome(proxy, bobs)).toBe(200)
  })
})

import fc from 'fast-check'
import type { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import {
  type ApprovedClient,
  approveClient,
  mcpStatus,
  signInToAccount,
} from '../support/grants.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy } from '../support/proxy.js'
import type { UpstreamUser } from '../support/upstream.js'
import {
  assertWellBehaved,
  binaryBody,
  contentType,
  type Exchange,
  formBody,
  formParams,
  headerValue,
  method,
  nastyString,
  runs,
  timed,
} from './support.js'

// The account page's POSTs and POST /backchannel-logout under hostile input, in-process on the
// deps of a real proxy whose upstream (oidc-provider) signs real tokens. Whatever arrives, the
// grants of both people stay alive: no request here carries a grant id and a valid session and
// CSRF token together from the page's own origin, nor a valid logout token.

const ALICE: UpstreamUser = { sub: 'kp_alice', email: 'alice@example.test' }
const BOB: UpstreamUser = { sub: 'kp_bob', email: 'bob@example.test' }
const EVENT = 'http://schemas.openid.net/event/backchannel-logout'

let proxy: ProxyUnderTest
let app: Hono
let alice: ApprovedClient
let bob: ApprovedClient
let session: string
let csrfToken: string
let genuine: string

beforeAll(async () => {
  proxy = await startProxy({
    flavor: 'kinde',
    backchannelLogout: true,
    upstream: { users: [ALICE, BOB] },
  })
  app = createApp(proxy.server.deps)
  ;[alice, bob] = await Promise.all([
    approveClient(proxy, 'Alice app', ALICE.sub),
    approveClient(proxy, 'Bob app', BOB.sub),
  ])
  const signedIn = await signInToAccount(proxy, ALICE.sub)
  session = signedIn.agent.cookie(new URL(proxy.url).host, 'mcp-account') ?? ''
  csrfToken = signedIn.csrfToken
  // A logout token the upstream would send for someone with no grants here.
  const now = Math.floor(Date.now() / 1000)
  genuine = await proxy.upstream.signJwt({
    iss: proxy.upstream.issuer,
    aud: PROXY_CLIENT.client_id,
    iat: now,
    jti: 'property-genuine',
    events: { [EVENT]: {} },
    sub: 'kp_nobody',
  })
})
afterAll(() => proxy?.close())

async function expectGrantsAlive() {
  expect(await mcpStatus(proxy, alice.accessToken)).toBe(200)
  expect(await mcpStatus(proxy, bob.accessToken)).toBe(200)
}

function send(
  path: string,
  init: { method: string; body?: string | Uint8Array; headers: Record<string, string | undefined> },
): Promise<Exchange> {
  const headers = new Headers()
  for (const [name, value] of Object.entries(init.headers))
    if (value !== undefined) headers.set(name, value)
  return timed(() =>
    app.request(`${proxy.url}${path}`, {
      method: init.method,
      headers,
      body: init.method === 'GET' || init.method === 'HEAD' ? undefined : init.body,
    }),
  )
}

describe('POST /account/revoke and /account/sign-out under hostile input', () => {
  it('answers well and ends nothing without the whole of a same-origin signed-in form', async () => {
    const body = fc.oneof(
      formBody(
        formParams(['csrf_token', 'grant_id']).map((pairs) =>
          // The real CSRF token sometimes, next to hostile grant ids, never a real one.
          pairs.map(([k, v], i): [string, string] =>
            k === 'csrf_token' && i % 2 === 0 ? [k, csrfToken] : [k, v],
          ),
        ),
      ),
      binaryBody,
    )
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/account/revoke', '/account/sign-out', '/account'),
        method,
        contentType,
        body,
        fc.oneof(fc.constant(undefined), fc.constant(`mcp-account=${session}`), headerValue),
        fc.constantFrom(undefined, 'same-origin', 'same-site', 'cross-site', 'none'),
        fc.oneof(fc.constant(undefined), fc.constant(proxy.url), headerValue),
        async (path, verb, type, payload, cookie, site, origin) => {
          // Sign-out with the real session and token from our own origin would rightly work.
          const ownOrigin =
            (site ?? 'same-origin') === 'same-origin' && (origin ?? proxy.url) === proxy.url
          const signsOut = path === '/account/sign-out' && cookie?.includes(session) && ownOrigin
          const ex = await send(path, {
            method: verb,
            body: payload,
            headers: {
              'content-type': type,
              cookie: signsOut ? undefined : cookie,
              'sec-fetch-site': site,
              origin,
            },
          })
          assertWellBehaved(ex, {
            endpoint: 'account',
            method: verb,
            secrets: [session, PROXY_CLIENT.client_secret],
            ownOrigins: [new URL(proxy.url).origin, new URL(proxy.upstream.url).origin],
            proxyUrl: proxy.url,
          })
        },
      ),
      runs(150),
    )
    await expectGrantsAlive()
  })
})

describe('POST /backchannel-logout under hostile input', () => {
  /** Logout tokens that must all fail: mangled real ones, unsigned, and plain garbage. */
  const tokens = () =>
    fc.oneof(
      nastyString,
      fc.tuple(fc.nat(), fc.constantFrom(...'AZaz09-_.'.split(''))).map(([at, c]) => {
        const i = at % genuine.length
        const mangled = genuine.slice(0, i) + c + genuine.slice(i + 1)
        return mangled === genuine ? `${genuine}x` : mangled
      }),
      fc.constant(genuine).map((t) => {
        const [, payload] = t.split('.')
        return `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`
      }),
      fc.constant(genuine).map((t) => t.split('.').slice(0, 2).join('.')),
      fc
        .json()
        .map(
          (j) =>
            `${Buffer.from(j).toString('base64url')}.${Buffer.from(j).toString('base64url')}.x`,
        ),
    )
  it('answers 400 invalid_request (never 200, never 5xx) and ends nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        method,
        contentType,
        fc.oneof(
          tokens().map((t) => new URLSearchParams({ logout_token: t }).toString()),
          formBody(formParams(['logout_token'])),
          binaryBody,
        ),
        async (verb, type, payload) => {
          const ex = await send('/backchannel-logout', {
            method: verb,
            body: payload,
            headers: { 'content-type': type },
          })
          expect(ex.res.status).not.toBe(200)
          assertWellBehaved(ex, {
            endpoint: 'backchannel-logout',
            method: verb,
            secrets: [PROXY_CLIENT.client_secret],
          })
        },
      ),
      runs(200),
    )
    await expectGrantsAlive()
  })
})

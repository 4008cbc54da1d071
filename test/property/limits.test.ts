import fc from 'fast-check'
import type { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { pkce, registerClient } from '../support/flow.js'
import { type ProxyUnderTest, startProxy } from '../support/proxy.js'
import {
  assertWellBehaved,
  formBody,
  formParams,
  headerValue,
  nastyString,
  runs,
  timed,
} from './support.js'

// The per-address limits under hostile X-Forwarded-For headers (TRUST_PROXY on): whatever the
// header holds, /token and /authorize answer in their vocabulary, never 5xx, and a 429 always
// says when to come back.

const REDIRECT = 'http://127.0.0.1:7302/cb'

let proxy: ProxyUnderTest
let app: Hono
let clientId: string

beforeAll(async () => {
  proxy = await startProxy({
    flavor: 'kinde',
    env: { TRUST_PROXY: 'true', TOKEN_RATE_LIMIT: '3', AUTHORIZE_RATE_LIMIT: '3' },
  })
  app = createApp(proxy.server.deps)
  clientId = (
    await registerClient(proxy.url, {
      client_name: 'property limits',
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: 'none',
    })
  ).client_id
})
afterAll(() => proxy?.close())

/** X-Forwarded-For as a proxy, a client or an attacker might write it. */
const forwardedFor = fc.oneof(
  fc.constant(undefined),
  headerValue,
  fc
    .array(fc.oneof(fc.ipV4(), fc.ipV6(), nastyString), { minLength: 1, maxLength: 4 })
    // What `Headers` accepts: no NUL, CR or LF, nothing past Latin-1.
    .map((a) => a.join(', ').replace(/[^\t\x20-\xff]/g, '')),
  fc.constantFrom(',', ', ,', '203.0.113.9,', ' 203.0.113.9 ', 'unknown', 'x'.repeat(8000)),
)

describe('per-address limits with hostile X-Forwarded-For', () => {
  it('keeps /token well-behaved, answering 429 with Retry-After once an address failed enough', async () => {
    let limited = 0
    await fc.assert(
      fc.asyncProperty(
        forwardedFor,
        formBody(formParams(['grant_type', 'code', 'refresh_token', 'client_id'])),
        async (xff, body) => {
          const headers: Record<string, string> = {
            'content-type': 'application/x-www-form-urlencoded',
          }
          if (xff !== undefined) headers['x-forwarded-for'] = xff
          const ex = await timed(() =>
            app.request(`${proxy.url}/token`, { method: 'POST', headers, body }),
          )
          assertWellBehaved(ex, { endpoint: 'token', method: 'POST' })
          expect(ex.res.status).not.toBe(200)
          if (ex.res.status === 429) {
            limited++
            expect(ex.res.headers.get('retry-after')).toMatch(/^\d+$/)
          }
        },
      ),
      runs(150),
    )
    expect(limited).toBeGreaterThan(0)
  })

  it('keeps /authorize well-behaved, answering its 429 page once an address asked enough', async () => {
    let limited = 0
    await fc.assert(
      fc.asyncProperty(forwardedFor, async (xff) => {
        const url = new URL('/authorize', proxy.url)
        url.search = new URLSearchParams({
          response_type: 'code',
          client_id: clientId,
          redirect_uri: REDIRECT,
          code_challenge: pkce().challenge,
          code_challenge_method: 'S256',
        }).toString()
        const ex = await timed(() =>
          app.request(url.href, { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }),
        )
        assertWellBehaved(ex, { endpoint: 'authorize', method: 'GET', redirectUris: [REDIRECT] })
        expect([200, 429]).toContain(ex.res.status)
        if (ex.res.status === 429) limited++
      }),
      runs(100),
    )
    expect(limited).toBeGreaterThan(0)
  })
})

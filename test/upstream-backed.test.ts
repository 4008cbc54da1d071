import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from '@hono/node-server'
import { decodeJwt } from 'jose'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMcpAuthProxy, defineTool, jsonResult, type McpAuthProxy } from '../src/index.js'
import { createTestClock, type TestClock } from './support/clock.js'
import { authorizationUrl, formPost, pkce, registerClient, signIn } from './support/flow.js'
import { mcpRequest, rpcResponse, toolCallMessage } from './support/mcp.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy, upstreamEnv } from './support/proxy.js'
import { deleteKeys, REDIS_URL, uniquePrefix } from './support/redis.js'
import {
  startUpstream,
  type Upstream,
  type UpstreamFlavor,
  type UpstreamUser,
} from './support/upstream.js'

/*
 * What a token says is what the upstream says: scopes beyond the OpenID Connect ones need an
 * upstream permission, every refresh re-reads the user at the upstream and re-runs the sign-in
 * policy, and only `email_verified: true` is a verified email. The upstream is the real
 * oidc-provider, whose accounts an administrator changes between sign-in and refresh.
 */

interface Tokens {
  access_token: string
  refresh_token: string
  scope: string
}

const SCOPES = 'openid profile email reports:read reports:admin tools:basic'
const POLICY_ENV = {
  SCOPES,
  OPEN_SCOPES: 'tools:basic',
  SCOPE_PERMISSIONS: 'reports:admin=admin:reports',
  ALLOWED_EMAIL_DOMAINS: 'acme.test',
  ALLOWED_ORG_CODES: 'org_acme',
  REQUIRED_PERMISSIONS: 'reports:read',
  MCP_SESSIONS: 'stateless',
}

/** A member of org_acme with a verified acme.test email and the permissions given. */
const member = (name: string, permissions: string[]): UpstreamUser => ({
  sub: `user-${name}`,
  email: `${name}@acme.test`,
  email_verified: true,
  org_code: 'org_acme',
  permissions,
})

const adminReport = defineTool({
  name: 'admin_report',
  description: 'An administrators-only report.',
  requiredScopes: ['reports:admin'],
  handler: (_args, { caller }) => jsonResult({ sub: caller.sub, permissions: caller.permissions }),
})

/** The audit log a proxy writes to AUDIT_LOG, read as its events. */
function auditFile() {
  const dir = mkdtempSync(join(tmpdir(), 'upstream-backed-'))
  const file = join(dir, 'audit.log')
  const lines = (): Record<string, unknown>[] => {
    try {
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
    } catch {
      return []
    }
  }
  return {
    file,
    /** Waits for the asynchronous writes, then returns the first event of `predicate`. */
    async find(predicate: (line: Record<string, unknown>) => boolean) {
      await expect.poll(() => lines().some(predicate), { timeout: 5000 }).toBe(true)
      return lines().find(predicate)
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** Registers a public client, signs `user` in asking for `scope`, and exchanges the code. */
async function signInAs(
  proxy: { url: string; upstream: Upstream },
  user: string,
  scope?: string,
): Promise<{ clientId: string; tokens: Tokens }> {
  const redirectUri = 'http://127.0.0.1:46321/cb'
  const { client_id: clientId } = await registerClient(proxy.url, {
    client_name: 'upstream-backed test',
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'none',
  })
  const { verifier, challenge } = pkce()
  const back = await signIn(
    proxy,
    authorizationUrl(proxy.url, {
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      scope,
      state: 'st',
    }),
    { user },
  )
  const code = back.searchParams.get('code')
  if (!code) throw new Error(`no code: ${back.href}`)
  const res = await formPost(proxy.url, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    client_id: clientId,
  })
  expect(res.status).toBe(200)
  return { clientId, tokens: (await res.json()) as Tokens }
}

const refresh = (url: string, clientId: string, token: string) =>
  formPost(url, { grant_type: 'refresh_token', refresh_token: token, client_id: clientId })

const challengeOf = (response: Response) => response.headers.get('www-authenticate') ?? ''

describe.each(['memory', 'redis'] as const)('scopes backed by the upstream (%s store)', (store) => {
  const users = {
    reader: member('reader', ['reports:read']),
    admin: member('admin', ['reports:read', 'admin:reports']),
    demoted: member('demoted', ['reports:read', 'admin:reports']),
    leaver: member('leaver', ['reports:read']),
    unverified: member('unverified', ['reports:read']),
    stripped: member('stripped', ['reports:read']),
    banned: member('banned', ['reports:read']),
  }
  const banned = new Set<string>()
  const audit = auditFile()
  const prefix = uniquePrefix('upstream-backed')
  let upstream: Upstream
  let proxy: McpAuthProxy
  let server: Server
  let url: string

  beforeAll(async () => {
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    upstream = await startUpstream({
      flavor: 'kinde',
      client: { ...PROXY_CLIENT, redirect_uris: [`${url}/callback`] },
      users: Object.values(users),
    })
    proxy = await createMcpAuthProxy({
      config: {
        PUBLIC_URL: url,
        ...upstreamEnv(upstream),
        ...POLICY_ENV,
        AUDIT_LOG: audit.file,
        ...(store === 'redis' ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
      },
      logger: pino({ level: 'silent' }),
      tools: [adminReport],
      authorizeUser: (user) => !banned.has(user.sub) || 'this account is suspended',
    })
    server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: proxy.app.fetch, port, hostname: '127.0.0.1' }, () =>
        resolve(started as Server),
      )
    })
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => {
      server?.close(() => resolve())
      server?.closeAllConnections()
    })
    await proxy?.close()
    await upstream?.close()
    if (store === 'redis') await deleteKeys(prefix)
    audit.remove()
  })

  const callAdminReport = (token: string) =>
    mcpRequest(`${url}/mcp`, { token, body: toolCallMessage('admin_report') })

  it('leaves a scope the user holds no permission for out of the grant, and its tool answers 403 naming the permission', async () => {
    const { tokens } = await signInAs(
      { url, upstream },
      users.reader.sub,
      'openid reports:read reports:admin',
    )
    expect(tokens.scope).toBe('openid reports:read')
    expect(decodeJwt(tokens.access_token).scope).toBe('openid reports:read')

    const refused = await callAdminReport(tokens.access_token)
    expect(refused.status).toBe(403)
    const description =
      'this request needs the scope reports:admin (upstream permission reports:admin or admin:reports)'
    expect(await refused.json()).toEqual({
      error: 'insufficient_scope',
      error_description: description,
    })
    expect(challengeOf(refused)).toContain(`error_description="${description}"`)
    expect(challengeOf(refused)).toContain('scope="reports:admin"')
  })

  it('grants a scope through the permission SCOPE_PERMISSIONS maps to it, and its tool runs', async () => {
    const { tokens } = await signInAs(
      { url, upstream },
      users.admin.sub,
      'openid reports:read reports:admin',
    )
    expect(tokens.scope).toBe('openid reports:read reports:admin')
    const ran = await callAdminReport(tokens.access_token)
    expect(ran.status).toBe(200)
    const { result } = (await rpcResponse(ran)) as { result: { isError?: boolean } }
    expect(result.isError).toBeFalsy()
  })

  it('grants the OpenID Connect scopes and OPEN_SCOPES to anyone, and by default what SCOPES offers and the user holds', async () => {
    const { tokens } = await signInAs({ url, upstream }, users.reader.sub)
    expect(tokens.scope).toBe('openid profile email reports:read tools:basic')
  })

  it('narrows a refresh to what the upstream still backs, with the new permissions, and revokes the stale token', async () => {
    const { clientId, tokens } = await signInAs(
      { url, upstream },
      users.demoted.sub,
      'openid reports:read reports:admin',
    )
    expect(tokens.scope).toBe('openid reports:read reports:admin')
    upstream.updateUser(users.demoted.sub, { permissions: ['reports:read'] })

    const res = await refresh(url, clientId, tokens.refresh_token)
    expect(res.status).toBe(200)
    const next = (await res.json()) as Tokens
    expect(next.scope).toBe('openid reports:read')
    expect(decodeJwt(next.access_token)).toMatchObject({
      scope: 'openid reports:read',
      permissions: ['reports:read'],
    })
    expect((await callAdminReport(next.access_token)).status).toBe(403)
    // The token minted before the change still claimed reports:admin: it no longer works.
    const stale = await callAdminReport(tokens.access_token)
    expect(stale.status).toBe(401)
    expect(challengeOf(stale)).toContain('error="invalid_token"')

    // Narrowed for good: a later refresh asking for it back is refused.
    const wider = await formPost(url, {
      grant_type: 'refresh_token',
      refresh_token: next.refresh_token,
      client_id: clientId,
      scope: 'openid reports:admin',
    })
    expect(wider.status).toBe(400)
    expect(await wider.json()).toMatchObject({ error: 'invalid_scope' })
  })

  it.each([
    [
      'is removed from the organization',
      'leaver',
      { org_code: 'org_other' },
      'organization org_other may not use this server',
    ],
    [
      'no longer has a verified email',
      'unverified',
      { email_verified: false },
      'a verified email address is required to use this server',
    ],
    [
      'is stripped of a required permission',
      'stripped',
      { permissions: [] },
      'missing required permission: reports:read',
    ],
  ] satisfies [string, keyof typeof users, Partial<UpstreamUser>, string][])(
    'ends the grant when the user %s at the upstream: invalid_grant and policy.refused',
    async (_case, name, changes, reason) => {
      const user = users[name]
      const { clientId, tokens } = await signInAs({ url, upstream }, user.sub)
      upstream.updateUser(user.sub, changes)

      const res = await refresh(url, clientId, tokens.refresh_token)
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({ error: 'invalid_grant', error_description: reason })
      const event = await audit.find((e) => e.event === 'policy.refused' && e.sub === user.sub)
      expect(event).toMatchObject({ client_id: clientId, actor: 'user', reason })

      // The grant is gone: its refresh token and its access token with it.
      expect(await (await refresh(url, clientId, tokens.refresh_token)).json()).toMatchObject({
        error: 'invalid_grant',
        error_description: 'the refresh token is invalid, expired or revoked',
      })
      expect((await callAdminReport(tokens.access_token)).status).toBe(401)
    },
  )

  it('runs authorizeUser again on refresh', async () => {
    const { clientId, tokens } = await signInAs({ url, upstream }, users.banned.sub)
    banned.add(users.banned.sub)
    const res = await refresh(url, clientId, tokens.refresh_token)
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'invalid_grant',
      error_description: 'this account is suspended',
    })
  })
})

describe.each(['memory', 'redis'] as const)(
  'the MCP gate’s transparent refresh (%s store)',
  (store) => {
    const users = {
      leaver: member('gate-leaver', ['reports:read']),
      demoted: member('gate-demoted', ['reports:read', 'admin:reports']),
      steady: member('gate-steady', ['reports:read']),
    }
    const audit = auditFile()
    let proxy: ProxyUnderTest
    let clock: TestClock

    beforeAll(async () => {
      clock = createTestClock(Math.floor(Date.now() / 1000))
      proxy = await startProxy({
        flavor: 'kinde',
        store,
        upstream: { users: Object.values(users) },
        // Proxy tokens outlive the upstream's hour, so the gate refreshes the upstream token.
        env: { ...POLICY_ENV, ACCESS_TOKEN_TTL_SECONDS: '7200', AUDIT_LOG: audit.file },
        clock,
      })
    })
    afterAll(async () => {
      await proxy?.close()
      audit.remove()
    })

    const whoami = (token: string) =>
      mcpRequest(`${proxy.url}/mcp`, { token, body: toolCallMessage('whoami') })
    /** Moves the proxy's clock to where the upstream token needs a refresh. */
    const upstreamTokenExpires = () => clock.advance(3590)

    it('ends the grant when the refreshed upstream answer no longer passes the policy', async () => {
      const { clientId, tokens } = await signInAs(proxy, users.leaver.sub)
      upstream().updateUser(users.leaver.sub, { org_code: 'org_other' })
      upstreamTokenExpires()

      const res = await whoami(tokens.access_token)
      expect(res.status).toBe(401)
      expect(challengeOf(res)).toContain(
        'error="invalid_token", error_description="organization org_other may not use this server"',
      )
      expect(
        await audit.find((e) => e.event === 'policy.refused' && e.sub === users.leaver.sub),
      ).toMatchObject({
        client_id: clientId,
        reason: 'organization org_other may not use this server',
      })
      expect((await refresh(proxy.url, clientId, tokens.refresh_token)).status).toBe(400)
    })

    it('refuses a token whose scopes the upstream no longer backs, and the client’s refresh narrows them', async () => {
      const { clientId, tokens } = await signInAs(
        proxy,
        users.demoted.sub,
        'openid reports:read reports:admin',
      )
      upstream().updateUser(users.demoted.sub, { permissions: ['reports:read'] })
      upstreamTokenExpires()

      const res = await whoami(tokens.access_token)
      expect(res.status).toBe(401)
      expect(challengeOf(res)).toContain(
        'error_description="the account changed at the identity provider; refresh the token"',
      )
      const next = await refresh(proxy.url, clientId, tokens.refresh_token)
      expect(next.status).toBe(200)
      const narrowed = (await next.json()) as Tokens
      expect(narrowed.scope).toBe('openid reports:read')
      const again = await whoami(narrowed.access_token)
      expect(again.status).toBe(200)
      const { result } = (await rpcResponse(again)) as { result: { content: { text: string }[] } }
      expect(JSON.parse(result.content[0]?.text ?? '{}')).toMatchObject({
        permissions: ['reports:read'],
      })
    })

    it('keeps serving a user the upstream still vouches for unchanged', async () => {
      const { tokens } = await signInAs(proxy, users.steady.sub)
      upstreamTokenExpires()
      const res = await whoami(tokens.access_token)
      expect(res.status).toBe(200)
      await res.body?.cancel()
    })

    const upstream = () => proxy.upstream
  },
)

describe('a userinfo outage in the middle of a refresh', () => {
  let userinfoDown = false
  const faulty: typeof fetch = (input, init) => {
    const target = input instanceof Request ? input.url : String(input)
    if (userinfoDown && new URL(target).pathname === '/oauth2/v2/user_profile') {
      return Promise.reject(new TypeError('fetch failed'))
    }
    return fetch(input, init)
  }
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      upstream: { users: [member('outage', ['reports:read'])] },
      env: { ALLOWED_EMAIL_DOMAINS: 'acme.test' },
      fetch: faulty,
    })
  })
  afterAll(() => proxy?.close())

  it('answers 503 and keeps the family, though Kinde already rotated its refresh token', async () => {
    const { clientId, tokens } = await signInAs(proxy, 'user-outage')
    userinfoDown = true
    try {
      const res = await refresh(proxy.url, clientId, tokens.refresh_token)
      expect(res.status).toBe(503)
      expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
    } finally {
      userinfoDown = false
    }
    const retry = await refresh(proxy.url, clientId, tokens.refresh_token)
    expect(retry.status).toBe(200)
  })
})

describe.each(['kinde', 'auth0', 'oidc'] as const)(
  'ALLOWED_EMAIL_DOMAINS through %s',
  (flavor: UpstreamFlavor) => {
    const user = (name: string, emailVerified: boolean | null): UpstreamUser => ({
      sub: `user-${name}`,
      email: `${name}@acme.test`,
      email_verified: emailVerified,
      org_code: 'org_acme',
      org_id: 'org_acme',
    })
    let proxy: ProxyUnderTest
    beforeAll(async () => {
      proxy = await startProxy({
        flavor,
        upstream: {
          users: [user('verified', true), user('unverified', false), user('unsaid', null)],
        },
        env: { ALLOWED_EMAIL_DOMAINS: 'acme.test' },
      })
    })
    afterAll(() => proxy?.close())

    const signInUser = async (sub: string) => {
      const { client_id } = await registerClient(proxy.url, {
        client_name: 'email test',
        redirect_uris: ['http://127.0.0.1:46322/cb'],
        token_endpoint_auth_method: 'none',
      })
      return signIn(
        proxy,
        authorizationUrl(proxy.url, {
          response_type: 'code',
          client_id,
          redirect_uri: 'http://127.0.0.1:46322/cb',
          code_challenge: pkce().challenge,
          code_challenge_method: 'S256',
          state: 'st',
        }),
        { user: sub },
      )
    }

    it('admits an address the upstream says is verified', async () => {
      const back = await signInUser('user-verified')
      expect(back.searchParams.get('code')).toMatch(/^[\w-]{43}$/)
    })

    it.each([
      ['unverified', 'user-unverified'],
      ['of unknown verification', 'user-unsaid'],
    ])('refuses an address that is %s', async (_case, sub) => {
      const back = await signInUser(sub)
      expect(back.searchParams.get('error')).toBe('access_denied')
      expect(back.searchParams.get('error_description')).toBe(
        'a verified email address is required to use this server',
      )
    })
  },
)

describe('agents’ scopes', () => {
  const AGENT = {
    client_id: 'agent-scoped',
    client_secret: 'agent-scoped-secret',
    org_code: 'org_acme',
    scope: 'reports:read admin:reports billing:write',
  }
  let proxy: ProxyUnderTest
  beforeAll(async () => {
    proxy = await startProxy({
      flavor: 'kinde',
      upstream: { m2mClients: [AGENT] },
      env: {
        SCOPES: 'openid reports:read reports:admin reports:write',
        SCOPE_PERMISSIONS: 'reports:admin=admin:reports',
      },
    })
  })
  afterAll(() => proxy?.close())

  it('narrows an agent’s scopes to those its M2M token backs, mapped like a user’s', async () => {
    const res = await formPost(proxy.url, {
      grant_type: 'client_credentials',
      client_id: AGENT.client_id,
      client_secret: AGENT.client_secret,
    })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { scope: string; access_token: string }
    // reports:write is not the agent's; billing:write is not this server's.
    expect(body.scope).toBe('openid reports:read reports:admin')
    expect(decodeJwt(body.access_token).scope).toBe('openid reports:read reports:admin')
  })
})

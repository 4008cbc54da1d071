import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formPost, registerClient, signInForCode } from './support/flow.js'
import { PROXY_CLIENT, type ProxyUnderTest, startProxy } from './support/proxy.js'

const AGENT = { client_id: 'agent-acme', client_secret: 'agent-acme-secret', org_code: 'org_acme' }
const USER = {
  sub: 'user-audit',
  email: 'audit@acme.test',
  org_code: 'org_acme',
  permissions: ['read:reports'],
}

type Line = Record<string, unknown>

describe('the audit log', () => {
  let proxy: ProxyUnderTest
  let dir: string
  let file: string
  /** Every credential the test sees; none may ever appear in the audit log. */
  const secrets: string[] = [PROXY_CLIENT.client_secret, AGENT.client_secret]

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'audit-'))
    file = join(dir, 'audit.log')
    proxy = await startProxy({
      flavor: 'kinde',
      env: { AUDIT_LOG: file },
      upstream: { users: [USER], m2mClients: [AGENT] },
    })
  })
  afterAll(async () => {
    await proxy.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const lines = (): Line[] =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line)

  /** Waits for the asynchronous file writes, then returns the events of `predicate`. */
  async function eventsWhere(predicate: (line: Line) => boolean, count: number): Promise<Line[]> {
    await expect
      .poll(() => lines().filter(predicate).length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(count)
    return lines().filter(predicate)
  }

  it('records a whole user flow, field by field, under one flow id', async () => {
    const redirectUri = 'https://app.audit.test/cb'
    const client = await registerClient(proxy.url, {
      client_name: 'Audit client',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_post',
    })
    secrets.push(client.client_secret as string)
    const { code, verifier } = await signInForCode(proxy, {
      clientId: client.client_id,
      redirectUri,
      state: 'st',
    })
    secrets.push(verifier, code)
    const form = (params: Record<string, string>) =>
      formPost(proxy.url, {
        client_id: client.client_id,
        client_secret: client.client_secret as string,
        ...params,
      })
    const issued = (await (
      await form({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirectUri,
        code_verifier: verifier,
      })
    ).json()) as { access_token: string; refresh_token: string }
    const refreshed = (await (
      await form({ grant_type: 'refresh_token', refresh_token: issued.refresh_token })
    ).json()) as {
      access_token: string
      refresh_token: string
    }
    secrets.push(
      issued.access_token,
      issued.refresh_token,
      refreshed.access_token,
      refreshed.refresh_token,
    )
    const revoke = await fetch(`${proxy.url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        token: refreshed.refresh_token,
        client_id: client.client_id,
        client_secret: client.client_secret as string,
      }),
    })
    expect(revoke.status).toBe(200)

    const mine = await eventsWhere((l) => l.client_id === client.client_id, 6)
    const scopes = ['openid', 'profile', 'email']
    const flowId = mine.find((l) => l.event === 'consent.granted')?.flow_id
    expect(flowId).toMatch(/^[\w-]{16}$/)
    const common = { stream: 'audit', request_id: expect.stringMatching(/^[\w-]{36}$/) }
    expect(mine.map(({ time: _t, level: _l, msg: _m, service: _s, ...rest }) => rest)).toEqual([
      {
        ...common,
        event: 'client.registered',
        client_id: client.client_id,
        auth_method: 'client_secret_post',
      },
      { ...common, event: 'consent.granted', client_id: client.client_id, flow_id: flowId, scopes },
      {
        ...common,
        event: 'authorization.granted',
        client_id: client.client_id,
        flow_id: flowId,
        sub: 'user-audit',
        org: 'org_acme',
        actor: 'user',
        scopes,
      },
      {
        ...common,
        event: 'token.issued',
        grant_type: 'authorization_code',
        client_id: client.client_id,
        flow_id: flowId,
        sub: 'user-audit',
        org: 'org_acme',
        actor: 'user',
        scopes,
        jti: expect.stringMatching(/^[\w-]{22}$/),
      },
      {
        ...common,
        event: 'token.issued',
        grant_type: 'refresh_token',
        client_id: client.client_id,
        flow_id: flowId,
        sub: 'user-audit',
        org: 'org_acme',
        actor: 'user',
        scopes,
        jti: expect.stringMatching(/^[\w-]{22}$/),
      },
      {
        ...common,
        event: 'token.revoked',
        kind: 'refresh_token',
        client_id: client.client_id,
        flow_id: flowId,
        sub: 'user-audit',
      },
    ])
    // Each request has its own correlation id.
    expect(new Set(mine.map((l) => l.request_id)).size).toBe(mine.length)
  })

  it('records a whole agent flow, including a refused attempt', async () => {
    const token = (id: string, secret: string) =>
      formPost(proxy.url, { grant_type: 'client_credentials' }, '/token', {
        authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
        'x-request-id': 'agent-run-42',
      })
    const ok = await token(AGENT.client_id, AGENT.client_secret)
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-request-id')).toBe('agent-run-42')
    secrets.push(((await ok.json()) as { access_token: string }).access_token)
    expect((await token(AGENT.client_id, 'not-the-secret')).status).toBe(401)

    const agent = await eventsWhere((l) => l.client_id === AGENT.client_id, 2)
    expect(agent.map(({ time: _t, level: _l, msg: _m, service: _s, ...rest }) => rest)).toEqual([
      {
        stream: 'audit',
        request_id: 'agent-run-42',
        event: 'token.issued',
        grant_type: 'client_credentials',
        client_id: 'agent-acme',
        sub: 'agent-acme',
        org: 'org_acme',
        actor: 'agent',
        scopes: expect.any(Array),
        jti: expect.stringMatching(/^[\w-]{22}$/),
      },
      {
        stream: 'audit',
        request_id: 'agent-run-42',
        event: 'token.refused',
        grant_type: 'client_credentials',
        client_id: 'agent-acme',
        actor: 'agent',
        error: 'invalid_client',
        reason: 'the identity provider refused the client credentials',
      },
    ])
  })

  it('records a refused MCP call without the token', async () => {
    const forged = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    secrets.push(forged)
    const res = await fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${forged}`, 'content-type': 'application/json' },
      body: '{}',
    })
    expect(res.status).toBe(401)
    const [denied] = await eventsWhere((l) => l.event === 'mcp.denied', 1)
    expect(denied).toMatchObject({ event: 'mcp.denied', error: 'invalid_token', stream: 'audit' })
    expect(denied?.reason).toEqual(expect.any(String))
  })

  it('never contains a token, code, verifier or secret', () => {
    const text = readFileSync(file, 'utf8')
    expect(secrets.length).toBeGreaterThan(8)
    for (const secret of secrets) expect(text).not.toContain(secret)
    // Nor any JWT at all.
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\.[\w-]+/)
  })
})

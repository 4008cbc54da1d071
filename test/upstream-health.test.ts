/**
 * A misconfigured or unreachable upstream named where people look: one start-up log line with
 * the variable and the cause, `/readyz`, the doctor, and the page a user lands on. The proxy
 * keeps serving meanwhile and finds the upstream once it answers.
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { CHECK, formatReport, runDoctor } from '../src/cli/doctor.js'
import { loadConfig } from '../src/config.js'
import { type RunningServer, startServer } from '../src/server.js'
import { authorizationUrl, consentFields, pkce, registerClient } from './support/flow.js'
import { freePort } from './support/net.js'
import { PROXY_CLIENT } from './support/proxy.js'
import { startUpstream, type Upstream } from './support/upstream.js'
import { location, UserAgent } from './support/user-agent.js'

const CALLBACK = 'http://127.0.0.1:8765/callback'

interface LogLine {
  level: number
  msg: string
  [field: string]: unknown
}

const running: { close(): Promise<void> }[] = []

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((service) => service.close()))
})

/** The proxy with its upstream at `issuer` (Kinde variables), logging into `lines`. */
async function startProxyAt(
  issuer: string,
): Promise<{ server: RunningServer; url: string; lines: LogLine[] }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const lines: LogLine[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      done()
    },
  })
  const config = loadConfig({
    PUBLIC_URL: url,
    HOST: '127.0.0.1',
    PORT: String(port),
    KINDE_ISSUER_URL: issuer,
    KINDE_CLIENT_ID: PROXY_CLIENT.client_id,
    KINDE_CLIENT_SECRET: PROXY_CLIENT.client_secret,
    UPSTREAM_TIMEOUT_SECONDS: '2',
  })
  const server = await startServer(config, { logger: pino({ level: 'info' }, sink) })
  running.push(server)
  return { server, url, lines }
}

async function eventually<T>(read: () => Promise<T> | T, done: (value: T) => boolean): Promise<T> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const value = await read()
    if (done(value)) return value
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error('the condition never held')
}

const readyz = async (url: string) => {
  const response = await fetch(`${url}/readyz`)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

const upstreamErrors = (lines: LogLine[]) => lines.filter((line) => line.level >= 50)

describe('an upstream that cannot be reached', () => {
  it('is named in one log line with KINDE_ISSUER_URL and the cause; the proxy serves on and finds it later', async () => {
    const idpPort = await freePort() // nothing listens here yet
    const issuer = `http://127.0.0.1:${idpPort}`
    const proxy = await startProxyAt(issuer)

    const [line] = await eventually(
      () => upstreamErrors(proxy.lines),
      (errors) => errors.length > 0,
    )
    expect(line?.msg).toBe(
      `KINDE_ISSUER_URL ${issuer}/: the upstream's discovery document cannot be fetched: ECONNREFUSED 127.0.0.1:${idpPort}; still serving, retrying in 5s`,
    )
    expect(line).toMatchObject({ variable: 'KINDE_ISSUER_URL', misconfigured: false })

    // Serving: discovery of the proxy itself, and readiness (the store answers).
    const metadata = await fetch(`${proxy.url}/.well-known/oauth-authorization-server`)
    expect(metadata.status).toBe(200)
    expect(await readyz(proxy.url)).toEqual({
      status: 200,
      body: {
        status: 'ready',
        store: 'memory',
        upstream: `unreachable (ECONNREFUSED 127.0.0.1:${idpPort})`,
      },
    })

    const results = await runDoctor(`${proxy.url}/mcp`, { register: false })
    expect(results.find((result) => result.name === CHECK.upstream)).toEqual({
      name: CHECK.upstream,
      status: 'fail',
      detail: `unreachable (ECONNREFUSED 127.0.0.1:${idpPort})`,
    })
    expect(formatReport(results)).toContain(
      `✘ ${CHECK.upstream} — unreachable (ECONNREFUSED 127.0.0.1:${idpPort})`,
    )
    // Each failed probe is not logged again: the first line said it all.
    expect(upstreamErrors(proxy.lines)).toHaveLength(1)

    // The IdP comes up: the next probe finds it, without a restart.
    const idp: Upstream = await startUpstream({
      flavor: 'kinde',
      port: idpPort,
      client: { ...PROXY_CLIENT, redirect_uris: [`${proxy.url}/callback`] },
    })
    running.push(idp)
    const ready = await eventually(
      () => readyz(proxy.url),
      (answer) => answer.body.upstream === 'ok',
    )
    expect(ready).toEqual({
      status: 200,
      body: { status: 'ready', store: 'memory', upstream: 'ok' },
    })
    expect(proxy.lines.map((l) => l.msg)).toContain('upstream reachable again at KINDE_ISSUER_URL')
    const healthy = await runDoctor(`${proxy.url}/mcp`, { register: false })
    expect(healthy.find((result) => result.name === CHECK.upstream)?.status).toBe('pass')
  })

  it('with a discovery path that answers 404, calls the sign-in misconfigured instead of asking to try again', async () => {
    const idp = await startUpstream({
      flavor: 'kinde',
      // The proxy never reaches this provider's discovery, so no callback is ever used.
      client: { ...PROXY_CLIENT, redirect_uris: ['http://127.0.0.1:9/callback'] },
    })
    running.push(idp)
    const issuer = `${idp.url}/typo`
    const proxy = await startProxyAt(issuer)
    const discoveryUrl = `${issuer}/.well-known/openid-configuration`

    const [line] = await eventually(
      () => upstreamErrors(proxy.lines),
      (errors) => errors.length > 0,
    )
    expect(line?.msg).toBe(
      `KINDE_ISSUER_URL ${issuer}: the upstream's discovery document cannot be fetched: HTTP 404 from ${discoveryUrl} (check the setting); still serving, retrying in 5s`,
    )
    expect((await readyz(proxy.url)).body.upstream).toBe(
      `unreachable (HTTP 404 from ${discoveryUrl})`,
    )

    const { client_id } = await registerClient(proxy.url, {
      client_name: 'Misconfigured',
      redirect_uris: [CALLBACK],
      token_endpoint_auth_method: 'none',
    })
    const agent = new UserAgent()
    const page = await agent.fetch(
      authorizationUrl(proxy.url, {
        response_type: 'code',
        client_id,
        redirect_uri: CALLBACK,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
        state: 'misconfigured',
      }),
    )
    const { requestId, csrfToken } = consentFields(await page.text())
    const answer = await agent.fetch(`${proxy.url}/authorize/consent`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: proxy.url },
      body: new URLSearchParams({
        request_id: requestId,
        csrf_token: csrfToken,
        decision: 'allow',
      }),
    })
    expect(Object.fromEntries(location(answer).searchParams)).toEqual({
      error: 'server_error',
      error_description:
        'the sign-in service is misconfigured: it cannot reach its identity provider; tell the administrator of this server',
      state: 'misconfigured',
      iss: proxy.url,
    })
  })
})

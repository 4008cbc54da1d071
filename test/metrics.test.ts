import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formPost } from './support/flow.js'
import { type ProxyUnderTest, startProxy } from './support/proxy.js'
import { type RedisServer, startRedisServer } from './support/redis-server.js'

const AGENT = {
  client_id: 'agent-metrics',
  client_secret: 'agent-metrics-secret',
  org_code: 'org_m',
}
const METRICS_TOKEN = 'metrics-token-0123456789'

/** The value of one sample in Prometheus text format, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const labelText = line.slice(name.length).split('}')[0] ?? ''
    if (wanted.every((w) => labelText.includes(w))) return Number(line.split(' ').at(-1))
  }
  return 0
}

describe('GET /metrics', () => {
  let proxy: ProxyUnderTest
  let redis: RedisServer
  const scrape = async () => {
    const res = await fetch(`${proxy.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    return res.text()
  }

  beforeAll(async () => {
    redis = await startRedisServer()
    proxy = await startProxy({
      flavor: 'kinde',
      env: { METRICS_TOKEN, REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'metrics:' },
      upstream: { m2mClients: [AGENT] },
    })
  })
  afterAll(async () => {
    await proxy.close()
    await redis.stop()
  })

  it('refuses a scrape without the metrics token', async () => {
    expect((await fetch(`${proxy.url}/metrics`)).status).toBe(401)
    const wrong = await fetch(`${proxy.url}/metrics`, {
      headers: { authorization: 'Bearer wrong-token-000000000' },
    })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="metrics"')
  })

  it('counts requests by route pattern, tokens by grant type and upstream calls', async () => {
    const before = await scrape()
    const token = await formPost(proxy.url, { grant_type: 'client_credentials', ...AGENT })
    expect(token.status).toBe(200)
    await fetch(`${proxy.url}/no/such/path/${Math.random()}`)
    const after = await scrape()

    const delta = (name: string, labels: Record<string, string>) =>
      sample(after, name, labels) - sample(before, name, labels)
    expect(
      delta('mcp_oauth_proxy_tokens_issued_total', {
        grant_type: 'client_credentials',
        actor: 'agent',
      }),
    ).toBe(1)
    expect(
      delta('mcp_oauth_proxy_http_requests_total', {
        route: '/token',
        method: 'POST',
        status: '200',
      }),
    ).toBe(1)
    expect(
      delta('mcp_oauth_proxy_http_request_duration_seconds_count', {
        route: '/token',
        method: 'POST',
      }),
    ).toBe(1)
    expect(
      delta('mcp_oauth_proxy_upstream_request_duration_seconds_count', {
        operation: 'client_credentials',
        outcome: 'ok',
      }),
    ).toBe(1)
    // Unknown paths share one label value: random paths cannot explode the series.
    expect(
      delta('mcp_oauth_proxy_http_requests_total', {
        route: 'unmatched',
        method: 'GET',
        status: '404',
      }),
    ).toBe(1)
    expect(after).not.toContain('/no/such/path')
    expect(after).toContain('mcp_oauth_proxy_process_resident_memory_bytes')
  })

  it('counts a failed upstream call and store errors while Redis is down', async () => {
    const before = await scrape()
    const refused = await formPost(proxy.url, {
      grant_type: 'client_credentials',
      client_id: AGENT.client_id,
      client_secret: 'wrong',
    })
    expect(refused.status).toBe(401)
    await redis.stop()
    try {
      const registered = await fetch(`${proxy.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          redirect_uris: ['http://127.0.0.1:1/cb'],
          token_endpoint_auth_method: 'none',
        }),
      })
      expect(registered.status).toBe(503)
      const after = await scrape()
      const delta = (name: string, labels: Record<string, string>) =>
        sample(after, name, labels) - sample(before, name, labels)
      expect(
        delta('mcp_oauth_proxy_upstream_errors_total', {
          operation: 'client_credentials',
          kind: 'rejected',
        }),
      ).toBe(1)
      expect(
        delta('mcp_oauth_proxy_store_errors_total', { operation: 'increment' }),
      ).toBeGreaterThanOrEqual(1)
      expect(
        delta('mcp_oauth_proxy_http_requests_total', {
          route: '/register',
          method: 'POST',
          status: '503',
        }),
      ).toBe(1)
    } finally {
      await redis.start()
    }
  })
})

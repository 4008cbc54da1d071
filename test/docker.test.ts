import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadConfig } from '../src/config.js'

// No Docker engine runs on these machines: the files are checked by parsing them.
const root = new URL('..', import.meta.url)
const read = (name: string) => readFileSync(new URL(name, root), 'utf8')

interface Stage {
  name: string
  from: string
  instructions: { op: string; args: string }[]
}

/** The Dockerfile as stages of instructions (continuation lines joined, comments dropped). */
function stages(dockerfile: string): Stage[] {
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
  const result: Stage[] = []
  for (const line of lines) {
    const [op = '', ...rest] = line.split(/\s+/)
    const args = rest.join(' ')
    if (op.toUpperCase() === 'FROM') {
      const match = args.match(/^(\S+)(?:\s+AS\s+(\S+))?$/i)
      result.push({
        from: match?.[1] ?? '',
        name: match?.[2] ?? String(result.length),
        instructions: [],
      })
    } else {
      result.at(-1)?.instructions.push({ op: op.toUpperCase(), args })
    }
  }
  return result
}

describe('Dockerfile', () => {
  const all = stages(read('Dockerfile'))
  const runtime = all.at(-1) as Stage
  const ops = (stage: Stage, op: string) =>
    stage.instructions.filter((i) => i.op === op).map((i) => i.args)

  it('builds in stages on Node 24 and ships a separate runtime stage', () => {
    expect(all.map((s) => s.name)).toEqual(['build', 'deps', 'runtime'])
    for (const stage of all) expect(stage.from).toMatch(/^node:24(-|$)/)
  })

  it('runs as the unprivileged node user', () => {
    expect(ops(runtime, 'USER')).toEqual(['node'])
  })

  it('has no dev dependencies and no sources in the runtime image', () => {
    const deps = all.find((s) => s.name === 'deps') as Stage
    expect(ops(deps, 'RUN').join(' ')).toMatch(/npm ci --omit=dev/)
    const copies = ops(runtime, 'COPY')
    expect(copies).toContainEqual(expect.stringMatching(/--from=deps .*\/app\/node_modules/))
    expect(copies).toContainEqual(expect.stringMatching(/--from=build .*\/app\/dist/))
    expect(copies.join(' ')).not.toMatch(/\bsrc\b|\btest\b/)
    expect(ops(runtime, 'RUN')).toEqual([])
  })

  it('checks its health on /healthz and starts the compiled server', () => {
    expect(ops(runtime, 'HEALTHCHECK').join(' ')).toMatch(/\/healthz/)
    expect(ops(runtime, 'CMD')).toEqual(['["node", "dist/server.js"]'])
    expect(ops(runtime, 'ENV').join(' ')).toMatch(/NODE_ENV=production/)
  })

  it('keeps secrets and local state out of the build context', () => {
    const ignored = read('.dockerignore').split('\n')
    for (const entry of ['.env', 'node_modules', '.git']) expect(ignored).toContain(entry)
  })
})

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as {
    services: Record<string, Record<string, unknown>>
    volumes: Record<string, unknown>
  }

  it('runs the proxy against Redis, reading .env', () => {
    const proxy = compose.services.proxy as Record<string, unknown>
    expect(proxy.build).toBe('.')
    expect(proxy.env_file).toBe('.env')
    expect(proxy.environment).toMatchObject({ REDIS_URL: 'redis://redis:6379' })
    expect(proxy.depends_on).toEqual({ redis: { condition: 'service_healthy' } })
  })

  it('shows a forward-mode backend on the compose network, started only with its profile', () => {
    const backend = compose.services.backend as Record<string, unknown>
    expect(backend.profiles).toEqual(['forward'])
    expect(backend.expose).toEqual(['8080'])
    expect(backend).not.toHaveProperty('ports')
    // The URL the comment gives is one the configuration accepts with the switch it names.
    const text = read('docker-compose.yml')
    const env = Object.fromEntries(
      [...text.matchAll(/^\s*#\s+(MCP_UPSTREAM_\w+)=(\S+)/gm)].map((m) => [m[1], m[2]]),
    )
    expect(env).toEqual({
      MCP_UPSTREAM_URL: 'http://backend:8080/mcp',
      MCP_UPSTREAM_ALLOW_HTTP: 'true',
    })
    const config = loadConfig({
      PUBLIC_URL: 'https://mcp.example.com',
      KINDE_ISSUER_URL: 'acme.kinde.com',
      KINDE_CLIENT_ID: 'id',
      KINDE_CLIENT_SECRET: 'secret',
      ...env,
    })
    expect(config.mcpUpstreamUrl?.href).toBe('http://backend:8080/mcp')
  })

  it('persists Redis append-only on a named volume', () => {
    const redis = compose.services.redis as Record<string, unknown>
    expect(redis.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']))
    expect(redis.volumes).toEqual(['redis-data:/data'])
    expect(compose.volumes).toHaveProperty('redis-data')
    expect((redis.healthcheck as { test: string[] }).test).toContain('ping')
  })

  describe('the sentinel profile', () => {
    const service = (name: string) => compose.services[name] as Record<string, unknown>
    const sentinelSet = ['redis-master', 'redis-replica', 'sentinel-1', 'sentinel-2', 'sentinel-3']

    it('is optional: a plain `docker compose up` starts only the proxy and its Redis', () => {
      for (const name of ['proxy', 'redis']) expect(service(name).profiles).toBeUndefined()
      for (const name of ['proxy-sentinel', ...sentinelSet]) {
        expect(service(name).profiles, name).toEqual(['sentinel'])
      }
      expect(service('proxy-sentinel').ports).not.toEqual(service('proxy').ports)
    })

    it('points the proxy at the three sentinels, overriding a REDIS_URL from .env', () => {
      const proxy = service('proxy-sentinel')
      const environment = proxy.environment as Record<string, string>
      const config = loadConfig({
        PUBLIC_URL: 'https://mcp.example.com',
        KINDE_ISSUER_URL: 'https://acme.kinde.com',
        KINDE_CLIENT_ID: 'id',
        KINDE_CLIENT_SECRET: 'secret',
        REDIS_URL: 'redis://from-dotenv:6379',
        ...environment,
      })
      expect(config.redis).toMatchObject({
        sentinels: ['sentinel-1', 'sentinel-2', 'sentinel-3'].map((host) => ({
          host,
          port: 26379,
        })),
        sentinelMaster: 'mymaster',
        waitReplicas: 1,
      })
      expect(Object.keys(proxy.depends_on as object).sort()).toEqual(
        ['redis-master', 'sentinel-1', 'sentinel-2', 'sentinel-3'].sort(),
      )
    })

    it('runs a persistent master, its replica and three sentinels with a quorum of two', () => {
      expect(service('redis-replica').command).toEqual(
        expect.arrayContaining(['--replicaof', 'redis-master', '6379', '--appendonly', 'yes']),
      )
      expect(service('redis-master').command).toEqual(
        expect.arrayContaining(['--appendonly', 'yes']),
      )
      for (const name of ['sentinel-1', 'sentinel-2', 'sentinel-3']) {
        const script = (service(name).command as string[]).join(' ')
        expect(script).toContain("'sentinel monitor mymaster redis-master 6379 2'")
        expect(script).toContain('--sentinel')
        expect((service(name).healthcheck as { test: string[] }).test).toContain('26379')
      }
      for (const volume of ['redis-master-data', 'redis-replica-data']) {
        expect(compose.volumes).toHaveProperty(volume)
      }
    })
  })
})

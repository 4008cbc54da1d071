import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { CONFIG_VARIABLES, loadConfig } from '../src/config.js'
import { problemsOf } from './support/config.js'

const KINDE = {
  PUBLIC_URL: 'https://mcp.example.com',
  KINDE_ISSUER_URL: 'https://acme.kinde.com',
  KINDE_CLIENT_ID: 'id',
  KINDE_CLIENT_SECRET: 'secret',
}
const AUTH0 = {
  PUBLIC_URL: 'https://mcp.example.com',
  AUTH0_DOMAIN: 'acme.eu.auth0.com',
  AUTH0_CLIENT_ID: 'id',
  AUTH0_CLIENT_SECRET: 'secret',
  AUTH0_AUDIENCE: 'https://api.acme.com',
}

describe('loadConfig', () => {
  it('derives issuer and MCP resource from PUBLIC_URL and applies defaults', () => {
    const config = loadConfig({ ...KINDE, PUBLIC_URL: 'https://mcp.example.com/' })
    expect(config.issuer).toBe('https://mcp.example.com')
    expect(config.resource).toBe('https://mcp.example.com/mcp')
    expect(config.port).toBe(3000)
    expect(config.redisUrl).toBeUndefined()
    expect(config.scopes).toEqual(['openid', 'profile', 'email'])
    expect(config.registerRateLimit).toBe(120)
    expect(config.tokenRateLimit).toBe(300)
    expect(config.clientIdleTtlSeconds).toBe(90 * 86_400)
    expect(config.authCodeTtlSeconds).toBe(60)
    expect(config.refreshGraceSeconds).toBe(60)
    expect(config.upstreamTimeoutSeconds).toBe(10)
    expect(config.mcpSessions).toBe('stateful')
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('picks the Kinde upstream and drops a trailing slash from its issuer', () => {
    const config = loadConfig({
      ...KINDE,
      KINDE_ISSUER_URL: 'https://acme.kinde.com/',
      KINDE_AUDIENCE: 'api',
    })
    expect(config.upstream).toMatchObject({
      kind: 'kinde',
      clientId: 'id',
      clientSecret: 'secret',
      audience: 'api',
    })
    expect(config.upstream.issuer.href).toBe('https://acme.kinde.com/')
    expect(config.upstream.issuer.origin).toBe('https://acme.kinde.com')
  })

  it('accepts AUTH0_DOMAIN as a bare domain, assuming https and Auth0’s trailing slash', () => {
    expect(loadConfig(AUTH0).upstream.issuer.href).toBe('https://acme.eu.auth0.com/')
  })

  it('accepts AUTH0_DOMAIN as a full URL', () => {
    const config = loadConfig({ ...AUTH0, AUTH0_DOMAIN: 'https://login.acme.com' })
    expect(config.upstream.issuer.href).toBe('https://login.acme.com/')
  })

  it('allows plain http only for loopback hosts', () => {
    expect(
      loadConfig({ ...KINDE, KINDE_ISSUER_URL: 'http://127.0.0.1:4000' }).upstream.issuer.host,
    ).toBe('127.0.0.1:4000')
    expect(loadConfig({ ...KINDE, PUBLIC_URL: 'http://localhost:3000' }).issuer).toBe(
      'http://localhost:3000',
    )
    expect(problemsOf({ ...KINDE, KINDE_ISSUER_URL: 'http://acme.kinde.com' })).toEqual([
      'KINDE_ISSUER_URL: must be an https URL (plain http only on loopback)',
    ])
    expect(problemsOf({ ...AUTH0, AUTH0_DOMAIN: 'http://acme.auth0.com' })).toEqual([
      'AUTH0_DOMAIN: must be an https URL (plain http only on loopback)',
    ])
    expect(problemsOf({ ...KINDE, PUBLIC_URL: 'http://mcp.example.com' })).toEqual([
      'PUBLIC_URL: must be an https URL (plain http only on loopback)',
    ])
  })

  it('lists every bad variable, one line each', () => {
    expect(
      problemsOf({
        ...KINDE,
        PUBLIC_URL: 'not a url',
        PORT: 'eighty',
        REGISTER_RATE_LIMIT: '-1',
        CONSENT: 'maybe',
        TRUST_PROXY: 'perhaps',
      }),
    ).toEqual([
      'PUBLIC_URL: "not a url" is not a URL',
      'PORT: must be a port number',
      'CONSENT: must be one of prompt, skip',
      'REGISTER_RATE_LIMIT: must be 0 or more',
      'TRUST_PROXY: must be true or false',
    ])
  })

  it('requires PUBLIC_URL', () => {
    const { PUBLIC_URL: _omitted, ...env } = KINDE
    expect(problemsOf(env)).toEqual(['PUBLIC_URL: is required'])
  })

  it('refuses a PUBLIC_URL with a path', () => {
    expect(problemsOf({ ...KINDE, PUBLIC_URL: 'https://example.com/mcp' })).toEqual([
      'PUBLIC_URL: must be an origin without a path or query, e.g. https://mcp.example.com',
    ])
  })

  it('asks for an upstream when none is configured', () => {
    expect(problemsOf({ PUBLIC_URL: 'https://mcp.example.com' })).toEqual([
      'UPSTREAM: no upstream configured; set KINDE_ISSUER_URL, AUTH0_DOMAIN or OIDC_ISSUER_URL with its client id and secret',
    ])
  })

  it('asks UPSTREAM to choose when several are configured, and honours the choice', () => {
    expect(problemsOf({ ...KINDE, ...AUTH0 })).toEqual([
      'UPSTREAM: several upstreams are configured (kinde, auth0); set UPSTREAM to pick one',
    ])
    expect(loadConfig({ ...KINDE, ...AUTH0, UPSTREAM: 'auth0' }).upstream.kind).toBe('auth0')
  })

  it('names each missing variable of the chosen upstream', () => {
    expect(
      problemsOf({
        PUBLIC_URL: 'https://mcp.example.com',
        KINDE_ISSUER_URL: 'https://a.kinde.com',
      }),
    ).toEqual([
      'KINDE_CLIENT_ID: is required when UPSTREAM is kinde',
      'KINDE_CLIENT_SECRET: is required when UPSTREAM is kinde',
    ])
  })

  it('refuses Auth0 without an API audience, saying why', () => {
    const { AUTH0_AUDIENCE: _omitted, ...env } = AUTH0
    expect(problemsOf(env)).toEqual([
      'AUTH0_AUDIENCE: is required; without an API audience Auth0 issues opaque tokens that only its /userinfo accepts',
    ])
  })

  it('accepts a generic OIDC provider without a client secret', () => {
    const config = loadConfig({
      PUBLIC_URL: 'https://mcp.example.com',
      OIDC_ISSUER_URL: 'https://id.example.com/realms/main',
      OIDC_CLIENT_ID: 'mcp',
    })
    expect(config.upstream).toMatchObject({ kind: 'oidc', clientSecret: undefined })
    expect(config.upstream.issuer.href).toBe('https://id.example.com/realms/main')
  })

  it('reads booleans as words, never truthy strings', () => {
    expect(loadConfig({ ...KINDE, TRUST_PROXY: 'false' }).trustProxy).toBe(false)
    expect(loadConfig({ ...KINDE, TRUST_PROXY: 'true' }).trustProxy).toBe(true)
    expect(
      loadConfig({ ...KINDE, CLIENT_ID_METADATA_DOCUMENTS: 'false' }).clientIdMetadataDocuments,
    ).toBe(false)
  })

  it('treats empty variables as unset', () => {
    expect(loadConfig({ ...KINDE, REDIS_URL: '', PORT: '' }).port).toBe(3000)
  })

  it('never advertises offline_access as a resource scope', () => {
    expect(loadConfig({ ...KINDE, SCOPES: 'openid offline_access tools:read' }).scopes).toEqual([
      'openid',
      'tools:read',
    ])
  })

  it('parses lists separated by commas or spaces', () => {
    const config = loadConfig({
      ...KINDE,
      ALLOWED_EMAIL_DOMAINS: 'Acme.com, example.org',
      ALLOWED_ORG_CODES: 'org_1 org_2',
    })
    expect(config.allowedEmailDomains).toEqual(['acme.com', 'example.org'])
    expect(config.allowedOrgCodes).toEqual(['org_1', 'org_2'])
  })

  it('reads OPEN_SCOPES and SCOPE_PERMISSIONS, a scope mapped to several permissions', () => {
    const config = loadConfig({
      ...KINDE,
      SCOPES: 'openid reports:read reports:admin tools:basic',
      OPEN_SCOPES: 'tools:basic',
      SCOPE_PERMISSIONS:
        'reports:admin=admin:reports, reports:admin=org:owner reports:read=read:reports,reports:admin=admin:reports',
    })
    expect(config.openScopes).toEqual(['tools:basic'])
    expect(Object.fromEntries(config.scopePermissions)).toEqual({
      'reports:admin': ['admin:reports', 'org:owner'],
      'reports:read': ['read:reports'],
    })
    const defaults = loadConfig(KINDE)
    expect(defaults.openScopes).toEqual([])
    expect(defaults.scopePermissions.size).toBe(0)
  })

  it.each([
    [
      'an OPEN_SCOPES entry SCOPES does not offer',
      { OPEN_SCOPES: 'reports:admin' },
      'OPEN_SCOPES: reports:admin is not one of SCOPES',
    ],
    [
      'an OPEN_SCOPES entry that is no scope token',
      { OPEN_SCOPES: 'tools"basic' },
      'OPEN_SCOPES: "tools\\"basic" is not a scope name',
    ],
    [
      'a SCOPE_PERMISSIONS entry without a permission',
      { SCOPE_PERMISSIONS: 'tools:basic=' },
      'SCOPE_PERMISSIONS: "tools:basic=" is not scope=permission (e.g. reports:admin=admin:reports)',
    ],
    [
      'a SCOPE_PERMISSIONS entry without a scope',
      { SCOPE_PERMISSIONS: '=admin:reports' },
      'SCOPE_PERMISSIONS: "=admin:reports" is not scope=permission (e.g. reports:admin=admin:reports)',
    ],
    [
      'a SCOPE_PERMISSIONS entry without an equals sign',
      { SCOPE_PERMISSIONS: 'tools:basic' },
      'SCOPE_PERMISSIONS: "tools:basic" is not scope=permission (e.g. reports:admin=admin:reports)',
    ],
    [
      'a SCOPE_PERMISSIONS entry with two equals signs',
      { SCOPE_PERMISSIONS: 'tools:basic=a=b' },
      'SCOPE_PERMISSIONS: "tools:basic=a=b" is not scope=permission (e.g. reports:admin=admin:reports)',
    ],
    [
      'a SCOPE_PERMISSIONS permission with a control character',
      { SCOPE_PERMISSIONS: 'tools:basic=adm\u0007in' },
      'SCOPE_PERMISSIONS: "tools:basic=adm\\u0007in" is not scope=permission (e.g. reports:admin=admin:reports)',
    ],
    [
      'a SCOPE_PERMISSIONS scope SCOPES does not offer',
      { SCOPE_PERMISSIONS: 'reports:admin=admin:reports' },
      'SCOPE_PERMISSIONS: reports:admin is not one of SCOPES',
    ],
    [
      'a SCOPE_PERMISSIONS mapping of an OpenID Connect scope',
      { SCOPE_PERMISSIONS: 'email=read:email' },
      'SCOPE_PERMISSIONS: email is granted to every user (OpenID Connect or OPEN_SCOPES); a permission for it would never be asked',
    ],
    [
      'a SCOPE_PERMISSIONS mapping of an open scope',
      { OPEN_SCOPES: 'tools:basic', SCOPE_PERMISSIONS: 'tools:basic=admin' },
      'SCOPE_PERMISSIONS: tools:basic is granted to every user (OpenID Connect or OPEN_SCOPES); a permission for it would never be asked',
    ],
    [
      'a SCOPE_PERMISSIONS key that names an Object.prototype member',
      { SCOPE_PERMISSIONS: '__proto__=admin constructor=admin' },
      'SCOPE_PERMISSIONS: __proto__ is not one of SCOPES',
    ],
  ])('refuses %s, naming it', (_case, env, problem) => {
    expect(problemsOf({ ...KINDE, SCOPES: 'openid email tools:basic', ...env })).toContain(problem)
  })

  it('reads static clients from JSON and checks their redirect URIs', () => {
    const config = loadConfig({
      ...KINDE,
      STATIC_CLIENTS: JSON.stringify([
        {
          client_id: 'first-party',
          client_secret: 's',
          redirect_uris: ['https://app.example.com/cb'],
        },
      ]),
    })
    expect(config.staticClients).toEqual([
      {
        clientId: 'first-party',
        clientSecret: 's',
        clientName: 'first-party',
        redirectUris: ['https://app.example.com/cb'],
        grantTypes: ['authorization_code', 'refresh_token'],
      },
    ])
    expect(problemsOf({ ...KINDE, STATIC_CLIENTS: '{' })).toEqual([
      'STATIC_CLIENTS: must be a JSON array of client objects',
    ])
    expect(
      problemsOf({
        ...KINDE,
        STATIC_CLIENTS: JSON.stringify([
          { client_id: 'x', redirect_uris: ['http://evil.example/cb'] },
        ]),
      }),
    ).toEqual([
      'STATIC_CLIENTS: 0.redirect_uris: http://evil.example/cb: must use https (plain http only on loopback)',
    ])
  })

  it('names every problem of one environment in one pass, across stages', () => {
    // Bad values, a missing PUBLIC_URL, a missing secret of the chosen upstream and a key
    // without its pair: all of them at once, not one per start.
    expect(
      problemsOf({
        KINDE_ISSUER_URL: 'acme.kinde.com',
        KINDE_CLIENT_ID: 'id',
        PORT: 'eighty',
        SIGNING_KEY: 'pem',
      }),
    ).toEqual([
      'PUBLIC_URL: is required',
      'PORT: must be a port number',
      'KINDE_CLIENT_SECRET: is required when UPSTREAM is kinde',
      'ENCRYPTION_KEY: is required when SIGNING_KEY is set (give both, or neither to generate them)',
    ])
    expect(
      problemsOf({
        ...KINDE,
        PUBLIC_URL: 'https://mcp.example.com/mcp',
        KINDE_CLIENT_SECRET: '',
        OPEN_SCOPES: 'reports:read',
      }),
    ).toEqual([
      'PUBLIC_URL: must be an origin without a path or query, e.g. https://mcp.example.com',
      'KINDE_CLIENT_SECRET: is required when UPSTREAM is kinde',
      'OPEN_SCOPES: reports:read is not one of SCOPES',
    ])
  })

  it('does not call a bad upstream variable missing as well', () => {
    expect(
      problemsOf({ ...KINDE, KINDE_ISSUER_URL: 'http://acme.kinde.com', KINDE_CLIENT_ID: '' }),
    ).toEqual([
      'KINDE_ISSUER_URL: must be an https URL (plain http only on loopback)',
      'KINDE_CLIENT_ID: is required when UPSTREAM is kinde',
    ])
    expect(problemsOf({ ...KINDE, ...AUTH0, UPSTREAM: 'okta' })).toEqual([
      'UPSTREAM: must be one of kinde, auth0, oidc',
    ])
  })

  it('accepts a bare Kinde domain as AUTH0_DOMAIN does, assuming https', () => {
    const config = loadConfig({ ...KINDE, KINDE_ISSUER_URL: 'acme.kinde.com' })
    expect(config.upstream.issuer.href).toBe('https://acme.kinde.com/')
    expect(config.upstream.issuer.origin).toBe('https://acme.kinde.com')
  })

  it('names the provider on the consent page as UPSTREAM_NAME says', () => {
    expect(loadConfig(KINDE).upstream.displayName).toBeUndefined()
    expect(loadConfig({ ...KINDE, UPSTREAM_NAME: 'Acme SSO' }).upstream.displayName).toBe(
      'Acme SSO',
    )
  })

  it('wants SIGNING_KEY and ENCRYPTION_KEY both or neither', () => {
    expect(problemsOf({ ...KINDE, ENCRYPTION_KEY: 'k' })).toEqual([
      'SIGNING_KEY: is required when ENCRYPTION_KEY is set (give both, or neither to generate them)',
    ])
  })

  describe('forward mode over plain http', () => {
    const https = 'https://backend.example.com/mcp'
    const http = 'http://backend:8080/mcp'

    it('forwards over https anywhere and over plain http on loopback', () => {
      expect(loadConfig({ ...KINDE, MCP_UPSTREAM_URL: https }).mcpUpstreamUrl?.href).toBe(https)
      const loopback = 'http://127.0.0.1:8080/mcp'
      expect(loadConfig({ ...KINDE, MCP_UPSTREAM_URL: loopback }).mcpUpstreamUrl?.href).toBe(
        loopback,
      )
    })

    it('refuses plain http to another host, saying how to allow it', () => {
      for (const url of [http, 'http://10.0.0.5/mcp', 'http://backend.internal/mcp']) {
        expect(problemsOf({ ...KINDE, MCP_UPSTREAM_URL: url })).toEqual([
          'MCP_UPSTREAM_URL: must be an https URL (plain http only on loopback, or set MCP_UPSTREAM_ALLOW_HTTP=true for a backend on a private network)',
        ])
      }
      expect(
        problemsOf({ ...KINDE, MCP_UPSTREAM_URL: http, MCP_UPSTREAM_ALLOW_HTTP: 'false' }),
      ).toHaveLength(1)
    })

    it('forwards over plain http to any host with MCP_UPSTREAM_ALLOW_HTTP=true', () => {
      for (const url of [http, 'http://10.0.0.5/mcp', 'http://backend.internal/mcp']) {
        const config = loadConfig({
          ...KINDE,
          MCP_UPSTREAM_URL: url,
          MCP_UPSTREAM_ALLOW_HTTP: 'true',
        })
        expect(config.mcpUpstreamUrl?.href).toBe(url)
      }
    })

    it('still refuses what is not an http(s) URL, and a bad switch', () => {
      expect(
        problemsOf({
          ...KINDE,
          MCP_UPSTREAM_URL: 'ftp://backend/mcp',
          MCP_UPSTREAM_ALLOW_HTTP: 'true',
        }),
      ).toEqual(['MCP_UPSTREAM_URL: must be an https URL (plain http only on loopback)'])
      expect(
        problemsOf({ ...KINDE, MCP_UPSTREAM_URL: http, MCP_UPSTREAM_ALLOW_HTTP: 'yes please' }),
      ).toEqual(['MCP_UPSTREAM_ALLOW_HTTP: must be true or false'])
    })
  })

  it('reads a static private_key_jwt client’s public keys, never with a secret or a private key', () => {
    const key = { kty: 'EC', crv: 'P-256', x: 'eA', y: 'eQ', kid: 'k1' }
    const client = { client_id: 'agentic', redirect_uris: ['https://app.example.com/cb'] }
    const config = loadConfig({
      ...KINDE,
      STATIC_CLIENTS: JSON.stringify([{ ...client, jwks: { keys: [key] } }]),
    })
    expect(config.staticClients[0]?.jwks).toEqual({ keys: [key] })
    expect(
      problemsOf({
        ...KINDE,
        STATIC_CLIENTS: JSON.stringify([{ ...client, client_secret: 's', jwks: { keys: [key] } }]),
      }),
    ).toEqual([
      'STATIC_CLIENTS: 0: client_secret and jwks are two authentication methods; keep one',
    ])
    expect(
      problemsOf({
        ...KINDE,
        STATIC_CLIENTS: JSON.stringify([{ ...client, jwks: { keys: [{ ...key, d: 'secret' }] } }]),
      }),
    ).toEqual(['STATIC_CLIENTS: 0.jwks.keys.0: must hold public keys only (no private members)'])
  })

  it('accepts redis and rediss URLs only', () => {
    expect(loadConfig({ ...KINDE, REDIS_URL: 'rediss://cache.example.com:6380' }).redisUrl).toBe(
      'rediss://cache.example.com:6380',
    )
    expect(problemsOf({ ...KINDE, REDIS_URL: 'http://cache' })).toEqual([
      'REDIS_URL: must start with redis:// or rediss://',
    ])
  })

  it('reads a Sentinel set or a Cluster, with credentials and TLS for either', () => {
    const sentinel = loadConfig({
      ...KINDE,
      REDIS_SENTINELS: 's1:26380, s2,[::1]:26381',
      REDIS_SENTINEL_MASTER: 'mymaster',
      REDIS_USERNAME: 'proxy',
      REDIS_PASSWORD: 'pw',
      REDIS_TLS: 'true',
    }).redis
    expect(sentinel).toEqual({
      sentinels: [
        { host: 's1', port: 26380 },
        { host: 's2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
      sentinelMaster: 'mymaster',
      username: 'proxy',
      password: 'pw',
      tls: true,
      keyPrefix: 'mcp-oauth-proxy:',
      commandTimeoutMs: 2000,
      waitReplicas: 1,
    })
    const cluster = loadConfig({ ...KINDE, REDIS_CLUSTER_NODES: 'r1:7000,r2' }).redis
    expect(cluster).toMatchObject({
      clusterNodes: [
        { host: 'r1', port: 7000 },
        { host: 'r2', port: 6379 },
      ],
      tls: false,
      waitReplicas: 1,
    })
    expect(loadConfig({ ...KINDE, REDIS_URL: 'redis://r:6379' }).redis).toMatchObject({
      url: 'redis://r:6379',
      waitReplicas: 0,
    })
    expect(
      loadConfig({ ...KINDE, REDIS_CLUSTER_NODES: 'r1', REDIS_WAIT_REPLICAS: '0' }).redis,
    ).toMatchObject({ waitReplicas: 0 })
    expect(loadConfig(KINDE).redis).toBeUndefined()
  })

  it('refuses two Redis topologies at once, naming both variables', () => {
    expect(
      problemsOf({ ...KINDE, REDIS_URL: 'redis://r', REDIS_CLUSTER_NODES: 'r1:7000' }),
    ).toEqual([
      'REDIS_URL, REDIS_CLUSTER_NODES: give one Redis topology (single node, Sentinel or Cluster), not 2',
    ])
    expect(
      problemsOf({
        ...KINDE,
        REDIS_SENTINELS: 's1',
        REDIS_SENTINEL_MASTER: 'm',
        REDIS_CLUSTER_NODES: 'r1',
      }),
    ).toEqual([
      'REDIS_SENTINELS, REDIS_CLUSTER_NODES: give one Redis topology (single node, Sentinel or Cluster), not 2',
    ])
  })

  it('needs the master name with sentinels, and host:port nodes', () => {
    expect(problemsOf({ ...KINDE, REDIS_SENTINELS: 's1:26379' })).toEqual([
      'REDIS_SENTINEL_MASTER: is required when REDIS_SENTINELS is set',
    ])
    expect(problemsOf({ ...KINDE, REDIS_SENTINEL_MASTER: 'm' })).toEqual([
      'REDIS_SENTINEL_MASTER: is only used with REDIS_SENTINELS',
    ])
    expect(problemsOf({ ...KINDE, REDIS_CLUSTER_NODES: 'r1:70000' })).toEqual([
      'REDIS_CLUSTER_NODES: "r1:70000" is not host:port',
    ])
    expect(problemsOf({ ...KINDE, REDIS_CLUSTER_NODES: 'redis://r1:7000' })).toEqual([
      'REDIS_CLUSTER_NODES: "redis://r1:7000" is not host:port',
    ])
  })

  it('refuses braces in REDIS_KEY_PREFIX, which would break Cluster hash tags', () => {
    expect(problemsOf({ ...KINDE, REDIS_KEY_PREFIX: 'app{1}:' })).toEqual([
      'REDIS_KEY_PREFIX: must not contain { or } (Redis Cluster reads them as a hash tag)',
    ])
  })
})

/** Runs a command in the repository with only `env` (and PATH, HOME) set. */
async function runWith(
  env: Record<string, string>,
  command: string,
  ...args: string[]
): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(command, args, {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      timeout: 60_000,
    })
    return { code: 0, output: stdout + stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` }
  }
}

describe('npm start with bad configuration', () => {
  it('lists every problem and exits 1 before building anything', async () => {
    const { code, output } = await runWith(
      { KINDE_ISSUER_URL: 'acme.kinde.com', KINDE_CLIENT_ID: 'id', PORT: 'eighty' },
      'npm',
      'start',
    )
    expect(code, output).toBe(1)
    expect(output).toContain(
      [
        'config error: PUBLIC_URL: is required',
        'config error: PORT: must be a port number',
        'config error: KINDE_CLIENT_SECRET: is required when UPSTREAM is kinde',
      ].join('\n'),
    )
    expect(output).not.toContain('tsc -p')
  })

  it('check-config says what it found when the configuration holds', async () => {
    const { code, output } = await runWith(
      { ...KINDE, KINDE_ISSUER_URL: 'acme.kinde.com' },
      process.execPath,
      '--import',
      'tsx',
      'src/cli/main.ts',
      'check-config',
    )
    expect(code, output).toBe(0)
    expect(output).toBe(
      'configuration ok: https://mcp.example.com, upstream kinde at https://acme.kinde.com/, memory store\n',
    )
  })
})

describe('.env.example', () => {
  it('documents every variable the configuration reads', () => {
    const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]))
    expect(CONFIG_VARIABLES.filter((name) => !documented.has(name))).toEqual([])
  })
})

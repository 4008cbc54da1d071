import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'

const ENTRY = ['--import', 'tsx', 'src/server.ts']

interface Proc {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
}

const running: ChildProcess[] = []
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
})

function start(env: Record<string, string>): Proc {
  // Only what the test gives: no inherited PUBLIC_URL, REDIS_URL or upstream variables.
  const child = spawn(process.execPath, ENTRY, {
    env: { PATH: process.env.PATH ?? '', ...env },
    cwd: new URL('..', import.meta.url).pathname,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.push(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString()
  })
  return { child, stdout: () => out, stderr: () => err }
}

async function listeningUrl(proc: Proc): Promise<string> {
  await expect.poll(() => proc.stdout().includes('"listening"'), { timeout: 20_000 }).toBe(true)
  const line =
    proc
      .stdout()
      .split('\n')
      .find((l) => l.includes('"listening"')) ?? ''
  return (JSON.parse(line) as { url: string }).url
}

describe('the server process', () => {
  it('serves discovery and registration with only PUBLIC_URL and one upstream configured', async () => {
    const proc = start({
      PUBLIC_URL: 'https://mcp.example.com',
      PORT: '0',
      HOST: '127.0.0.1',
      KINDE_ISSUER_URL: 'https://acme.kinde.com',
      KINDE_CLIENT_ID: 'id',
      KINDE_CLIENT_SECRET: 'secret',
    })
    const url = await listeningUrl(proc)
    const asm = (await (await fetch(`${url}/.well-known/oauth-authorization-server`)).json()) as {
      issuer: string
    }
    expect(asm.issuer).toBe('https://mcp.example.com')
    const prm = (await (await fetch(`${url}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      resource: string
    }
    expect(prm.resource).toBe('https://mcp.example.com/mcp')
    const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: unknown[] }
    expect(jwks.keys).toHaveLength(1)
    const registered = await fetch(`${url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: ['http://127.0.0.1:1234/cb'],
        token_endpoint_auth_method: 'none',
      }),
    })
    expect(registered.status).toBe(201)
    expect((await fetch(`${url}/readyz`)).status).toBe(200)
    expect(proc.stdout()).not.toContain('secret')
  })

  it('stops with one line per bad variable and a non-zero exit', async () => {
    const proc = start({
      PUBLIC_URL: 'http://mcp.example.com',
      KINDE_ISSUER_URL: 'https://a.kinde.com',
      PORT: 'x',
    })
    const [code] = await once(proc.child, 'exit')
    expect(code).toBe(1)
    // Bad values and what the chosen upstream lacks, in one pass.
    expect(proc.stderr().trim().split('\n')).toEqual([
      'config error: PUBLIC_URL: must be an https URL (plain http only on loopback)',
      'config error: PORT: must be a port number',
      'config error: KINDE_CLIENT_ID: is required when UPSTREAM is kinde',
      'config error: KINDE_CLIENT_SECRET: is required when UPSTREAM is kinde',
    ])
  })

  it('exits 1 naming the port when it is already in use', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const { port } = taken.address() as { port: number }
    try {
      const proc = start({
        PUBLIC_URL: 'http://localhost:3000',
        PORT: String(port),
        HOST: '127.0.0.1',
        OIDC_ISSUER_URL: 'http://127.0.0.1:9',
        OIDC_CLIENT_ID: 'id',
      })
      const [code] = await once(proc.child, 'exit')
      expect(code).toBe(1)
      expect(proc.stderr().trim()).toBe(`config error: PORT: 127.0.0.1:${port} is already in use`)
    } finally {
      taken.close()
    }
  })

  it('finishes an in-flight request on SIGTERM, then exits 0', async () => {
    const proc = start({
      PUBLIC_URL: 'http://localhost:3000',
      PORT: '0',
      HOST: '127.0.0.1',
      OIDC_ISSUER_URL: 'http://127.0.0.1:9',
      OIDC_CLIENT_ID: 'id',
    })
    const url = new URL(await listeningUrl(proc))
    // A registration whose body is still arriving when the signal lands.
    const body = JSON.stringify({
      redirect_uris: ['http://127.0.0.1:1234/cb'],
      token_endpoint_auth_method: 'none',
    })
    const response = new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: '/register',
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.write(body.slice(0, 10))
      req.on('socket', (socket) =>
        socket.on('connect', () => {
          setTimeout(() => {
            proc.child.kill('SIGTERM')
            setTimeout(() => req.end(body.slice(10)), 200)
          }, 100)
        }),
      )
    })
    expect(await response).toBe(201)
    const [code] = await once(proc.child, 'exit')
    expect(code).toBe(0)
    expect(proc.stdout()).toContain('"shutting down"')
  })
})

import { connect, type Socket } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { type RunningServer, startServer } from '../src/server.js'
import { BASE_ENV } from './support/app.js'

// The HTTP server under clients that misbehave at the socket level, driven with raw sockets.

interface Started {
  server: RunningServer
  port: number
  lines: Record<string, unknown>[]
}

let running: RunningServer | undefined
afterEach(async () => {
  await running?.close()
  running = undefined
})

async function start(env: Record<string, string> = {}): Promise<Started> {
  const lines: Record<string, unknown>[] = []
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  )
  const config = loadConfig({ ...BASE_ENV, HOST: '127.0.0.1', PORT: '0', ...env })
  const server = await startServer(config, { logger })
  running = server
  return { server, port: Number(new URL(server.url).port), lines }
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Everything the server sends until it closes the connection. */
function untilClosed(socket: Socket): Promise<string> {
  let received = ''
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1')
  })
  socket.on('error', () => {})
  return new Promise((resolve) => socket.once('close', () => resolve(received)))
}

/** A request whose body announces 1000 bytes and delivers a few. */
function partialRequest(path: string, type: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nContent-Length: 1000\r\n\r\nabc`
}

/**
 * Lines at warn or above, but for the start-up report on the upstream: BASE_ENV's issuer is
 * unreachable on purpose, and the proxy says so on its own.
 */
function problems(lines: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return lines.filter((l) => Number(l.level) >= 40 && l.variable !== 'KINDE_ISSUER_URL')
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20))
}

describe('a client that disconnects mid-body', () => {
  it('is logged at debug, never as an error with a stack trace', async () => {
    const { port, lines } = await start()
    const paths = [
      ['/token', 'application/x-www-form-urlencoded'],
      ['/revoke', 'application/x-www-form-urlencoded'],
      ['/register', 'application/json'],
      ['/authorize/consent', 'application/x-www-form-urlencoded'],
    ] as const
    for (const [path, type] of paths) {
      const socket = await open(port)
      // `100 Continue` says the server has the request and waits for its body: send a little
      // of it, then vanish.
      const headersRead = new Promise((resolve) => socket.once('data', resolve))
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
      )
      await headersRead
      socket.write('abc')
      await new Promise((resolve) => socket.write('', resolve))
      socket.destroy()
      await waitFor(() =>
        lines.some((l) => l.msg === 'client abandoned the request' && l.path === path),
      )
    }
    const abandoned = lines.filter((l) => l.msg === 'client abandoned the request')
    expect(abandoned.map((l) => [l.level, l.path])).toEqual(paths.map(([path]) => [20, path]))
    expect(problems(lines)).toEqual([])
    expect(JSON.stringify(lines.filter((l) => l.path !== undefined))).not.toContain('stack')
  })
})

describe('a body that stops arriving', () => {
  it('has its connection cut after REQUEST_TIMEOUT_MS with 408', async () => {
    const { port, lines } = await start({ REQUEST_TIMEOUT_MS: '300' })
    const socket = await open(port)
    const closed = untilClosed(socket)
    socket.write(partialRequest('/token', 'application/x-www-form-urlencoded'))
    const received = await closed
    expect(received).toMatch(/^HTTP\/1\.1 408 /)
    expect(problems(lines)).toEqual([])
  })

  it('keeps the default of 30 s rather than Node’s five minutes', () => {
    const config = loadConfig(BASE_ENV)
    expect(config.requestTimeoutMs).toBe(30_000)
    expect(config.maxConnections).toBe(10_000)
  })
})

describe('the connection cap', () => {
  it('closes connections past MAX_CONNECTIONS and keeps serving the ones it holds', async () => {
    const { port } = await start({ MAX_CONNECTIONS: '2' })
    const health = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    const answered = (socket: Socket) =>
      new Promise<string>((resolve) =>
        socket.once('data', (chunk: Buffer) => resolve(String(chunk))),
      )
    const held = [await open(port), await open(port)]
    for (const socket of held) {
      // An answer proves the server counts the connection.
      const answer = answered(socket)
      socket.write(health)
      expect(await answer).toMatch(/^HTTP\/1\.1 200 /)
    }
    const extra = await open(port)
    const extraClosed = untilClosed(extra)
    extra.write(health)
    expect(await extraClosed).toBe('')
    const [first] = held
    if (!first) throw new Error('unreachable')
    const again = answered(first)
    first.write(health)
    expect(await again).toMatch(/^HTTP\/1\.1 200 /)
    for (const socket of held) socket.destroy()
  })
})

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './net.js'

/** A private `redis-server` a test can stop and start again on the same port. */
export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Kills the server (SIGKILL): its clients see the connection drop at once. */
  stop(): Promise<void>
  start(): Promise<void>
  /** Freezes the server (SIGSTOP): connections stay open and nothing answers. */
  pause(): void
  /** Lets a paused server go on (SIGCONT), answering what it was sent meanwhile. */
  resume(): void
  /** Stops the server and removes its data directory, if it had one. */
  dispose(): Promise<void>
}

export interface RedisServerOptions {
  /**
   * Keep data across `stop()` and `start()`: an append-only file in a temporary directory,
   * written before every reply (`appendfsync always`), so even a killed server loses nothing
   * it acknowledged. Default false: each start begins empty.
   */
  persist?: boolean
}

/** Starts `redis-server` on a spare loopback port, persisting nothing unless asked. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = options.persist ? await mkdtemp(join(tmpdir(), 'redis-test-')) : undefined
  const persistence = dir
    ? ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always']
    : ['--appendonly', 'no']
  let child: ChildProcess | undefined

  const start = async () => {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    child = proc
    await new Promise<void>((resolve, reject) => {
      let output = ''
      proc.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)))
    })
  }

  const stop = async () => {
    const proc = child
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve())
      proc.kill('SIGKILL')
    })
  }

  const signal = (name: 'SIGSTOP' | 'SIGCONT') => {
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      throw new Error('redis-server is not running')
    }
    child.kill(name)
  }

  const dispose = async () => {
    child?.kill('SIGCONT')
    await stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  }

  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    dispose,
  }
}

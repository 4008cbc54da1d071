import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { freePort } from '../test/support/net.js'
import type {
  ChildMessage,
  Command,
  CommandResult,
  Ready,
  Reply,
  Request,
  ServerSpec,
} from './ipc.js'

const SERVER_SCRIPT = fileURLToPath(new URL('./server.ts', import.meta.url))
const START_TIMEOUT_MS = 120_000
const COMMAND_TIMEOUT_MS = 600_000

/** Whether `taskset` (util-linux) can pin processes to a core here. */
export const canPin: boolean = (() => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

/** Pins every thread of this process to `cpu`; false when it cannot. */
export function pinSelf(cpu: number): boolean {
  if (!canPin) return false
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' })
  return true
}

/** `command` run on `cpu` only when pinning is possible, unpinned otherwise. */
function pinned(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu !== undefined && canPin
    ? ['taskset', ['-c', String(cpu), command, ...args]]
    : [command, args]
}

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU seconds (user + system) process `pid` has used so far; NaN without /proc. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

/** A server under test in its own process, driven over IPC. */
export interface ServerProcess {
  readonly name: string
  readonly pid: number
  readonly url: string
  /** An upstream's: the environment a proxy needs to use it. */
  readonly upstreamEnv: Readonly<Record<string, string>>
  call<Op extends Command['op']>(command: Extract<Command, { op: Op }>): Promise<CommandResult[Op]>
  cpuSeconds(): number
  /** Asks the server to close and exit (so a CPU profile is written), then waits for it. */
  close(): Promise<void>
}

/**
 * Starts `bench/server.ts` in a new Node process (through tsx's loader) pinned to `cpu`, and
 * waits for it to listen. Its stdout, where the proxy logs, goes to /dev/null.
 */
export async function startServerProcess(
  name: string,
  spec: ServerSpec,
  options: { cpu?: number; nodeFlags?: readonly string[] } = {},
): Promise<ServerProcess> {
  const [command, args] = pinned(options.cpu, process.execPath, [
    '--import',
    'tsx',
    ...(options.nodeFlags ?? []),
    SERVER_SCRIPT,
  ])
  const child = spawn(command, args, {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, BENCH_SERVER: JSON.stringify(spec) },
  })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name}: could not start`)
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const pending = new Map<number, { resolve(value: unknown): void; reject(e: Error): void }>()
  let nextId = 1

  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name}: not ready within ${START_TIMEOUT_MS} ms`))
    }, START_TIMEOUT_MS)
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer)
        resolve(message)
      } else {
        settle(pending, message)
      }
    })
    void exited.then((code) => {
      clearTimeout(timer)
      const error = new Error(`${name}: exited with ${code}`)
      reject(error)
      for (const waiting of pending.values()) waiting.reject(error)
      pending.clear()
    })
  })

  const call = <Op extends Command['op']>(
    command: Extract<Command, { op: Op }>,
  ): Promise<CommandResult[Op]> => {
    const id = nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`${name}: ${command.op} got no answer`))
      }, COMMAND_TIMEOUT_MS)
      pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value as CommandResult[Op])
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      })
      child.send({ ...command, id } satisfies Request)
    })
  }

  return {
    name,
    pid,
    url: ready.url,
    upstreamEnv: ready.upstreamEnv ?? {},
    call,
    cpuSeconds: () => cpuSecondsOf(pid),
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await call({ op: 'close' }).catch(() => null)
      await exited
      clearTimeout(killer)
    },
  }
}

function settle(
  pending: Map<number, { resolve(value: unknown): void; reject(e: Error): void }>,
  reply: Reply,
): void {
  const waiting = pending.get(reply.id)
  if (!waiting) return
  pending.delete(reply.id)
  if (reply.ok) waiting.resolve(reply.result)
  else waiting.reject(new Error(reply.error))
}

/** A private Redis (nothing persisted) for the proxies, killed by `stop`. */
export interface RedisProcess {
  readonly url: string
  readonly pid: number
  stop(): Promise<void>
}

/** Starts `redis-server` on a free loopback port, pinned to `cpu` when possible. */
export async function startRedis(cpu: number | undefined): Promise<RedisProcess> {
  const port = await freePort()
  const [command, args] = pinned(cpu, 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
  ])
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const pid = child.pid
  if (pid === undefined) throw new Error('redis-server could not start')
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    let output = ''
    const read = (chunk: Buffer) => {
      output += chunk.toString()
      if (!output.includes('Ready to accept connections')) return
      child.stdout?.off('data', read)
      child.stdout?.resume()
      resolve()
    }
    child.stdout?.on('data', read)
    void exited.then(() => reject(new Error(`redis-server exited: ${output}`)))
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await exited
    },
  }
}

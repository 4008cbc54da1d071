import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
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
  /** More `redis-server` arguments (cluster mode, replication); they run in a private directory. */
  args?: readonly string[]
  /** A config file to start from (a sentinel's, which Sentinel rewrites as it learns). */
  configFile?: string
}

/** Starts `redis-server` on a spare loopback port, persisting nothing unless asked. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  const private_ = options.persist || options.args || options.configFile
  const dir = private_ ? await mkdtemp(join(tmpdir(), 'redis-test-')) : undefined
  const persistence = options.persist
    ? ['--appendonly', 'yes', '--appendfsync', 'always']
    : ['--appendonly', 'no']
  const configFile = dir && options.configFile ? join(dir, 'redis.conf') : undefined
  if (configFile) await writeFile(configFile, options.configFile ?? '')
  let child: ChildProcess | undefined

  const start = async () => {
    const proc = spawn(
      'redis-server',
      [
        ...(configFile ? [configFile] : []),
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        ...(dir ? ['--dir', dir] : []),
        ...persistence,
        ...(options.args ?? []),
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    child = proc
    await new Promise<void>((resolve, reject) => {
      let output = ''
      proc.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        // A sentinel never says it is ready; it is once it monitors its master.
        if (/Ready to accept connections|\+monitor master/.test(output)) resolve()
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

/**
 * How long a master may be silent before its replica takes over: short for quick tests, long
 * enough that a test sees the outage before the failover ends it.
 */
export const FAILOVER_AFTER_MS = 4000

/** A Redis node or sentinel address. */
export interface HostPort {
  readonly host: string
  readonly port: number
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 60_000,
): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

/** One command to one node on a short-lived connection (no cluster routing, no retries). */
async function ask(port: number, ...command: [string, ...(string | number)[]]): Promise<unknown> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return await redis.call(...command)
  } finally {
    redis.disconnect()
  }
}

/** A Redis Cluster of three masters with a replica each, on loopback, for one test file. */
export interface RedisCluster {
  /** Every node, masters and replicas. */
  readonly servers: readonly RedisServer[]
  /** Seed nodes for `REDIS_CLUSTER_NODES`. */
  readonly nodes: readonly HostPort[]
  /** The node that serves `fullKey`'s slot now (the prefix included). */
  masterOf(fullKey: string): Promise<RedisServer>
  /** The masters now, by the cluster's own view. */
  masters(): Promise<RedisServer[]>
  /** Resolves when every slot is served and every master has a replica in sync. */
  healthy(): Promise<void>
  dispose(): Promise<void>
}

interface ClusterNodeLine {
  port: number
  master: boolean
  failed: boolean
  slots: [number, number][]
}

function parseClusterNodes(text: string): ClusterNodeLine[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [, address = '', flags = '', , , , , , ...slots] = line.split(' ')
      return {
        port: Number(address.split('@')[0]?.split(':')[1]),
        master: flags.split(',').includes('master'),
        failed: /fail/.test(flags),
        slots: slots
          .filter((s) => /^\d/.test(s))
          .map((s) => {
            const [from, to = from] = s.split('-')
            return [Number(from), Number(to)] as [number, number]
          }),
      }
    })
}

/**
 * Starts a 3-master, 3-replica Redis Cluster from Debian's `redis-server` (each in a temp dir,
 * bus on its own free port) and joins it with `redis-cli --cluster create`. A node down for a
 * `FAILOVER_AFTER_MS` is marked failed and its replica promoted (`cluster-node-timeout`).
 */
export async function startRedisCluster(): Promise<RedisCluster> {
  const servers: RedisServer[] = []
  try {
    for (let i = 0; i < 6; i++) {
      const busPort = await freePort()
      servers.push(
        await startRedisServer({
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(FAILOVER_AFTER_MS),
            '--cluster-port',
            String(busPort),
            '--cluster-replica-validity-factor',
            '0',
          ],
        }),
      )
    }
    await promisify(execFile)('redis-cli', [
      '--cluster',
      'create',
      ...servers.map((s) => `127.0.0.1:${s.port}`),
      '--cluster-replicas',
      '1',
      '--cluster-yes',
    ])
  } catch (error) {
    await Promise.all(servers.map((s) => s.dispose()))
    throw error
  }
  const byPort = new Map(servers.map((s) => [s.port, s]))
  const view = async (): Promise<ClusterNodeLine[]> => {
    for (const server of servers) {
      try {
        return parseClusterNodes(String(await ask(server.port, 'CLUSTER', 'NODES')))
      } catch {}
    }
    throw new Error('no cluster node answers')
  }
  const masters = async () =>
    (await view())
      .filter((n) => n.master && !n.failed && n.slots.length)
      .map((n) => byPort.get(n.port) as RedisServer)
  const healthy = () =>
    until('a healthy cluster', async () => {
      const live = await masters()
      if (live.length !== 3) return undefined
      for (const master of live) {
        if (
          String(await ask(master.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok') === false
        )
          return undefined
        const replication = String(await ask(master.port, 'INFO', 'replication'))
        if (!/slave0:.*state=online/.test(replication)) return undefined
      }
      return true
    }).then(() => undefined)
  await healthy()
  return {
    servers,
    nodes: servers.slice(0, 3).map((s) => ({ host: '127.0.0.1', port: s.port })),
    masters,
    healthy,
    async masterOf(fullKey) {
      const slot = Number(await ask((await masters())[0]?.port ?? 0, 'CLUSTER', 'KEYSLOT', fullKey))
      const owner = (await view()).find(
        (n) => n.master && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to),
      )
      const server = owner && byPort.get(owner.port)
      if (!server) throw new Error(`no master serves slot ${slot}`)
      return server
    },
    dispose: async () => {
      await Promise.all(servers.map((s) => s.dispose()))
    },
  }
}

/** A master and its replica watched by three sentinels, on loopback, for one test file. */
export interface RedisSentinelSet {
  readonly masterName: string
  /** For `REDIS_SENTINELS`. */
  readonly sentinels: readonly HostPort[]
  /** The master and the replica, in start order (the roles swap on failover). */
  readonly servers: readonly RedisServer[]
  /** The master now, as the sentinels name it. */
  master(): Promise<RedisServer>
  /** Resolves when the sentinels agree on a master that has a replica in sync. */
  healthy(): Promise<void>
  dispose(): Promise<void>
}

/**
 * Starts a master, a replica and three sentinels (quorum 2) from `redis-server`. The sentinels
 * fail over a master that stays silent for `FAILOVER_AFTER_MS`.
 */
export async function startRedisSentinelSet(): Promise<RedisSentinelSet> {
  const masterName = 'proxymaster'
  const started: RedisServer[] = []
  const sentinels: RedisServer[] = []
  try {
    const master = await startRedisServer({ args: ['--appendonly', 'no'] })
    started.push(master)
    started.push(
      await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] }),
    )
    for (let i = 0; i < 3; i++) {
      sentinels.push(
        await startRedisServer({
          configFile: [
            `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
            `sentinel down-after-milliseconds ${masterName} ${FAILOVER_AFTER_MS}`,
            `sentinel failover-timeout ${masterName} 3000`,
            `sentinel parallel-syncs ${masterName} 1`,
            '',
          ].join('\n'),
          args: ['--sentinel'],
        }),
      )
    }
  } catch (error) {
    await Promise.all([...started, ...sentinels].map((s) => s.dispose()))
    throw error
  }
  const byPort = new Map(started.map((s) => [s.port, s]))
  const master = async () => {
    const answers = await Promise.all(
      sentinels.map((s) =>
        ask(s.port, 'SENTINEL', 'get-master-addr-by-name', masterName).catch(() => undefined),
      ),
    )
    const ports = answers.map((a) => Number((a as string[] | undefined)?.[1]))
    const [first] = ports
    const agreed = ports.filter((p) => p === first).length >= 2 ? first : undefined
    const server = agreed === undefined ? undefined : byPort.get(agreed)
    if (!server) throw new Error(`the sentinels do not agree on a master: ${ports.join(', ')}`)
    return server
  }
  const healthy = () =>
    until('a healthy sentinel set', async () => {
      const current = await master()
      const replication = String(await ask(current.port, 'INFO', 'replication'))
      if (!/role:master/.test(replication) || !/slave0:.*state=online/.test(replication))
        return undefined
      for (const sentinel of sentinels) {
        const replicas = (await ask(sentinel.port, 'SENTINEL', 'replicas', masterName)) as unknown[]
        const others = Number(
          /num-other-sentinels\D*(\d+)/.exec(
            String(await ask(sentinel.port, 'SENTINEL', 'master', masterName)),
          )?.[1] ?? 0,
        )
        if (!replicas.length || others < 2) return undefined
      }
      return true
    }).then(() => undefined)
  await healthy()
  return {
    masterName,
    sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
    servers: started,
    master,
    healthy,
    dispose: async () => {
      await Promise.all([...started, ...sentinels].map((s) => s.dispose()))
    },
  }
}

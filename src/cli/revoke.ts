import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { createAuditTrail } from '../audit.js'
import { systemClock } from '../clock.js'
import { type Config, ConfigError, loadConfig } from '../config.js'
import { createRedisStore, type RedisStoreOptions } from '../store/redis.js'
import type { Store } from '../store/store.js'
import { endUserGrants } from '../tokens/end-grants.js'

/** What `mcp-oauth-proxy revoke` was asked to do. */
export interface RevokeArgs {
  readonly sub: string
  readonly clientId?: string | undefined
}

/** Reads `--sub <sub> [--client <client_id>]`; throws with a one-line reason otherwise. */
export function parseRevokeArgs(args: string[]): RevokeArgs {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { sub: { type: 'string' }, client: { type: 'string' } },
  })
  if (positionals.length) throw new Error(`unexpected arguments: ${positionals.join(' ')}`)
  if (!values.sub)
    throw new Error('revoke needs --sub <sub>, the user as the identity provider names them')
  if (values.client === '') throw new Error('--client needs a client_id')
  return { sub: values.sub, clientId: values.client }
}

/**
 * Ends a user's grants (or one client's) in the store the server uses, configured by the same
 * environment; writes one line saying how many ended. Resolves to the exit code: 0 done, 1 the
 * configuration or the store failed (one line on `err` says which).
 */
export async function runRevoke(
  env: Readonly<Record<string, string | undefined>>,
  args: RevokeArgs,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  let config: Config
  try {
    config = loadConfig(env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    for (const problem of error.problems) err(`config error: ${problem}`)
    return 1
  }
  if (!config.redis) {
    err(
      'mcp-oauth-proxy: revoke needs the Redis store (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES): without it the grants live in the memory of the running server, out of reach of this command',
    )
    return 1
  }
  const where = describeRedis(config.redis)
  let store: Store
  try {
    store = await createRedisStore(config.redis)
  } catch {
    err(`mcp-oauth-proxy: cannot reach Redis at ${where}`)
    return 1
  }
  // Audit lines go where the server's go (AUDIT_LOG), else to stderr: stdout is for the answer.
  const trail = createAuditTrail(pino({ level: 'info' }, pino.destination(2)), config.auditLog)
  try {
    const ended = await endUserGrants(
      { config, store, clock: systemClock, audit: trail.audit },
      args.sub,
      { by: 'operator', clientId: args.clientId, reason: 'mcp-oauth-proxy revoke' },
    )
    const what = `${ended} grant${ended === 1 ? '' : 's'}`
    out(`ended ${what} of ${args.sub}${args.clientId ? ` for client ${args.clientId}` : ''}`)
    return 0
  } catch {
    err(`mcp-oauth-proxy: Redis at ${where} did not answer; some grants may not have ended`)
    return 1
  } finally {
    await store.close()
  }
}

/** Where the store is, for a message: the URL without its password, or the seed nodes. */
function describeRedis(options: RedisStoreOptions): string {
  if (options.url) {
    try {
      const parsed = new URL(options.url)
      if (parsed.password) parsed.password = '***'
      return parsed.href
    } catch {
      return 'REDIS_URL'
    }
  }
  const nodes = options.clusterNodes ?? options.sentinels ?? []
  return nodes.map(({ host, port }) => `${host}:${port}`).join(',')
}

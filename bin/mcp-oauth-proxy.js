#!/usr/bin/env node
// The `mcp-oauth-proxy` command. In a clone (src/ present, dev dependencies installed) it runs
// the TypeScript source through tsx, so it is never a stale build; in the published package,
// or where tsx is absent (`npm ci --omit=dev`), it runs the compiled dist/cli/main.js, which
// needs nothing but Node.
import { existsSync } from 'node:fs'

const source = new URL('../src/cli/main.ts', import.meta.url)
const compiled = new URL('../dist/cli/main.js', import.meta.url)

async function tsxRegister() {
  try {
    return (await import('tsx/esm/api')).register
  } catch {
    return undefined
  }
}

const register = existsSync(source) ? await tsxRegister() : undefined
if (register) {
  register()
  await import(source.href)
} else if (existsSync(compiled)) {
  await import(compiled.href)
} else {
  process.stderr.write('mcp-oauth-proxy: dist/cli/main.js is missing; run `npm run build` first\n')
  process.exitCode = 1
}

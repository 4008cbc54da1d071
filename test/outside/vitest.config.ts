import { defineConfig } from 'vitest/config'

/**
 * `npm run test:outside`: the outside suites (MCP conformance, mcp-remote, MCP Inspector CLI)
 * against the proxy. They need the tools `bash scripts/outside/install-tools.sh` installs into
 * tools/, so they are kept out of `npm test` (their files end in `.outside.ts`).
 */
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/outside/**/*.outside.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    // Each file starts its own proxy and child processes; two cores.
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
})

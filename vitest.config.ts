import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: end-to-end files start real servers and Chromium, so keep parallelism modest.
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
    // oidc-provider (the test upstream) warns that Node 20 is not its supported runtime and
    // that it keeps state in memory: both intended here, and ~80 lines of noise per run.
    onConsoleLog: (log) =>
      /oidc-provider WARNING: (Unsupported runtime|a quick start development-only)/.test(log)
        ? false
        : undefined,
  },
})

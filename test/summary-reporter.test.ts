import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, 'fixtures/reporter')
const reporter = resolve(import.meta.dirname, 'support/summary-reporter.ts')
const vitest = resolve(import.meta.dirname, '../node_modules/vitest/vitest.mjs')

describe('the summary reporter', () => {
  it('counts the tests of a suite whose beforeAll failed as failed, not skipped', async () => {
    const outcome = await run(
      process.execPath,
      [vitest, 'run', '--root', root, '--reporter', reporter],
      {
        env: { ...process.env, CI: '1', NO_COLOR: '1' },
      },
    ).then(
      () => ({ code: 0, stdout: '' }),
      (error: { code: number; stdout: string }) => error,
    )
    expect(outcome.code).toBe(1)
    expect(outcome.stdout).toContain('tests: 1 passed, 2 failed, 1 skipped')
  })
})

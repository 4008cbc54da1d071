import type { Reporter, TestCase, TestModule } from 'vitest/node'

/**
 * Ends every run with one plain line, `tests: N passed, N failed, N skipped`, that tools
 * reading CI logs understand whatever the runner; vitest's own summary is styled for people.
 * A test that never ran because a `beforeAll` above it threw (a missing browser, a port in
 * use) counts as failed: vitest reports it as skipped, and a run that could not test
 * something has not passed it.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<unknown>,
  ): void {
    const counts = { passed: 0, failed: 0, skipped: 0 }
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') counts.passed++
        else if (state === 'failed' || hookFailedAbove(test)) counts.failed++
        else counts.skipped++
      }
      if (module.state() === 'failed' && !module.children.size) counts.failed++
    }
    counts.failed += unhandledErrors.length
    process.stdout.write(
      `\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`,
    )
  }
}

/** Whether a suite or the module around `test` failed on its own (a hook threw). */
function hookFailedAbove(test: TestCase): boolean {
  for (let parent = test.parent; ; parent = parent.parent) {
    if (parent.errors().length) return true
    if (parent.type === 'module') return false
  }
}

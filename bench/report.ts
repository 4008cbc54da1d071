import type { LoadResult } from './load.js'
import type { ProfileLine, ProfileSummary } from './profile.js'

/** What a target must reach: a share of bare Hono's rate, or an absolute rate. */
export type Goal = { readonly ratio: number } | { readonly perSecond: number }

/** One target's runs, summarised against bare Hono from the same rounds. */
export interface TargetSummary {
  readonly label: string
  readonly goal: Goal | undefined
  readonly runs: readonly LoadResult[]
  readonly medianPerSecond: number
  /** Median rate over bare Hono's median rate. */
  readonly ratio: number
  readonly medianPerCpuSecond: number
  /** The same ratio per server CPU second: what a machine to itself would show. */
  readonly cpuRatio: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly serverCores: number
  readonly clientCores: number
  readonly failures: number
}

export interface MemoryReport {
  readonly sessions: number
  readonly opened: number
  readonly openPerSecond: number
  readonly rssBefore: number
  readonly rssAfter: number
  readonly rssAfterGc: number
  readonly heapBefore: number
  readonly heapAfterGc: number
}

export interface ProfileReport {
  readonly label: string
  readonly okPerSecond: number
  readonly file: string
  readonly summary: ProfileSummary
}

export interface Report {
  readonly date: string
  readonly command: string
  readonly machine: readonly string[]
  readonly settings: string
  readonly targets: readonly TargetSummary[]
  readonly memory: MemoryReport | undefined
  readonly profiles: readonly ProfileReport[]
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  if (sorted.length === 0) return Number.NaN
  return sorted.length % 2
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

export function summarize(
  label: string,
  goal: Goal | undefined,
  runs: readonly LoadResult[],
  bare: { readonly perSecond: number; readonly perCpuSecond: number },
): TargetSummary {
  const medianPerSecond = median(runs.map((run) => run.okPerSecond))
  const medianPerCpuSecond = median(runs.map((run) => run.okPerCpuSecond))
  return {
    label,
    goal,
    runs,
    medianPerSecond,
    ratio: medianPerSecond / bare.perSecond,
    medianPerCpuSecond,
    cpuRatio: medianPerCpuSecond / bare.perCpuSecond,
    p50Ms: median(runs.map((run) => run.p50Ms)),
    p99Ms: median(runs.map((run) => run.p99Ms)),
    serverCores: median(runs.map((run) => run.serverCores)),
    clientCores: median(runs.map((run) => run.clientCores)),
    failures: runs.reduce((sum, run) => sum + run.failures, 0),
  }
}

const int = (value: number) => Math.round(value).toLocaleString('en-US')
const pct = (value: number, digits = 1) => `${(value * 100).toFixed(digits)} %`
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

function goalText(goal: Goal | undefined): string {
  if (!goal) return '—'
  return 'ratio' in goal ? `≥ ${pct(goal.ratio, 0)} of bare` : `≥ ${int(goal.perSecond)}/s`
}

/**
 * Whether the goal is met on wall-clock rates, and per server CPU second (for `/token`'s
 * "on one core", the latter is the goal's own measure).
 */
function verdicts(target: TargetSummary): [string, string] {
  const { goal } = target
  if (!goal) return ['', '']
  const word = (met: boolean) => (met ? 'met' : '**missed**')
  return 'ratio' in goal
    ? [word(target.ratio >= goal.ratio), word(target.cpuRatio >= goal.ratio)]
    : [
        word(target.medianPerSecond >= goal.perSecond),
        word(target.medianPerCpuSecond >= goal.perSecond),
      ]
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** The headline table: one row per target. */
export function resultsTable(targets: readonly TargetSummary[]): string {
  return table(
    [
      'Target',
      'Median ok/s',
      'vs bare Hono',
      'Goal',
      'Wall clock',
      'ok per server CPU-s',
      'vs bare (CPU)',
      'Per CPU',
      'p50 ms',
      'p99 ms',
      'Server cores',
      'Failed',
    ],
    targets.map((t) => [
      t.label,
      int(t.medianPerSecond),
      pct(t.ratio),
      goalText(t.goal),
      verdicts(t)[0],
      int(t.medianPerCpuSecond),
      pct(t.cpuRatio),
      verdicts(t)[1],
      String(t.p50Ms),
      String(t.p99Ms),
      t.serverCores.toFixed(2),
      String(t.failures),
    ]),
  )
}

function roundsTable(targets: readonly TargetSummary[]): string {
  const rounds = Math.max(...targets.map((t) => t.runs.length))
  return table(
    ['Target', ...Array.from({ length: rounds }, (_, i) => `Round ${i + 1}`)],
    targets.map((t) => [
      t.label,
      ...t.runs.map(
        (run) =>
          `${int(run.okPerSecond)}/s, ${int(run.okPerCpuSecond)}/CPU-s, ` +
          `${run.serverCores.toFixed(2)} cores`,
      ),
    ]),
  )
}

export function memoryText(memory: MemoryReport): string {
  const perSession = (memory.rssAfterGc - memory.rssBefore) / memory.opened
  return [
    table(
      ['Sessions opened', 'Opened/s', 'RSS before', 'RSS after', 'RSS after GC', 'Per session'],
      [
        [
          `${int(memory.opened)} of ${int(memory.sessions)}`,
          int(memory.openPerSecond),
          mib(memory.rssBefore),
          mib(memory.rssAfter),
          mib(memory.rssAfterGc),
          `${(perSession / 1024).toFixed(1)} KiB`,
        ],
      ],
    ),
    '',
    `Heap used: ${mib(memory.heapBefore)} before, ${mib(memory.heapAfterGc)} after GC. ` +
      '"Per session" is (RSS after GC − RSS before) / sessions opened, in a fresh session-mode ' +
      'proxy warmed up with one session. The proxy runs its TypeScript through tsx here, which ' +
      'adds to the baseline RSS (not to the per-session figure) compared with a `dist/` build.',
  ].join('\n')
}

function profileLines(lines: readonly ProfileLine[]): string {
  return table(
    ['Function', 'Where', 'ms', 'Share'],
    lines.map((line) => [
      `\`${line.name}\``,
      line.where ? `\`${line.where}\`` : '',
      line.ms.toFixed(0),
      pct(line.share),
    ]),
  )
}

export function profileText(profile: ProfileReport, top = 15): string {
  const { summary } = profile
  return [
    `### ${profile.label}`,
    '',
    `${int(profile.okPerSecond)} ok/s while profiled; ${summary.totalMs.toFixed(0)} ms sampled, ` +
      `${pct(summary.idleMs / summary.totalMs)} idle. Profile: \`${profile.file}\` (open it in ` +
      'Chrome DevTools). `src/` runs through tsx, whose output puts a file on one line: find ' +
      'those functions by name. Total time counts a function while it is on the stack: for an ' +
      '`async` function, its own synchronous stretches, not awaited work run in later ticks.',
    '',
    'Self time by area:',
    '',
    table(
      ['Area', 'ms', 'Share'],
      summary.byArea
        .slice(0, top)
        .map((line) => [`\`${line.name}\``, line.ms.toFixed(0), pct(line.share)]),
    ),
    '',
    'Top functions by self time:',
    '',
    profileLines(summary.topSelf.slice(0, top)),
    '',
    'Top functions by total time (self + callees):',
    '',
    profileLines(summary.topTotal.slice(0, top)),
  ].join('\n')
}

/** `bench/RESULTS.md`: the run's numbers, the machine and the command that reproduces them. */
export function resultsMarkdown(report: Report): string {
  return [
    '# Benchmark results',
    '',
    `Run on ${report.date} with:`,
    '',
    '```sh',
    report.command,
    '```',
    '',
    '## Machine',
    '',
    ...report.machine.map((line) => `- ${line}`),
    '',
    '## Method',
    '',
    report.settings,
    '',
    '## Results',
    '',
    resultsTable(report.targets),
    '',
    'Per round (alternating, each round rotates the order): ok/s, ok per server CPU second, ' +
      'and how much of its core the server got.',
    '',
    roundsTable(report.targets),
    '',
    ...(report.memory ? ['## Memory', '', memoryText(report.memory), ''] : []),
    ...(report.profiles.length
      ? ['## CPU profiles', '', ...report.profiles.flatMap((p) => [profileText(p), ''])]
      : []),
  ].join('\n')
}

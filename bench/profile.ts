import { readFile } from 'node:fs/promises'

/** The parts of a V8 `.cpuprofile` (Chrome DevTools format) the summary reads. */
interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
  readonly startTime: number
  readonly endTime: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly children?: readonly number[]
}

/** Time attributed to one function or one area, in milliseconds and as a share of the total. */
export interface ProfileLine {
  readonly name: string
  readonly where: string
  readonly ms: number
  readonly share: number
}

export interface ProfileSummary {
  readonly totalMs: number
  /** Sampled time the thread was not running JavaScript or GC: waiting for I/O. */
  readonly idleMs: number
  readonly topSelf: readonly ProfileLine[]
  readonly topTotal: readonly ProfileLine[]
  readonly byArea: readonly ProfileLine[]
}

const PSEUDO = new Set(['(root)', '(program)', '(idle)', '(garbage collector)'])
// The event loop's own frames, at the bottom of every asynchronous continuation: always "on
// the stack", so their total says nothing.
const SCHEDULER = new Set(['processTicksAndRejections', 'runMicrotasks'])

/**
 * Reads a `.cpuprofile` and sums sampled time per function (self: the function on top of the
 * stack; total: anywhere on it, once per sample) and per area (npm package, src/ file or Node
 * internals), best first.
 */
export async function summarizeProfile(
  path: string,
  root: string,
  top = 20,
): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id)

  const self = new Map<string, number>()
  const total = new Map<string, number>()
  const area = new Map<string, number>()
  const add = (map: Map<string, number>, key: string, micros: number) =>
    map.set(key, (map.get(key) ?? 0) + micros)

  let totalMicros = 0
  let idleMicros = 0
  const { samples, timeDeltas } = profile
  for (let i = 0; i < samples.length; i++) {
    // A sample stands for the interval until the next one.
    const micros = timeDeltas[i + 1] ?? timeDeltas[i] ?? 0
    const node = byId.get(samples[i] ?? -1)
    if (!node) continue
    totalMicros += micros
    const name = node.callFrame.functionName
    if (name === '(idle)') idleMicros += micros
    add(self, keyOf(node, root), micros)
    add(area, PSEUDO.has(name) ? name : areaOf(node.callFrame.url, root), micros)
    const seen = new Set<string>()
    // Bounded by the stack depth: each step moves to the parent, and the root has none.
    for (let at: ProfileNode | undefined = node; at; at = byId.get(parent.get(at.id) ?? -1)) {
      const frame = at.callFrame.functionName
      if (PSEUDO.has(frame) || SCHEDULER.has(frame)) continue
      const key = keyOf(at, root)
      if (seen.has(key)) continue
      seen.add(key)
      add(total, key, micros)
    }
  }

  const lines = (map: Map<string, number>, count: number): ProfileLine[] =>
    [...map]
      .sort(([, a], [, b]) => b - a)
      .slice(0, count)
      .map(([key, micros]) => {
        const [name = key, where = ''] = key.split('\u0000')
        return { name, where, ms: micros / 1000, share: micros / totalMicros }
      })

  return {
    totalMs: totalMicros / 1000,
    idleMs: idleMicros / 1000,
    topSelf: lines(self, top),
    topTotal: lines(total, top),
    byArea: lines(area, top),
  }
}

function keyOf(node: ProfileNode, root: string): string {
  const { functionName, url, lineNumber } = node.callFrame
  const name = functionName || '(anonymous)'
  if (!url) return name
  return `${name}\u0000${shortUrl(url, root)}:${lineNumber + 1}`
}

function shortUrl(url: string, root: string): string {
  const path = url.replace(/^file:\/\//, '')
  const modules = path.lastIndexOf('/node_modules/')
  if (modules >= 0) return path.slice(modules + '/node_modules/'.length)
  return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path
}

/** `hono`, `@modelcontextprotocol/sdk`, `src/mcp/auth.ts`, `node:internal/streams`… */
function areaOf(url: string, root: string): string {
  if (!url) return '(native)'
  if (url.startsWith('node:')) {
    const parts = url.split('/')
    return parts.slice(0, url.startsWith('node:internal/deps/') ? 3 : 2).join('/')
  }
  const path = url.replace(/^file:\/\//, '')
  const modules = path.lastIndexOf('/node_modules/')
  if (modules < 0) return shortUrl(url, root)
  const [scope = '', name = ''] = path.slice(modules + '/node_modules/'.length).split('/')
  return scope.startsWith('@') ? `${scope}/${name}` : scope
}

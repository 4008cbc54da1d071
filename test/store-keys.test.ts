import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { KEY_TABLE, storeKey } from '../src/store/keys.js'

const root = join(import.meta.dirname, '..')

/** The rows of the README's Redis key table, cells as written. */
function readmeKeyTable(): string[][] {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n')
  const header = lines.findIndex((line) => line.startsWith('| key | hash tag |'))
  expect(header, 'README has a key table with a hash tag column').toBeGreaterThan(-1)
  const rows: string[][] = []
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break
    rows.push(
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim()),
    )
  }
  return rows
}

/** The literal head of each key shape, up to its first placeholder (`grant:`, `keys:v1`). */
const keyHeads = KEY_TABLE.map(({ key }) => key.split(/[<{]/)[0] as string)

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  )
}

describe('the store key schema', () => {
  it("matches the README's key table row for row", () => {
    const expected = KEY_TABLE.map((row) => [`\`${row.key}\``, row.hashTag, row.what, row.ttl])
    expect(readmeKeyTable()).toEqual(expected)
  })

  it('names every key shape once', () => {
    expect(new Set(KEY_TABLE.map((row) => row.key)).size).toBe(KEY_TABLE.length)
  })

  it('gives keys used together in one step the same hash tag, and no other key a tag', () => {
    const tag = (key: string) => /\{([^}]+)\}/.exec(key)?.[1]
    expect(tag(storeKey.code('c'))).toBe('c')
    expect(tag(storeKey.usedCode('c'))).toBe('c')
    expect(tag(storeKey.grant('g'))).toBe('g')
    expect(tag(storeKey.grantLock('g'))).toBe('g')
    for (const row of KEY_TABLE) {
      expect(row.hashTag === '—', row.key).toBe(tag(row.key) === undefined)
    }
  })

  it('is the only module of src/ that spells a key', () => {
    const schema = join(root, 'src', 'store', 'keys.ts')
    const spelled = sourceFiles(join(root, 'src'))
      .filter((file) => file !== schema)
      .flatMap((file) => {
        const text = readFileSync(file, 'utf8')
        return keyHeads
          .filter((head) => text.includes(`'${head}`) || text.includes(`\`${head}`))
          .map((head) => `${file}: ${head}`)
      })
    expect(spelled).toEqual([])
  })
})

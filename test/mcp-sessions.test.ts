import { describe, expect, it } from 'vitest'
import { createSessionRegistry, type SessionOwner } from '../src/mcp/sessions.js'
import { createTestClock } from './support/clock.js'

const ALICE: SessionOwner = { sub: 'user-alice', clientId: 'client-1' }

function session(owner: SessionOwner = ALICE) {
  const s = {
    owner,
    closed: false,
    async close() {
      s.closed = true
    },
  }
  return s
}

describe('the MCP session registry', () => {
  it('finds a session only for the user and client that opened it', () => {
    const sessions = createSessionRegistry(createTestClock())
    const mine = session()
    sessions.add('s1', mine)
    expect(sessions.find('s1', ALICE)).toBe(mine)
    expect(sessions.find('s1', { sub: 'user-bob', clientId: 'client-1' })).toBeUndefined()
    expect(sessions.find('s1', { sub: 'user-alice', clientId: 'client-2' })).toBeUndefined()
    expect(sessions.find('s2', ALICE)).toBeUndefined()
    // A refused attempt neither ends nor takes over the session.
    expect(mine.closed).toBe(false)
    expect(sessions.find('s1', ALICE)).toBe(mine)
  })

  it('closes sessions left idle, and keeps used ones', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { idleSeconds: 60 })
    const idle = session()
    const busy = session()
    sessions.add('idle', idle)
    sessions.add('busy', busy)
    clock.advance(40)
    sessions.find('busy', ALICE)
    clock.advance(30)
    expect(sessions.find('idle', ALICE)).toBeUndefined()
    expect(idle.closed).toBe(true)
    expect(sessions.find('busy', ALICE)).toBe(busy)
    expect(sessions.size).toBe(1)
  })

  it('closes an idle session when another is used, without it being asked for', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { idleSeconds: 60 })
    const idle = session()
    const busy = session()
    sessions.add('idle', idle)
    sessions.add('busy', busy)
    for (let step = 0; step < 4; step++) {
      clock.advance(20)
      expect(sessions.find('busy', ALICE)).toBe(busy)
    }
    expect(idle.closed).toBe(true)
    expect(busy.closed).toBe(false)
    expect(sessions.size).toBe(1)
  })

  it('is not kept alive by another user’s lookups of its id', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { idleSeconds: 60 })
    const mine = session()
    sessions.add('s1', mine)
    for (let step = 0; step < 4; step++) {
      clock.advance(20)
      expect(sessions.find('s1', { sub: 'user-bob', clientId: 'client-1' })).toBeUndefined()
    }
    expect(sessions.find('s1', ALICE)).toBeUndefined()
    expect(mine.closed).toBe(true)
  })

  it('closes every session at shutdown, idle or not', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { idleSeconds: 60 })
    const [idle, open] = [session(), session()]
    sessions.add('idle', idle)
    clock.advance(90)
    sessions.add('open', open)
    sessions.closeAll()
    expect([idle.closed, open.closed]).toEqual([true, true])
    expect(sessions.size).toBe(0)
  })

  it('closes the least recently used session beyond the bound', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { maxSessions: 2 })
    const [a, b, c] = [session(), session(), session()]
    sessions.add('a', a)
    sessions.add('b', b)
    sessions.find('a', ALICE)
    sessions.add('c', c)
    expect(b.closed).toBe(true)
    expect(sessions.find('b', ALICE)).toBeUndefined()
    expect(sessions.find('a', ALICE)).toBe(a)
    expect(sessions.find('c', ALICE)).toBe(c)
  })

  it('closes a user’s own oldest session beyond their bound, never another user’s', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { maxSessionsPerUser: 2 })
    const BOB = { sub: 'user-bob', clientId: 'client-1' }
    const bobs = session(BOB)
    sessions.add('bob', bobs)
    const [a, b, c] = [session(), session(), session()]
    sessions.add('a', a)
    sessions.add('b', b)
    sessions.add('c', c)
    expect(a.closed).toBe(true)
    expect(bobs.closed).toBe(false)
    expect(sessions.find('bob', BOB)).toBe(bobs)
    expect(sessions.size).toBe(3)
    // A session that ends on its own frees its place in the user's count.
    sessions.remove('b')
    sessions.add('d', session())
    expect(c.closed).toBe(false)
  })

  it('keeps a session whose client is listening on its event stream', () => {
    const clock = createTestClock()
    const sessions = createSessionRegistry(clock, { idleSeconds: 60 })
    const listening = session()
    sessions.add('listening', listening)
    for (let minute = 0; minute < 5; minute++) {
      clock.advance(30)
      sessions.touch('listening')
    }
    sessions.add('other', session())
    expect(listening.closed).toBe(false)
    expect(sessions.find('listening', ALICE)).toBe(listening)
  })

  it('forgets a removed session without closing it again', () => {
    const sessions = createSessionRegistry(createTestClock())
    const s = session()
    sessions.add('s', s)
    sessions.remove('s')
    expect(sessions.find('s', ALICE)).toBeUndefined()
    expect(s.closed).toBe(false)
  })
})

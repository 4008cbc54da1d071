import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ProxyUnderTest, startProxy } from '../../support/proxy.js'
import type { UpstreamUser } from '../../support/upstream.js'

/** The user the built-in identity provider signs in, as in `npm run demo`. */
export const OUTSIDE_USER: UpstreamUser = {
  sub: 'kp_outside_user',
  email: 'outside@example.test',
  email_verified: true,
  name: 'Outside User',
  org_code: 'org_outside',
  permissions: ['read:reports'],
}

/**
 * The proxy in front of a real OpenID Connect provider shaped like Kinde (the demo's setup:
 * memory store, one user behind a one-click sign-in page), on loopback.
 */
export function startOutsideProxy(env: Record<string, string> = {}): Promise<ProxyUnderTest> {
  return startProxy({ flavor: 'kinde', store: 'memory', env, upstream: { users: [OUTSIDE_USER] } })
}

/** A temporary directory, removed by the returned function unless OUTSIDE_KEEP=1 is set. */
export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `${prefix}-`))
  return {
    path,
    async remove() {
      if (process.env.OUTSIDE_KEEP === '1') console.log(`kept ${path}`)
      else await rm(path, { recursive: true, force: true })
    },
  }
}

import { pino } from 'pino'
import { createApp } from '../../src/app.js'
import { type Config, loadConfig } from '../../src/config.js'
import type { Deps } from '../../src/deps.js'
import { createServices, type ServiceOverrides } from '../../src/services.js'
import { createMemoryStore } from '../../src/store/memory.js'
import type { Store } from '../../src/store/store.js'
import { createTestClock, type TestClock } from './clock.js'

/** The environment of a minimal valid configuration (a Kinde upstream on loopback). */
export const BASE_ENV: Record<string, string> = {
  PUBLIC_URL: 'https://mcp.example.test',
  KINDE_ISSUER_URL: 'http://127.0.0.1:9',
  KINDE_CLIENT_ID: 'proxy-client',
  KINDE_CLIENT_SECRET: 'proxy-secret',
  KINDE_AUDIENCE: 'https://api.example.test',
  LOG_LEVEL: 'silent',
}

export interface TestApp {
  app: ReturnType<typeof createApp>
  deps: Deps
  config: Config
  clock: TestClock
  store: Store
}

/**
 * Builds the app over services from the composition root, as the server does: the given store
 * (memory by default), real keys, a clock the test moves.
 */
export async function createTestApp(
  options: {
    env?: Record<string, string>
    store?: Store
    clock?: TestClock
    overrides?: ServiceOverrides
  } = {},
): Promise<TestApp> {
  const config = loadConfig({ ...BASE_ENV, ...options.env })
  const clock = options.clock ?? createTestClock()
  const store = options.store ?? createMemoryStore(clock)
  const deps = await createServices(config, {
    store,
    clock,
    logger: pino({ level: 'silent' }),
    ...options.overrides,
  })
  return { app: createApp(deps), deps, config, clock, store }
}

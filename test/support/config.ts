import { ConfigError, loadConfig } from '../../src/config.js'

/** The lines a bad environment produces, one per variable; throws when it is accepted. */
export function problemsOf(env: Record<string, string | undefined>): readonly string[] {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError')
}

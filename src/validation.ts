import type { z } from 'zod'
import { OAuthError } from './errors.js'

/**
 * Parses wire input with a zod schema; a failure becomes an `OAuthError` with `code`, naming
 * the first offending field so the client learns what to fix (RFC 6749 §5.2 error_description).
 */
export function parse<S extends z.ZodType>(
  schema: S,
  input: unknown,
  code = 'invalid_request',
): z.output<S> {
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const field = issue?.path.join('.')
  const message = issue?.message ?? 'invalid input'
  throw new OAuthError(code, field ? `${field}: ${message}` : message)
}

import type { Context } from 'hono'
import { OAuthError } from '../errors.js'
import { hasMediaType, readBody } from '../http.js'

const MAX_FORM_BYTES = 16 * 1024

/**
 * Reads an `application/x-www-form-urlencoded` request body (RFC 6749 §3.2) into single
 * values; a repeated parameter is `invalid_request` (RFC 6749 §3.1).
 */
export async function readForm(c: Context): Promise<Record<string, string>> {
  if (!hasMediaType(c, 'application/x-www-form-urlencoded')) {
    throw new OAuthError(
      'invalid_request',
      'the request body must be application/x-www-form-urlencoded',
    )
  }
  const params = new URLSearchParams(await readBody(c, MAX_FORM_BYTES))
  // No prototype: a parameter named __proto__ or constructor is just a parameter.
  const form: Record<string, string> = Object.create(null)
  for (const [key, value] of params) {
    if (Object.hasOwn(form, key)) throw new OAuthError('invalid_request', `${key} is repeated`)
    form[key] = value
  }
  return form
}

/**
 * One error type for every protocol failure (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 6750 §3.1,
 * RFC 7009 §2.2.1). It decides the status, the headers and the body, so no handler derives a
 * status code of its own; `internal` carries diagnostics for the log and never reaches the wire.
 */
export class OAuthError extends Error {
  readonly code: string
  readonly description: string | undefined
  readonly status: number
  readonly headers: Record<string, string>
  readonly internal: unknown

  constructor(
    code: string,
    description?: string,
    options: { status?: number; headers?: Record<string, string>; internal?: unknown } = {},
  ) {
    const wire = description === undefined ? undefined : wireDescription(description)
    super(wire ? `${code}: ${wire}` : code)
    this.name = 'OAuthError'
    this.code = code
    this.description = wire
    this.status = options.status ?? defaultStatus(code)
    this.headers = options.headers ?? {}
    this.internal = options.internal
  }

  /** The RFC 6749 §5.2 JSON body, with `Cache-Control: no-store` (§5.1). */
  getResponse(): Response {
    const body: Record<string, string> = { error: this.code }
    if (this.description) body.error_description = this.description
    return new Response(JSON.stringify(body), {
      status: this.status,
      headers: { 'content-type': 'application/json', ...NO_STORE, ...this.headers },
    })
  }
}

/** Headers every response carrying credentials or errors about them must have (RFC 6749 §5.1). */
export const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const

/**
 * RFC 6749 §5.2 (and §4.1.2.1 for redirects) allows only %x20-21 / %x23-5B / %x5D-7E in
 * `error_description`. Descriptions echo input (a redirect URI, a parameter name, a grant
 * type), so quotes become `'` and anything else outside the set, controls included, `?`.
 */
function wireDescription(text: string): string {
  return text
    .replace(/[\u2018\u2019\u201c\u201d"]/g, "'")
    .replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')
}

function defaultStatus(code: string): number {
  switch (code) {
    case 'invalid_client':
    case 'invalid_token':
      return 401
    case 'insufficient_scope':
    case 'access_denied':
      return 403
    case 'not_found':
      return 404
    case 'method_not_allowed':
      return 405
    case 'request_too_large':
      return 413
    case 'slow_down':
    case 'rate_limited':
      return 429
    case 'temporarily_unavailable':
      return 503
    case 'server_error':
      return 500
    default:
      return 400
  }
}

/** The store or another backing service did not answer: clients may retry (RFC 6749 §4.1.2.1). */
export function unavailable(internal: unknown, retryAfterSeconds = 1): OAuthError {
  return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable', {
    status: 503,
    headers: { 'retry-after': String(retryAfterSeconds) },
    internal,
  })
}

/** The upstream identity provider did not answer in time, or answered garbage: retry later. */
export function upstreamUnavailable(internal: unknown, retryAfterSeconds = 5): OAuthError {
  return new OAuthError(
    'temporarily_unavailable',
    'the identity provider is unavailable; try again shortly',
    {
      status: 503,
      headers: { 'retry-after': String(retryAfterSeconds) },
      internal,
    },
  )
}

/** Thrown by the store when its backend fails, so the edge can answer 503 rather than 500. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super('store unavailable', { cause })
    this.name = 'StoreUnavailableError'
  }
}

/**
 * The response for a refusal: an `OAuthError` as itself, a silent store as 503; undefined for
 * anything else (a bug, for the host's error handler). Server-side refusals are logged first,
 * so sub-apps mounted elsewhere log them as the main app does.
 */
export function refusalResponse(
  error: unknown,
  logger: { warn(fields: object, message: string): void },
  path: string,
): Response | undefined {
  const refusal = error instanceof StoreUnavailableError ? unavailable(error) : error
  if (!(refusal instanceof OAuthError)) return undefined
  if (refusal.status >= 500) {
    logger.warn({ err: refusal.internal, code: refusal.code, path }, refusal.message)
  }
  return refusal.getResponse()
}

import { randomUUID } from 'node:crypto'
import type { Context, MiddlewareHandler } from 'hono'
import { type DestinationStream, destination, type Logger, pino } from 'pino'
import { withHeaders } from './http.js'

/** The security events the proxy records, one JSON line each. */
export type AuditEventName =
  | 'client.registered'
  | 'consent.granted'
  | 'consent.denied'
  | 'authorization.granted'
  | 'authorization.refused'
  | 'token.issued'
  | 'token.refused'
  | 'refresh.reuse_detected'
  | 'code.replayed'
  | 'token.revoked'
  | 'grant.revoked'
  | 'policy.refused'
  | 'mcp.denied'

/**
 * What an event may carry. Identifiers only: never a token, code, secret or verifier — the
 * field names are fixed so that nothing else can slip in.
 */
export interface AuditFields {
  client_id?: string | undefined
  sub?: string | undefined
  org?: string | undefined
  actor?: 'user' | 'agent' | undefined
  grant_type?: string | undefined
  scopes?: readonly string[] | undefined
  jti?: string | undefined
  /** Ties the events of one sign-in together, from /authorize to every refresh. */
  flow_id?: string | undefined
  auth_method?: string | undefined
  kind?: string | undefined
  reason?: string | undefined
  error?: string | undefined
  tool?: string | undefined
  /** Who ended a grant: the user (`/account`), a back-channel logout, or an operator (CLI). */
  by?: GrantRevoker | undefined
}

/** Who ends a grant outside the OAuth protocol's own revocations. */
export type GrantRevoker = 'user' | 'logout' | 'operator'

/**
 * Records an audit event, stamped with the correlation id of the request it happened in
 * (`requestIdOf(c)`; absent outside a request).
 */
export type Audit = (event: AuditEventName, fields: AuditFields, requestId?: string) => void

/** The audit trail: its writer, and the middleware that gives each request its correlation id. */
export interface AuditTrail {
  readonly audit: Audit
  readonly correlate: MiddlewareHandler
}

const REQUEST_ID = /^[\w.:-]{1,128}$/
const REQUEST_ID_VARIABLE = 'requestId'

/**
 * Creates the audit trail. Events go through pino, to `path` when given (`AUDIT_LOG`) and
 * otherwise to `logger`'s destination with the other logs. Each request gets a correlation id
 * (a well-formed incoming `X-Request-Id`, or a new UUID), echoed in the response and kept on
 * the Hono context, from which the routes pass it with the events they record. Not an
 * AsyncLocalStorage: on Node 20 that turns on promise hooks for every promise in the process.
 */
export function createAuditTrail(
  logger: Logger,
  path?: string,
  sink?: DestinationStream,
): AuditTrail {
  const out: Logger = sink
    ? pino({ base: { stream: 'audit' } }, sink)
    : path
      ? pino({ base: { stream: 'audit' } }, destination({ dest: path, mkdir: true, sync: false }))
      : logger.child({ stream: 'audit' })
  return {
    audit(event, fields, requestId) {
      out.info({ event, request_id: requestId, ...withoutUndefined(fields) }, event)
    },
    correlate,
  }
}

/**
 * Gives each request its correlation id: a well-formed incoming `X-Request-Id`, or a new UUID,
 * echoed in the response and kept for `requestIdOf`.
 */
export const correlate: MiddlewareHandler = async function correlate(c, next) {
  const incoming = c.req.header('x-request-id')
  const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID()
  c.set(REQUEST_ID_VARIABLE, requestId)
  return withHeaders(c, { 'x-request-id': requestId }, next)
}

/** The correlation id `correlate` gave request `c`; undefined where it did not run. */
export function requestIdOf(c: Context): string | undefined {
  return c.get(REQUEST_ID_VARIABLE) as string | undefined
}

/**
 * `deps` for the protocol functions request `c` calls: their audit events carry its
 * correlation id.
 */
export function forRequest<D extends { readonly audit?: Audit | undefined }>(
  deps: D,
  c: Context,
): D {
  const { audit } = deps
  const requestId = requestIdOf(c)
  if (!audit || requestId === undefined) return deps
  return { ...deps, audit: (event, fields) => audit(event, fields, requestId) }
}

function withoutUndefined(fields: AuditFields): AuditFields {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value
  return out as AuditFields
}

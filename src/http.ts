import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Context, MiddlewareHandler } from 'hono'
import { cors } from 'hono/cors'
import { OAuthError } from './errors.js'

/**
 * The address of the client: the socket's peer, or with `trustProxy` the right-most
 * `X-Forwarded-For` entry — the one the trusted proxy in front of us appended, which the
 * client cannot forge.
 */
export function clientIp(c: Context, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').at(-1)?.trim()
    if (forwarded) return forwarded
  }
  const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)
    ?.incoming
  return incoming?.socket?.remoteAddress ?? 'unknown'
}

/**
 * Whether the client went away before its request was received whole: it disconnected
 * mid-body, or Node cut a body that stopped arriving (`REQUEST_TIMEOUT_MS`). Reading the body
 * then fails, which is the client's doing and not a server error.
 */
export function requestAbandoned(c: Context): boolean {
  const incoming = (c.env as { incoming?: Partial<IncomingMessage> } | undefined)?.incoming
  return Boolean(incoming?.destroyed && incoming.complete === false)
}

/**
 * Reads the request body as text, refusing more than `maxBytes` with 413 — checked against
 * Content-Length first, then while streaming, so a lying or absent length cannot exhaust memory.
 *
 * A body with a Content-Length within the limit is read in one piece: Node's HTTP parser never
 * delivers more than the declared length, and reading it through `c.req` spares
 * `@hono/node-server` building a whole WHATWG `Request` (headers and stream) for `c.req.raw.body`.
 * The size is checked again after reading, for requests that did not come through that parser.
 * A body without a length (chunked) is streamed and cut off at the limit.
 */
export async function readBody(c: Context, maxBytes: number): Promise<string> {
  const length = c.req.header('content-length')
  const declared = Number(length)
  if (declared > maxBytes) throw tooLarge(maxBytes)
  if (length !== undefined && Number.isSafeInteger(declared) && declared >= 0) {
    const bytes = Buffer.from(await c.req.arrayBuffer())
    if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes)
    return bytes.toString('utf8')
  }
  const body = c.req.raw.body
  if (!body) return ''
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel()
      throw tooLarge(maxBytes)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function tooLarge(maxBytes: number): OAuthError {
  return new OAuthError('invalid_request', `the request body exceeds ${maxBytes} bytes`, {
    status: 413,
  })
}

/** True when the request's media type is `type` (parameters such as charset ignored). */
export function hasMediaType(c: Context, type: string): boolean {
  return c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase() === type
}

/**
 * CORS for endpoints browser-based clients (MCP Inspector, web apps) call directly:
 * discovery, registration, token and revocation. No credentials are involved, so any origin.
 */
export function publicCors(allowMethods: string[]): MiddlewareHandler {
  return anyOriginCors({
    allowMethods: [...allowMethods, 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'MCP-Protocol-Version', 'DPoP'],
    exposeHeaders: ['WWW-Authenticate'],
    maxAge: 86_400,
  })
}

/**
 * `hono/cors` with `origin: '*'` and no credentials, answering exactly as it does, for less.
 * Preflights go to `hono/cors` itself. On other requests it writes its headers to `c.res`
 * before the handler runs, and Hono then copies that placeholder into the handler's response
 * by rebuilding the response (on Node that materialises a WHATWG `Response` and turns a string
 * body into a stream); here the same two headers go out with `withHeaders` instead.
 */
export function anyOriginCors(options: {
  allowMethods: string[]
  allowHeaders: string[]
  exposeHeaders: string[]
  maxAge: number
}): MiddlewareHandler {
  const preflight = cors({ origin: '*', ...options })
  const exposed = options.exposeHeaders.join(',')
  const headers: Record<string, string> = { 'access-control-allow-origin': '*' }
  if (exposed) headers['access-control-expose-headers'] = exposed
  return async function anyOriginCorsMiddleware(c, next) {
    if (c.req.method === 'OPTIONS') return preflight(c, next)
    return withHeaders(c, headers, next)
  }
}

/**
 * Runs `next` so that whatever response it ends with, an error's included, carries `headers`.
 * On Node (`@hono/node-server`) they are set on the outgoing message, which merges them into
 * the head it writes (a header of the response itself wins), so a handler's response is never
 * turned into WHATWG `Headers` for them: on a small answer that costs more than the handler.
 * Elsewhere they are set on `c.res` once it is final.
 */
export async function withHeaders(
  c: Context,
  headers: Readonly<Record<string, string>>,
  next: () => Promise<void>,
): Promise<void> {
  const outgoing = (c.env as { outgoing?: Partial<ServerResponse> } | undefined)?.outgoing
  if (typeof outgoing?.setHeader === 'function' && !outgoing.headersSent) {
    for (const name in headers) outgoing.setHeader(name, headers[name] as string)
    return next()
  }
  const stamp = (target: Headers) => {
    for (const name in headers) target.set(name, headers[name] as string)
  }
  try {
    await next()
  } catch (error) {
    // Whatever answers the error is merged with `c.res`, as with hono/cors's placeholder.
    stamp(c.res.headers)
    throw error
  }
  try {
    stamp(c.res.headers)
  } catch {
    // Some responses carry immutable headers; a copy takes them.
    c.res = new Response(c.res.body, c.res)
    stamp(c.res.headers)
  }
}

/** 405 with `Allow` for a known path hit with a method it does not serve (RFC 9110 §15.5.6). */
export function methodNotAllowed(allowed: string[]) {
  const allow = [...allowed, 'OPTIONS'].join(', ')
  return function methodNotAllowedHandler(c: Context): Response {
    throw new OAuthError(
      'method_not_allowed',
      `${c.req.method} is not allowed here; use ${allowed.join(' or ')}`,
      {
        status: 405,
        headers: { allow },
      },
    )
  }
}

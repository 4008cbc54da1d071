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
 * Reads the request body as text, refusing more than `maxBytes` with 413 — checked against
 * Content-Length first, then while streaming, so a lying or absent length cannot exhaust memory.
 */
export async function readBody(c: Context, maxBytes: number): Promise<string> {
  const tooLarge = () =>
    new OAuthError('invalid_request', `the request body exceeds ${maxBytes} bytes`, { status: 413 })
  const declared = Number(c.req.header('content-length'))
  if (declared > maxBytes) throw tooLarge()
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
      throw tooLarge()
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
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
  return cors({
    origin: '*',
    allowMethods: [...allowMethods, 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type', 'MCP-Protocol-Version'],
    exposeHeaders: ['WWW-Authenticate'],
    maxAge: 86_400,
  })
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

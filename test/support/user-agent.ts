/**
 * A browser without a browser: keeps cookies per host (enough for `__Host-` and host-only
 * cookies on loopback), never follows redirects by itself, and records where it was sent.
 */
export class UserAgent {
  private readonly jar = new Map<string, Map<string, string>>()

  /** Fetches with this agent's cookies, storing the ones the response sets. */
  async fetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
    const url = new URL(input)
    const headers = new Headers(init.headers)
    const cookies = this.jar.get(url.host)
    if (cookies?.size) headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '))
    const response = await fetch(url, { ...init, headers, redirect: 'manual' })
    for (const line of response.headers.getSetCookie()) this.store(url.host, line)
    return response
  }

  /** The value of a cookie this agent holds for `host`. */
  cookie(host: string, name: string): string | undefined {
    return this.jar.get(host)?.get(name)
  }

  /** Replaces or removes a cookie, as a person with developer tools could. */
  setCookie(host: string, name: string, value: string | undefined): void {
    const cookies = this.jar.get(host) ?? new Map<string, string>()
    if (value === undefined) cookies.delete(name)
    else cookies.set(name, value)
    this.jar.set(host, cookies)
  }

  private store(host: string, line: string): void {
    const [pair = '', ...attributes] = line.split(';')
    const eq = pair.indexOf('=')
    if (eq < 0) return
    const name = pair.slice(0, eq).trim()
    const value = pair.slice(eq + 1).trim()
    const expired = attributes.some(
      (a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a),
    )
    this.setCookie(host, name, expired || value === '' ? undefined : value)
  }
}

/** The `Location` of a redirect, resolved; throws when the response is not a redirect. */
export function location(response: Response): URL {
  const value = response.headers.get('location')
  if (response.status < 300 || response.status > 399 || !value) {
    throw new Error(`expected a redirect, got ${response.status}`)
  }
  return new URL(value, response.url || undefined)
}

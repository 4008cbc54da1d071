import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface BearerForwarder {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  close(): Promise<void>
}

/**
 * A loopback reverse proxy that adds `Authorization: Bearer <token>` to every request that has
 * none and passes everything else through unchanged, bodies and SSE streams included. The
 * conformance suite's server scenarios connect without auth; behind this they reach `/mcp` as
 * a signed-in client would, with a token the proxy issued through its own OAuth flow.
 */
export async function startBearerForwarder(
  target: string,
  token: string,
): Promise<BearerForwarder> {
  const to = new URL(target)
  const server = createServer((req, res) => {
    const headers = { ...req.headers }
    headers.authorization ??= `Bearer ${token}`
    const upstream = request(
      { hostname: to.hostname, port: to.port, path: req.url, method: req.method, headers },
      (response) => {
        res.writeHead(response.statusCode ?? 502, response.rawHeaders)
        response.pipe(res)
      },
    )
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`bearer forwarder: ${error.message}`)
    })
    req.pipe(upstream)
    res.on('close', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

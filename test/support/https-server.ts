import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Answers one path of the test https server. */
export type HttpsRoute = (req: IncomingMessage, res: ServerResponse) => void

export interface HttpsTestServer {
  /** `https://localhost:<port>`. */
  readonly base: string
  /** The self-signed certificate (PEM), to trust as `metadataDocuments.ca`. */
  readonly ca: string
  /** Routes by path; tests may add or replace them while the server runs. */
  readonly routes: Map<string, HttpsRoute>
  /** Requests served, by path. */
  readonly hits: Map<string, number>
  close(): Promise<void>
}

/** A fresh self-signed P-256 certificate for `localhost` and 127.0.0.1 (openssl), one day long. */
export function selfSignedCertificate(): { readonly key: Buffer; readonly cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'https-test-'))
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        join(dir, 'k.pem'),
        '-out',
        join(dir, 'c.pem'),
      ],
      { stdio: 'ignore' },
    )
    return { key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * A real https server on loopback with a fresh self-signed certificate (openssl), as a client's
 * host would serve its metadata document and JWK Set. The proxy reaches it with the document
 * fetcher's address guard lifted and this certificate trusted; nothing else changes.
 */
export async function startHttpsServer(): Promise<HttpsTestServer> {
  const { key, cert: ca } = selfSignedCertificate()
  const routes = new Map<string, HttpsRoute>()
  const hits = new Map<string, number>()
  const server = createServer({ key, cert: ca }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://x').pathname
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const route = routes.get(path)
    if (!route) {
      res.writeHead(404)
      res.end()
      return
    }
    route(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    base: `https://localhost:${port}`,
    ca,
    routes,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** A route answering `body` as JSON with the given headers. */
export function jsonRoute(body: () => unknown, headers: Record<string, string> = {}): HttpsRoute {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify(body()))
  }
}

import { type ChildProcess, spawn } from 'node:child_process'
import { createServer, request, type Server } from 'node:http'

/** A round-robin HTTP balancer, as in front of a fleet: each request goes to the next backend. */
export function startBalancer(
  port: number,
  backends: string[],
): Promise<{ server: Server; hits: number[] }> {
  const hits = backends.map(() => 0)
  let next = 0
  const server = createServer((req, res) => {
    const index = next++ % backends.length
    hits[index] = (hits[index] ?? 0) + 1
    const target = new URL(req.url ?? '/', backends[index])
    const upstream = request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => {
      res.writeHead(502).end()
    })
    req.pipe(upstream)
  })
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, hits })))
}

/** Starts the proxy as its own process, the way `npm start` runs it. */
export async function startProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('"listening"')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`proxy exited with ${code}: ${out}`)))
  })
  return child
}

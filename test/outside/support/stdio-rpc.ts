import type { Running } from './tools.js'

interface JsonRpcResponse {
  jsonrpc: '2.0'
  id: number
  result?: Record<string, unknown>
  error?: { code: number; message: string }
}

/**
 * JSON-RPC over a child's stdio, newline-delimited, as an MCP host (Claude Desktop, say)
 * speaks to a stdio server such as mcp-remote. Only what the tests need: requests by id,
 * notifications, and lines that are not responses ignored.
 */
export class StdioRpc {
  #nextId = 1
  #buffer = ''
  readonly #waiting = new Map<number, (response: JsonRpcResponse) => void>()

  constructor(private readonly process: Running) {
    process.child.stdout?.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString()
      for (let end = this.#buffer.indexOf('\n'); end >= 0; end = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, end).trim()
        this.#buffer = this.#buffer.slice(end + 1)
        if (!line.startsWith('{')) continue
        const message = JSON.parse(line) as Partial<JsonRpcResponse>
        if (typeof message.id === 'number' && !('method' in message)) {
          this.#waiting.get(message.id)?.(message as JsonRpcResponse)
          this.#waiting.delete(message.id)
        }
      }
    })
  }

  /** Sends a request and resolves with its result; rejects on a JSON-RPC error or timeout. */
  async request(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    const response = new Promise<JsonRpcResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        reject(new Error(`no answer to ${method} in ${timeoutMs} ms:\n${this.process.output()}`))
      }, timeoutMs)
      this.#waiting.set(id, (message) => {
        clearTimeout(timer)
        resolve(message)
      })
    })
    this.#write({ jsonrpc: '2.0', id, method, params })
    const { result, error } = await response
    if (error) throw new Error(`${method}: ${error.code} ${error.message}`)
    return result ?? {}
  }

  notify(method: string, params?: Record<string, unknown>): void {
    this.#write({ jsonrpc: '2.0', method, ...(params ? { params } : {}) })
  }

  #write(message: Record<string, unknown>): void {
    this.process.child.stdin?.write(`${JSON.stringify(message)}\n`)
  }
}

import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import type {
  JSONRPCMessage,
  MessageExtraInfo,
  RequestId,
  RequestInfo,
} from '@modelcontextprotocol/sdk/types.js'

/** What the endpoint knows of a POST when it hands the messages over. */
export interface Delivery {
  readonly authInfo: AuthInfo
  readonly requestInfo: RequestInfo
  /** Headers every response carries (the session id). */
  readonly headers: Readonly<Record<string, string>>
}

/** How often an open SSE stream gets a comment line, so idle proxies do not cut it. */
const KEEP_ALIVE_MS = 15_000
/** What a request still unanswered when its session closes gets (the SDK's ConnectionClosed). */
const CONNECTION_CLOSED = -32000

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
}

/**
 * The server side of the MCP Streamable HTTP transport (MCP 2025-11-25, basic/transports) for
 * one MCP server: a session's, or a single stateless POST's. The endpoint has already checked
 * the HTTP side (token, session, headers, JSON-RPC shape); this moves messages between the
 * server and the HTTP exchanges they belong to.
 *
 * Each POST that carries requests is answered either with one JSON body or with an SSE stream,
 * as the spec lets the server choose per request: JSON when nothing but the responses can come
 * back (`tools/list`, `initialize`, `ping`, ...), which spares a stream's machinery on the hot
 * path; a stream when the handler may talk to the client before it answers (`tools/call`, or
 * any request asking for progress), so its notifications and requests reach the client. A
 * `GET` opens the session's own stream, for messages related to no request.
 *
 * Hand-written, not the SDK's `WebStandardStreamableHTTPServerTransport`, because the
 * benchmark showed that transport's per-request work (every header copied into `requestInfo`,
 * each message zod-checked several times) at well over half of a session's `tools/list`: this
 * one never copies the request's headers (tools get them lazily through `requestInfo`),
 * validates nothing twice, and answers requests still open when the session ends, so no HTTP
 * exchange is left hanging.
 */
export class HttpServerTransport implements Transport {
  sessionId?: string
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void
  /**
   * Called once no request is left unanswered (after a POST of notifications only, or with
   * the last response): a stateless server is closed then.
   */
  onsettled?: () => void
  /** Called at each keep-alive of the session's own stream (GET) while a client holds it. */
  onlistening?: () => void

  /** The exchange carrying each open request's answer, by JSON-RPC id. */
  readonly #exchanges = new Map<RequestId, Exchange>()
  #standalone: EventStream | undefined
  #closed = false

  async start(): Promise<void> {}

  /**
   * Delivers a POST's messages (already validated) to the server and returns its answer: 202
   * when it carries no request, else the requests' responses as JSON, or as an SSE stream
   * when `stream` (see the class comment).
   */
  post(
    messages: readonly JSONRPCMessage[],
    delivery: Delivery,
    stream: boolean,
  ): Promise<Response> {
    if (this.#closed) return Promise.resolve(jsonRpcError(404, -32001, 'Session not found'))
    const extra: MessageExtraInfo = {
      authInfo: delivery.authInfo,
      requestInfo: delivery.requestInfo,
    }
    const requests = messages.filter(isRequest)
    if (requests.length === 0) {
      for (const message of messages) this.onmessage?.(message, extra)
      this.#settle()
      return Promise.resolve(new Response(null, { status: 202, headers: delivery.headers }))
    }
    // An id still open in this session (or twice in one batch) would lose one of the answers.
    const ids = new Set(requests.map((request) => request.id))
    if (ids.size < requests.length || requests.some((request) => this.#exchanges.has(request.id))) {
      return Promise.resolve(
        jsonRpcError(400, -32600, 'Invalid Request: a request id is already in use'),
      )
    }
    const exchange = stream
      ? new StreamExchange(requests, delivery.headers)
      : new JsonExchange(requests, delivery.headers)
    for (const request of requests) this.#exchanges.set(request.id, exchange)
    for (const message of messages) this.onmessage?.(message, extra)
    return exchange.response
  }

  #settle(): void {
    if (this.#exchanges.size === 0) this.onsettled?.()
  }

  /** Opens the session's own SSE stream (`GET`); one at a time, as the SDK allows. */
  openStream(headers: Readonly<Record<string, string>>): Response {
    if (this.#standalone && !this.#standalone.ended) {
      return jsonRpcError(409, -32000, 'Conflict: Only one SSE stream is allowed per session')
    }
    // An open stream is a client listening: it keeps the session in use between requests.
    const stream = new EventStream(() => this.onlistening?.())
    this.#standalone = stream
    return stream.response(headers)
  }

  async send(message: JSONRPCMessage, options?: { relatedRequestId?: RequestId }): Promise<void> {
    if (this.#closed) return
    if (isResponse(message)) {
      const id = message.id
      if (id === undefined) return
      const exchange = this.#exchanges.get(id)
      if (!exchange) return
      this.#exchanges.delete(id)
      exchange.answer(id, message)
      this.#settle()
      return
    }
    // A notification or a request of the server's: on the stream of the request it is about,
    // else on the session's own stream; with neither open it is dropped (no event store).
    const related =
      options?.relatedRequestId === undefined
        ? undefined
        : this.#exchanges.get(options.relatedRequestId)
    if (related?.write(message)) return
    this.#standalone?.write(message)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const [id, exchange] of this.#exchanges) {
      exchange.answer(id, {
        jsonrpc: '2.0',
        id,
        error: { code: CONNECTION_CLOSED, message: 'Connection closed' },
      })
    }
    this.#exchanges.clear()
    this.#standalone?.end()
    this.onclose?.()
  }
}

type Request = Extract<JSONRPCMessage, { method: string; id: RequestId }>
type ResponseMessage = Extract<JSONRPCMessage, { result: unknown } | { error: unknown }>

/** Whether `message` is a request (a method and an id), not a notification or a response. */
export function isRequest(message: JSONRPCMessage): message is Request {
  return 'method' in message && 'id' in message
}

function isResponse(message: JSONRPCMessage): message is ResponseMessage {
  return 'result' in message || 'error' in message
}

/** One POST's requests, and how their answers go back. */
interface Exchange {
  readonly response: Promise<Response>
  /** Takes the response to request `id`; the exchange ends with the last one. */
  answer(id: RequestId, message: ResponseMessage): void
  /** Passes on a message about one of its requests; false when it cannot (JSON). */
  write(message: JSONRPCMessage): boolean
}

/** Answers with one JSON body once every request has its response (a batch: an array). */
class JsonExchange implements Exchange {
  readonly response: Promise<Response>
  readonly #answers = new Map<RequestId, ResponseMessage>()
  readonly #ids: RequestId[]
  readonly #headers: Readonly<Record<string, string>>
  readonly #batch: boolean
  #resolve!: (response: Response) => void

  constructor(requests: readonly Request[], headers: Readonly<Record<string, string>>) {
    this.#ids = requests.map((request) => request.id)
    this.#headers = headers
    this.#batch = requests.length > 1
    this.response = new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  answer(id: RequestId, message: ResponseMessage): void {
    this.#answers.set(id, message)
    if (this.#answers.size < this.#ids.length) return
    const body = this.#batch
      ? this.#ids.map((each) => this.#answers.get(each))
      : this.#answers.get(id)
    this.#resolve(jsonAnswer(JSON.stringify(body), this.#headers))
  }

  write(): boolean {
    return false
  }
}

/** Answers with an SSE stream carrying the requests' messages, ended by their last response. */
class StreamExchange implements Exchange {
  readonly response: Promise<Response>
  readonly #stream = new EventStream()
  #open: number

  constructor(requests: readonly Request[], headers: Readonly<Record<string, string>>) {
    this.#open = requests.length
    this.response = Promise.resolve(this.#stream.response(headers))
  }

  answer(_id: RequestId, message: ResponseMessage): void {
    this.#stream.write(message)
    if (--this.#open === 0) this.#stream.end()
  }

  write(message: JSONRPCMessage): boolean {
    return this.#stream.write(message)
  }
}

const encoder = new TextEncoder()
const KEEP_ALIVE = encoder.encode(': keepalive\n\n')

/**
 * An SSE stream of JSON-RPC messages (`event: message`). A client that goes away ends it, and
 * what is written after is dropped: disconnection is not cancellation (basic/transports), so
 * the handler runs on and its answer is lost, as it would be without an event store.
 */
class EventStream {
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined
  #keepAlive: NodeJS.Timeout | undefined
  #ended = false
  readonly #onKeepAlive: (() => void) | undefined

  constructor(onKeepAlive?: () => void) {
    this.#onKeepAlive = onKeepAlive
  }

  get ended(): boolean {
    return this.#ended
  }

  response(headers: Readonly<Record<string, string>>): Response {
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller
      },
      cancel: () => this.#stop(),
    })
    this.#keepAlive = setInterval(() => {
      if (this.#enqueue(KEEP_ALIVE)) this.#onKeepAlive?.()
    }, KEEP_ALIVE_MS)
    this.#keepAlive.unref()
    return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...headers } })
  }

  write(message: JSONRPCMessage): boolean {
    return this.#enqueue(encoder.encode(`event: message\ndata: ${JSON.stringify(message)}\n\n`))
  }

  end(): void {
    if (this.#ended) return
    const controller = this.#controller
    this.#stop()
    try {
      controller?.close()
    } catch {
      // Already closed by the client going away.
    }
  }

  #enqueue(chunk: Uint8Array): boolean {
    if (this.#ended || !this.#controller) return false
    try {
      this.#controller.enqueue(chunk)
      return true
    } catch {
      this.#stop()
      return false
    }
  }

  #stop(): void {
    this.#ended = true
    clearInterval(this.#keepAlive)
  }
}

/** A JSON-RPC error with no id, as the transport answers HTTP-level refusals. */
export function jsonRpcError(status: number, code: number, message: string): Response {
  return jsonAnswer(
    JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }),
    {},
    status,
  )
}

/** JSON text as the answer to a POST, with the headers of its session. */
export function jsonAnswer(
  json: string,
  headers: Readonly<Record<string, string>>,
  status = 200,
): Response {
  return new Response(json, { status, headers: { 'content-type': 'application/json', ...headers } })
}

/** The most messages one POST may carry (a JSON-RPC batch, protocol 2025-03-26). */
const MAX_BATCH = 100

/**
 * The JSON-RPC messages of a POST body (one message, or a batch of up to 100), or undefined
 * when it is not one: JSON-RPC 2.0 with MCP's rules (ids are strings or integers, never null;
 * params and results are objects), and no member beyond those of its kind, as the SDK's own
 * schemas have it. Checked by hand: this runs on every request.
 */
export function readMessages(body: unknown): JSONRPCMessage[] | undefined {
  const list = Array.isArray(body) ? body : [body]
  if (list.length === 0 || list.length > MAX_BATCH) return undefined
  for (const message of list) if (!isMessage(message)) return undefined
  return list as JSONRPCMessage[]
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params'])
const RESULT_KEYS = new Set(['jsonrpc', 'id', 'result'])
const ERROR_KEYS = new Set(['jsonrpc', 'id', 'error'])

function isMessage(value: unknown): boolean {
  if (!isObject(value) || value.jsonrpc !== '2.0') return false
  if ('method' in value) {
    if (typeof value.method !== 'string') return false
    if (value.params !== undefined && !isObject(value.params)) return false
    // A notification has no id; a request's id may not be null.
    return onlyKeys(value, REQUEST_KEYS) && (!('id' in value) || isId(value.id))
  }
  if ('result' in value)
    return onlyKeys(value, RESULT_KEYS) && isId(value.id) && isObject(value.result)
  if ('error' in value) {
    const { error } = value
    return (
      onlyKeys(value, ERROR_KEYS) &&
      (value.id === undefined || isId(value.id)) &&
      isObject(error) &&
      Number.isInteger(error.code) &&
      typeof error.message === 'string'
    )
  }
  return false
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isId(value: unknown): value is RequestId {
  return typeof value === 'string' || Number.isInteger(value)
}

function onlyKeys(value: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const key in value) if (!allowed.has(key)) return false
  return true
}

/** Whether `message` is an `initialize` request. */
export function isInitialize(message: JSONRPCMessage): boolean {
  return isRequest(message) && message.method === 'initialize'
}

/**
 * Whether a POST's answer should be a stream: when a request's handler may send the client
 * something before its response — a tool (progress, logging, sampling, elicitation), or any
 * request that asks for progress notifications.
 */
export function wantsStream(messages: readonly JSONRPCMessage[]): boolean {
  return messages.some(
    (message) =>
      isRequest(message) &&
      (message.method === 'tools/call' || message.params?._meta?.progressToken !== undefined),
  )
}

/**
 * REST calls against the broadcast endpoints: small JSON posts, and oversized bodies streamed with a Content-Length or
 * chunked, stopping as soon as the server answers (a correct server answers 413 before reading the body).
 */
import { request } from "node:http"

interface HttpResult {
  readonly status: number | undefined
  readonly body: string
  /** Bytes of the body written before the answer came (or the connection ended). */
  readonly bytesSent: number
  readonly ms: number
  readonly error: string | undefined
}

export const BATCH_PATH = "/realtime/v1/api/broadcast"
export const singlePath = (topic: string, event: string): string =>
  `/realtime/v1/api/broadcast/${encodeURIComponent(topic)}/events/${encodeURIComponent(event)}`

const authHeaders = (key: string | undefined): Record<string, string> =>
  key === undefined ? {} : { apikey: key, authorization: `Bearer ${key}` }

interface PostOptions {
  readonly port: number
  readonly path: string
  readonly headers: Record<string, string>
  /** Body size in bytes; the body is `chunk` repeated (a JSON-looking prefix then padding). */
  readonly bytes: number
  /** true: Transfer-Encoding chunked; false: Content-Length. */
  readonly chunked: boolean
  readonly timeoutMs: number
  /** Literal body; when given, `bytes` is ignored. */
  readonly body?: string
}

/** Posts a body, streamed in 64 KiB pieces with backpressure, and stops writing once the server answers. */
export const post = (options: PostOptions): Promise<HttpResult> =>
  new Promise((resolve) => {
    const started = Date.now()
    const literal = options.body === undefined ? undefined : Buffer.from(options.body)
    const total = literal?.length ?? options.bytes
    const headers: Record<string, string> = { "content-type": "application/json", ...options.headers }
    if (!options.chunked) headers["content-length"] = String(total)
    const req = request({ host: "127.0.0.1", port: options.port, method: "POST", path: options.path, headers })
    let sent = 0
    let answered = false
    let done = false
    let body = ""
    const finish = (status: number | undefined, error: string | undefined): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve({ status, body, bytesSent: sent, ms: Date.now() - started, error })
      req.destroy()
    }
    const timer = setTimeout(() => finish(undefined, `no answer within ${options.timeoutMs} ms`), options.timeoutMs)
    req.on("response", (response) => {
      answered = true
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body = (body + chunk).slice(0, 2000)))
      response.on("end", () => finish(response.statusCode, undefined))
      response.on("error", () => finish(response.statusCode, undefined))
    })
    req.on("error", (error) => finish(undefined, error.message))
    if (literal !== undefined) {
      sent = literal.length
      req.end(literal)
      return
    }
    const piece = Buffer.alloc(64 * 1024, 0x20)
    Buffer.from('{"messages":[{"topic":"big","event":"big","payload":{"p":"').copy(piece)
    const pump = (): void => {
      while (!answered && !done && sent < total) {
        const n = Math.min(piece.length, total - sent)
        sent += n
        if (!req.write(n === piece.length ? piece : piece.subarray(0, n))) {
          req.once("drain", pump)
          return
        }
      }
      if (!answered && !done && sent >= total) req.end()
    }
    pump()
  })

export const postJson = (port: number, path: string, key: string | undefined, body: unknown, timeoutMs = 10_000) =>
  post({
    port,
    path,
    headers: authHeaders(key),
    bytes: 0,
    chunked: false,
    timeoutMs,
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** `wedsync_connection_closed_total{reason="<code>"}` from GET /metrics (0 when absent). */
export const closedTotal = (port: number, code: number): Promise<number> =>
  new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/metrics" }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (text += chunk))
      response.on("end", () => {
        const line = text.split("\n").find((l) =>
          l.startsWith("wedsync_connection_closed_total{") && l.includes(`reason="${code}"`)
        )
        resolve(line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1)))
      })
    })
    req.on("error", () => resolve(Number.NaN))
    req.end()
  })

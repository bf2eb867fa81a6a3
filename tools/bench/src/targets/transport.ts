/**
 * The two ways a bench client can carry WebSocket messages: `lean` (the bench's own frame parser on
 * a raw TCP socket, so the client is not the bottleneck) and `library` (the `ws` package, what an
 * application would use). Protocol sessions sit on top and do not care which one is underneath.
 */
import WebSocket from "ws"
import { openLeanSocket } from "../leanSocket.ts"

export const CLIENT_MODES = ["lean", "library"] as const
export type ClientMode = (typeof CLIENT_MODES)[number]

export interface Transport {
  readonly sendText: (text: string) => void
  readonly sendBinary: (data: Buffer) => void
  readonly close: () => void
}

interface TransportHandlers {
  /** A complete message in `data[start, end)`; only valid during the call. */
  readonly onMessage: (data: Buffer, start: number, end: number, binary: boolean) => void
  /** The connection ended without `close()` being called. */
  readonly onClose: (reason: string) => void
}

export interface Endpoint {
  readonly port: number
  /** Path and query, e.g. `/realtime/v1/websocket?vsn=2.0.0`. */
  readonly path: string
}

const openWs = (endpoint: Endpoint, handlers: TransportHandlers, timeoutMs: number): Promise<Transport> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${endpoint.port}${endpoint.path}`, {
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      skipUTF8Validation: true
    })
    let opened = false
    let closing = false
    ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
      handlers.onMessage(buf, 0, buf.length, isBinary)
    })
    ws.on("error", (error) => {
      if (!opened) reject(error)
    })
    ws.once("close", (code, reason) => {
      if (opened && !closing) handlers.onClose(`socket closed ${code} ${reason.toString()}`)
    })
    ws.once("open", () => {
      opened = true
      resolve({
        sendText: (text) => ws.send(text),
        sendBinary: (data) => ws.send(data),
        close: () => {
          closing = true
          ws.terminate()
        }
      })
    })
  })

export const openTransport = (
  mode: ClientMode,
  endpoint: Endpoint,
  handlers: TransportHandlers,
  timeoutMs: number
): Promise<Transport> =>
  mode === "lean"
    ? openLeanSocket({ host: "127.0.0.1", port: endpoint.port, path: endpoint.path }, handlers, timeoutMs)
    : openWs(endpoint, handlers, timeoutMs)

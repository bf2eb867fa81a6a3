/**
 * A lean `ws` client for protocol-level tests: no supabase-js, no reconnects, no heartbeats unless the test sends them.
 *
 * Text frames arrive JSON-parsed (Phoenix v2 arrays or v1 objects; a frame that is not JSON arrives as its string),
 * binary frames as `Buffer`. Every inbound frame is kept in `received`; `next(predicate)` resolves with the first
 * matching frame not yet consumed, so frames that arrive before the test asks are not lost. `pause()` stops reading
 * the TCP socket, which is how a test plays a slow consumer whose server-side buffer must fill.
 */
import type { Socket } from "node:net"
import WebSocket from "ws"
import { makeInbox } from "./internal/inbox.ts"

/** An inbound frame: parsed JSON for text frames, `Buffer` for binary frames. */
export type Inbound = unknown

/** How the socket closed. */
export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

/** A Phoenix v2 frame: `[join_ref, ref, topic, event, payload]`. */
type V2Frame = readonly [string | null, string | null, string, string, unknown]

/** A Phoenix v1 frame. */
interface V1Frame {
  readonly topic: string
  readonly event: string
  readonly payload: unknown
  readonly ref: string | null
  readonly join_ref?: string | null
}

export interface RawClient {
  /** The underlying socket, for assertions the helpers do not cover. */
  readonly socket: WebSocket
  /** Sends a frame: strings as text, `Uint8Array` as binary, anything else JSON-encoded as text. */
  readonly send: (frame: unknown) => void
  /** Resolves with the first not yet consumed frame matching `predicate` (default: any frame). */
  readonly next: (predicate?: (frame: Inbound) => boolean, timeoutMs?: number) => Promise<Inbound>
  /** Removes and returns the frames nobody has consumed yet. */
  readonly drain: () => Array<Inbound>
  /** Every frame received so far, consumed or not. */
  readonly received: ReadonlyArray<Inbound>
  /** A fresh ref string ("1", "2", ...), per client. */
  readonly makeRef: () => string
  /** Stops reading from the TCP socket (the server's writes then back up). */
  readonly pause: () => void
  /** Starts reading again. */
  readonly resume: () => void
  /** Starts the closing handshake and resolves when the socket has closed. */
  readonly close: (code?: number, reason?: string) => Promise<CloseInfo>
  /** Resolves once the socket has closed, with the close code and reason. Never rejects. */
  readonly closed: Promise<CloseInfo>
}

/** Options for `connect`. */
export interface ConnectOptions {
  /** Handshake timeout. Default 5000 ms. */
  readonly timeoutMs?: number | undefined
  /** Extra HTTP headers on the upgrade request. */
  readonly headers?: Record<string, string> | undefined
  /** Per-message deflate; off by default so frame sizes on the wire are what the test sent. */
  readonly perMessageDeflate?: boolean | undefined
}

const decode = (data: WebSocket.RawData, isBinary: boolean): Inbound => {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
  if (isBinary) return buffer
  const text = buffer.toString("utf8")
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** Opens a WebSocket and resolves once it is open; rejects with the handshake error (e.g. HTTP 401) otherwise. */
export const connect = (url: string, options: ConnectOptions = {}): Promise<RawClient> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      handshakeTimeout: options.timeoutMs ?? 5000,
      perMessageDeflate: options.perMessageDeflate ?? false,
      ...(options.headers === undefined ? {} : { headers: options.headers })
    })
    const inbox = makeInbox<Inbound>()
    let refs = 0
    let resolveClosed: (info: CloseInfo) => void = () => {}
    const closed = new Promise<CloseInfo>((r) => (resolveClosed = r))
    socket.on("message", (data, isBinary) => inbox.push(decode(data, isBinary)))
    socket.on("close", (code, reason) => {
      const info = { code, reason: reason.toString("utf8") }
      inbox.fail(new Error(`socket closed (code ${info.code}${info.reason ? `, reason ${info.reason}` : ""})`))
      resolveClosed(info)
    })
    // After open, errors are followed by "close", which settles everything; before open they fail the connect.
    socket.on("error", (error) => reject(error))
    socket.on("unexpected-response", (_request, response) => {
      reject(new Error(`WebSocket upgrade to ${url} refused: HTTP ${response.statusCode}`))
      socket.terminate()
    })
    const tcp = (): Socket => (socket as unknown as { _socket: Socket })._socket
    socket.once("open", () =>
      resolve({
        socket,
        send: (frame) => {
          if (typeof frame === "string") socket.send(frame)
          else if (frame instanceof Uint8Array) socket.send(frame, { binary: true })
          else socket.send(JSON.stringify(frame))
        },
        next: (predicate = () => true, timeoutMs = 5000) =>
          inbox.next(predicate, timeoutMs, `a frame matching ${predicate.name || predicate.toString()}`),
        drain: inbox.drain,
        received: inbox.received,
        makeRef: () => String(++refs),
        pause: () => void tcp().pause(),
        resume: () => void tcp().resume(),
        close: (code = 1000, reason = "") => {
          if (socket.readyState === WebSocket.OPEN) socket.close(code, reason)
          return closed
        },
        closed
      }))
  })

/** Builds a Phoenix v2 frame. */
export const v2 = (
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payload: unknown
): V2Frame => [joinRef, ref, topic, event, payload]

/** Builds a Phoenix v1 frame. */
export const v1 = (
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payload: unknown
): V1Frame => ({ topic, event, payload, ref, join_ref: joinRef })

/** Matches a `phx_reply` (v1 or v2) to the push with the given ref. */
export const isReplyTo = (ref: string) => (frame: Inbound): boolean => {
  if (Array.isArray(frame)) return frame[3] === "phx_reply" && frame[1] === ref
  const o = frame as Partial<V1Frame> | null
  return typeof o === "object" && o !== null && o.event === "phx_reply" && o.ref === ref
}

/** Matches a text frame (v1 or v2) with the given event, and topic if given. */
export const isEvent = (event: string, topic?: string) => (frame: Inbound): boolean => {
  if (Array.isArray(frame)) return frame[3] === event && (topic === undefined || frame[2] === topic)
  const o = frame as Partial<V1Frame> | null
  return typeof o === "object" && o !== null && !Buffer.isBuffer(o) && o.event === event &&
    (topic === undefined || o.topic === topic)
}

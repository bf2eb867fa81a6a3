/**
 * A lean protocol client on `ws` for the attacker and the probes: frames in (v1 objects, v2 arrays, binary as Buffer),
 * an inbox whose `next(predicate)` awaits the first unconsumed match with a timeout, the close code, and `pause()` to
 * stop reading the TCP socket (a slow reader). Never throws for a refused upgrade: `tryConnect` returns the status.
 */
import type { Socket } from "node:net"
import WebSocket from "ws"

export type Vsn = "1.0.0" | "2.0.0"
export type Inbound = unknown

export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

export interface Client {
  readonly vsn: Vsn
  readonly socket: WebSocket
  readonly send: (frame: unknown) => void
  /** Sends a Phoenix message in this client's serializer. */
  readonly push: (joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown) => void
  readonly next: (predicate: (frame: Inbound) => boolean, timeoutMs: number) => Promise<Inbound | undefined>
  readonly received: () => ReadonlyArray<Inbound>
  readonly makeRef: () => string
  readonly pause: () => void
  readonly resume: () => void
  readonly isOpen: () => boolean
  readonly closeInfo: () => CloseInfo | undefined
  /** Resolves with the close, or undefined after `timeoutMs`. */
  readonly waitClosed: (timeoutMs: number) => Promise<CloseInfo | undefined>
  readonly close: () => Promise<void>
}

type ConnectResult =
  | { readonly ok: true; readonly client: Client }
  | { readonly ok: false; readonly status: number | undefined; readonly body: string; readonly error: string }

export interface ConnectOptions {
  readonly vsn?: Vsn
  readonly headers?: Record<string, string>
  readonly timeoutMs?: number
  /** Keep at most this many received frames (oldest dropped). Default 10,000. */
  readonly keep?: number
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

/** `ws://…/realtime/v1/websocket?apikey=…&vsn=…` */
const socketUrl = (wsUrl: string, apikey: string | undefined, vsn: Vsn): string =>
  `${wsUrl}?${apikey === undefined ? "" : `apikey=${encodeURIComponent(apikey)}&`}vsn=${vsn}`

export const tryConnect = (
  wsUrl: string,
  apikey: string | undefined,
  options: ConnectOptions = {}
): Promise<ConnectResult> =>
  new Promise((resolve) => {
    const vsn = options.vsn ?? "2.0.0"
    const keep = options.keep ?? 10_000
    const socket = new WebSocket(socketUrl(wsUrl, apikey, vsn), {
      handshakeTimeout: options.timeoutMs ?? 10_000,
      perMessageDeflate: false,
      ...(options.headers === undefined ? {} : { headers: options.headers })
    })
    let settled = false
    const settle = (result: ConnectResult): void => {
      if (settled) return
      settled = true
      resolve(result)
    }
    const received: Array<Inbound> = []
    const waiters = new Set<
      { readonly predicate: (f: Inbound) => boolean; readonly resolve: (f: Inbound | undefined) => void }
    >()
    // Frames handed out by `next` (text that is not JSON arrives as a string and cannot be marked: it matches again).
    const consumed = new WeakSet<object>()
    let closeInfo: CloseInfo | undefined
    const closeWaiters = new Set<(info: CloseInfo) => void>()
    let refs = 0
    socket.on("message", (data, isBinary) => {
      const frame = decode(data, isBinary)
      for (const waiter of waiters) {
        if (waiter.predicate(frame)) {
          waiters.delete(waiter)
          if (typeof frame === "object" && frame !== null) consumed.add(frame)
          waiter.resolve(frame)
          break
        }
      }
      received.push(frame)
      if (received.length > keep) received.shift()
    })
    socket.on("close", (code, reason) => {
      closeInfo = { code, reason: reason.toString("utf8") }
      for (const waiter of closeWaiters) waiter(closeInfo)
      closeWaiters.clear()
      for (const waiter of waiters) waiter.resolve(undefined)
      waiters.clear()
    })
    socket.on("error", (error) => settle({ ok: false, status: undefined, body: "", error: error.message }))
    socket.on("unexpected-response", (_request, response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk.slice(0, 1000)))
      const refused = () =>
        settle({ ok: false, status: response.statusCode, body, error: `HTTP ${response.statusCode}` })
      response.on("end", refused)
      response.on("error", refused)
      setTimeout(() => socket.terminate(), 1000).unref()
    })
    const tcp = (): Socket | undefined => (socket as unknown as { _socket: Socket | undefined })._socket
    socket.once("open", () => {
      const send = (frame: unknown): void => {
        if (socket.readyState !== WebSocket.OPEN) return
        if (typeof frame === "string") socket.send(frame)
        else if (frame instanceof Uint8Array) socket.send(frame, { binary: true })
        else socket.send(JSON.stringify(frame))
      }
      const client: Client = {
        vsn,
        socket,
        send,
        push: (joinRef, ref, topic, event, payload) =>
          send(
            vsn === "2.0.0" ? [joinRef, ref, topic, event, payload] : { join_ref: joinRef, ref, topic, event, payload }
          ),
        next: (predicate, timeoutMs) => {
          for (const frame of received) {
            const isObject = typeof frame === "object" && frame !== null
            if (isObject && consumed.has(frame)) continue
            if (predicate(frame)) {
              if (isObject) consumed.add(frame)
              return Promise.resolve(frame)
            }
          }
          if (closeInfo !== undefined) return Promise.resolve(undefined)
          return new Promise((resolveNext) => {
            const waiter = {
              predicate,
              resolve: (f: Inbound | undefined) => {
                clearTimeout(timer)
                resolveNext(f)
              }
            }
            const timer = setTimeout(() => {
              waiters.delete(waiter)
              resolveNext(undefined)
            }, timeoutMs)
            waiters.add(waiter)
          })
        },
        received: () => received,
        makeRef: () => String(++refs),
        pause: () => void tcp()?.pause(),
        resume: () => void tcp()?.resume(),
        isOpen: () => socket.readyState === WebSocket.OPEN,
        closeInfo: () => closeInfo,
        waitClosed: (timeoutMs) =>
          closeInfo !== undefined
            ? Promise.resolve(closeInfo)
            : new Promise((resolveClose) => {
              const timer = setTimeout(() => {
                closeWaiters.delete(onClose)
                resolveClose(undefined)
              }, timeoutMs)
              const onClose = (info: CloseInfo) => {
                clearTimeout(timer)
                resolveClose(info)
              }
              closeWaiters.add(onClose)
            }),
        close: async () => {
          if (closeInfo !== undefined) return
          tcp()?.resume()
          if (socket.readyState === WebSocket.OPEN) socket.close(1000)
          const info = await client.waitClosed(2000)
          if (info === undefined) socket.terminate()
        }
      }
      settle({ ok: true, client })
    })
  })

/** `tryConnect`, failing loudly: for the probes that must get in. */
export const connect = async (
  wsUrl: string,
  apikey: string | undefined,
  options: ConnectOptions = {}
): Promise<Client> => {
  const result = await tryConnect(wsUrl, apikey, options)
  if (!result.ok) throw new Error(`connect refused: ${result.error} ${result.body}`)
  return result.client
}

// --- Frame predicates (v1 objects and v2 arrays alike) -----------------------------------------------------------

export interface Parsed {
  readonly joinRef: unknown
  readonly ref: unknown
  readonly topic: unknown
  readonly event: unknown
  readonly payload: unknown
}

export const parse = (frame: Inbound): Parsed | undefined => {
  if (Array.isArray(frame))
    return { joinRef: frame[0], ref: frame[1], topic: frame[2], event: frame[3], payload: frame[4] }
  if (typeof frame === "object" && frame !== null && !Buffer.isBuffer(frame)) {
    const o = frame as Record<string, unknown>
    return { joinRef: o["join_ref"], ref: o["ref"], topic: o["topic"], event: o["event"], payload: o["payload"] }
  }
  return undefined
}

export const isReplyTo = (ref: string) => (frame: Inbound): boolean => {
  const p = parse(frame)
  return p !== undefined && p.event === "phx_reply" && p.ref === ref
}

export const isEvent = (event: string, topic?: string) => (frame: Inbound): boolean => {
  const p = parse(frame)
  return p !== undefined && p.event === event && (topic === undefined || p.topic === topic)
}

/** `status` of a phx_reply (`ok` / `error`), or undefined. */
export const replyStatus = (frame: Inbound | undefined): string | undefined => {
  const payload = frame === undefined ? undefined : parse(frame)?.payload
  return typeof payload === "object" && payload !== null
    ? String((payload as Record<string, unknown>)["status"])
    : undefined
}

/** The reply's response as text, for reports. */
export const replyText = (frame: Inbound | undefined): string => {
  const payload = frame === undefined ? undefined : parse(frame)?.payload
  if (typeof payload !== "object" || payload === null) return String(payload)
  return JSON.stringify((payload as Record<string, unknown>)["response"]).slice(0, 200)
}

/** A shutdown for `topic`: a system error or a phx_close. */
export const isShutdownOf = (topic: string) => (frame: Inbound): boolean => {
  const p = parse(frame)
  if (p === undefined || p.topic !== topic) return false
  if (p.event === "phx_close") return true
  if (p.event !== "system") return false
  const payload = p.payload as Record<string, unknown> | null
  return typeof payload === "object" && payload !== null && payload["status"] === "error"
}

export const joinPayload = (options: {
  readonly presenceKey?: string
  readonly private?: boolean
  readonly accessToken?: string
  readonly postgresChanges?: ReadonlyArray<Record<string, unknown>>
  readonly self?: boolean
  readonly ack?: boolean
} = {}): Record<string, unknown> => ({
  config: {
    broadcast: { ack: options.ack ?? false, self: options.self ?? false },
    presence: { key: options.presenceKey ?? "", enabled: options.presenceKey !== undefined },
    postgres_changes: options.postgresChanges ?? [],
    private: options.private ?? false
  },
  ...(options.accessToken === undefined ? {} : { access_token: options.accessToken })
})

/** Joins `topic` and returns the reply (undefined on timeout or close). */
export const join = async (
  client: Client,
  topic: string,
  payload: Record<string, unknown>,
  timeoutMs: number
): Promise<{ readonly joinRef: string; readonly reply: Inbound | undefined }> => {
  const ref = client.makeRef()
  client.push(ref, ref, topic, "phx_join", payload)
  return { joinRef: ref, reply: await client.next(isReplyTo(ref), timeoutMs) }
}

/** A heartbeat round trip: the reply, or undefined. */
export const heartbeat = (client: Client, timeoutMs: number): Promise<Inbound | undefined> => {
  const ref = client.makeRef()
  client.push(null, ref, "phoenix", "heartbeat", {})
  return client.next(isReplyTo(ref), timeoutMs)
}

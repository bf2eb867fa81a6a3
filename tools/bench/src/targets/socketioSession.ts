/**
 * Socket.IO 4 clients for the bench: `library` is the official socket.io-client (one Manager per
 * connection, websocket transport), `lean` speaks Engine.IO 4 / Socket.IO 5 packets directly over
 * the bench's lean WebSocket so that the client is no heavier than the one used for the gateway.
 */
import { io, type Socket } from "socket.io-client"
import type { BenchMessage, ClientToServerEvents, ServerToClientEvents } from "../servers/socketioEvents.ts"
import { nowMs, readStamp, type Stamp, stampFromJson, stampPayload } from "../wire.ts"
import { type Connection, type ConnectionEvents, orderedDelivery } from "./Target.ts"
import { type ClientMode, openTransport } from "./transport.ts"

const stamp: Stamp = { t: 0, s: 0 }

const connectLibrary = (port: number, events: ConnectionEvents, timeoutMs: number): Promise<Connection> =>
  new Promise((resolve, reject) => {
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(`http://127.0.0.1:${port}`, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: timeoutMs
    })
    let opened = false
    let closing = false
    const deliver = orderedDelivery(events)
    socket.on("msg", (message) => deliver(message.t, message.s))
    socket.once("connect_error", (error) => {
      if (!opened) reject(error)
    })
    socket.on("disconnect", (reason) => {
      if (opened && !closing) events.onUnexpectedClose(`disconnect: ${reason}`)
    })
    socket.once("connect", () => {
      opened = true
      resolve({
        join: async () => {
          await socket.timeout(timeoutMs).emitWithAck("join")
        },
        publish: (seq, payloadBytes) => {
          const message: BenchMessage = { t: nowMs(), s: seq, p: "" }
          const pad = payloadBytes - JSON.stringify(message).length
          socket.emit("pub", pad > 0 ? { ...message, p: "x".repeat(pad) } : message)
        },
        heartbeat: () => undefined,
        close: () => {
          closing = true
          socket.disconnect()
        }
      })
    })
  })

// Engine.IO packet types: 0 open, 2 ping, 3 pong, 4 message. Socket.IO: 0 connect, 2 event, 3 ack.
const MSG_PREFIX = Buffer.from('42["msg",')
const JOIN_ACK_ID = 1

const startsWith = (data: Buffer, start: number, end: number, prefix: Buffer): boolean =>
  end - start >= prefix.length && data.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0

const connectLean = (port: number, events: ConnectionEvents, timeoutMs: number): Promise<Connection> =>
  new Promise((resolve, reject) => {
    let connected = false
    const deliver = orderedDelivery(events)
    let pendingJoin: { readonly resolve: () => void; readonly reject: (e: Error) => void } | undefined
    const timer = setTimeout(() => reject(new Error(`no Socket.IO connect within ${timeoutMs} ms`)), timeoutMs)

    const onText = (text: string): void => {
      if (text === "2") return transport?.sendText("3")
      if (text.startsWith("0")) return transport?.sendText("40")
      if (text.startsWith("40") && !connected) {
        connected = true
        clearTimeout(timer)
        return resolve(connection)
      }
      if (text.startsWith(`43${JOIN_ACK_ID}`)) {
        pendingJoin?.resolve()
        pendingJoin = undefined
        return
      }
      if (text.startsWith("44")) {
        const error = new Error(`Socket.IO connect error: ${text.slice(2)}`)
        if (!connected) reject(error)
        pendingJoin?.reject(error)
        return
      }
      if (text.startsWith('42["msg",') && stampFromJson(text.slice(9, -1), stamp)) deliver(stamp.t, stamp.s)
    }

    let transport: Awaited<ReturnType<typeof openTransport>> | undefined
    const connection: Connection = {
      join: () =>
        new Promise<void>((resolveJoin, rejectJoin) => {
          const joinTimer = setTimeout(() => rejectJoin(new Error(`no join ack within ${timeoutMs} ms`)), timeoutMs)
          pendingJoin = {
            resolve: () => {
              clearTimeout(joinTimer)
              resolveJoin()
            },
            reject: (error) => {
              clearTimeout(joinTimer)
              rejectJoin(error)
            }
          }
          transport?.sendText(`42${JOIN_ACK_ID}["join"]`)
        }),
      publish: (seq, payloadBytes) => transport?.sendText(`42["pub",${stampPayload(nowMs(), seq, payloadBytes)}]`),
      heartbeat: () => undefined,
      close: () => transport?.close()
    }

    openTransport(
      "lean",
      { port, path: "/socket.io/?EIO=4&transport=websocket" },
      {
        onMessage: (data, start, end) => {
          if (startsWith(data, start, end, MSG_PREFIX)) {
            if (readStamp(data, start + MSG_PREFIX.length, end - 1, stamp)) deliver(stamp.t, stamp.s)
            return
          }
          onText(data.toString("utf8", start, end))
        },
        onClose: (reason) => {
          pendingJoin?.reject(new Error(`closed during join: ${reason}`))
          pendingJoin = undefined
          if (connected) events.onUnexpectedClose(reason)
          else reject(new Error(`closed before Socket.IO connect: ${reason}`))
        }
      },
      timeoutMs
    ).then(
      (opened) => {
        transport = opened
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

export const connectSocketIo = (
  mode: ClientMode,
  port: number,
  events: ConnectionEvents,
  timeoutMs: number
): Promise<
  Connection
> => (mode === "lean" ? connectLean(port, events, timeoutMs) : connectLibrary(port, events, timeoutMs))

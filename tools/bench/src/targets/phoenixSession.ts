/**
 * Supabase Realtime vsn 2.0.0 as realtime-js speaks it for a broadcast-only channel: text join,
 * text heartbeats, kind-3 binary pushes out, kind-4 binary broadcasts in. Shared by the gateway and
 * the bare `ws` relay targets so both are measured by identical client code.
 */
import {
  decodeText,
  encodeKind3,
  heartbeatFrame,
  joinFrame,
  kind4PayloadOffset,
  nowMs,
  readStamp,
  replyStatus,
  type Stamp,
  stampFromValue,
  stampPayload,
  TOPIC,
  USER_EVENT
} from "../wire.ts"
import { type Connection, type ConnectionEvents, orderedDelivery } from "./Target.ts"
import { type ClientMode, type Endpoint, openTransport } from "./transport.ts"

// One slot for all connections: deliveries are handled synchronously, one at a time.
const stamp: Stamp = { t: 0, s: 0 }

interface PendingJoin {
  readonly ref: string
  readonly resolve: () => void
  readonly reject: (error: Error) => void
}

export const connectPhoenix = async (
  mode: ClientMode,
  endpoint: Endpoint,
  events: ConnectionEvents,
  timeoutMs: number
): Promise<Connection> => {
  let ref = 0
  let joinRef = ""
  let pendingJoin: PendingJoin | undefined
  const deliver = orderedDelivery(events)

  const onText = (text: string): void => {
    const message = decodeText(text)
    if (message === undefined) return
    if (message.event === "phx_reply" && pendingJoin !== undefined && message.ref === pendingJoin.ref) {
      const status = replyStatus(message.payload)
      const join = pendingJoin
      pendingJoin = undefined
      if (status?.ok === true) join.resolve()
      else join.reject(new Error(`join refused: ${status?.detail ?? JSON.stringify(message.payload)}`))
    } else if (message.event === "broadcast" && stampFromValue(message.payload, stamp)) {
      deliver(stamp.t, stamp.s)
    } else if ((message.event === "phx_close" || message.event === "phx_error") && message.topic === TOPIC) {
      events.onUnexpectedClose(`channel ${message.event}`)
    }
  }

  const transport = await openTransport(
    mode,
    endpoint,
    {
      onMessage: (data, start, end, binary) => {
        if (!binary) return onText(data.toString("utf8", start, end))
        const offset = kind4PayloadOffset(data, start, end)
        if (offset >= 0 && readStamp(data, offset, end, stamp)) deliver(stamp.t, stamp.s)
      },
      onClose: (reason) => {
        pendingJoin?.reject(new Error(`closed during join: ${reason}`))
        pendingJoin = undefined
        events.onUnexpectedClose(reason)
      }
    },
    timeoutMs
  )

  return {
    join: () =>
      new Promise<void>((resolve, reject) => {
        joinRef = String(++ref)
        const timer = setTimeout(() => {
          pendingJoin = undefined
          reject(new Error(`no join reply within ${timeoutMs} ms`))
        }, timeoutMs)
        pendingJoin = {
          ref: joinRef,
          resolve: () => {
            clearTimeout(timer)
            resolve()
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          }
        }
        transport.sendText(joinFrame(joinRef))
      }),
    publish: (seq, payloadBytes) => {
      const payload = stampPayload(nowMs(), seq, payloadBytes)
      transport.sendBinary(encodeKind3(joinRef, String(++ref), TOPIC, USER_EVENT, payload))
    },
    heartbeat: () => transport.sendText(heartbeatFrame(String(++ref))),
    close: transport.close
  }
}

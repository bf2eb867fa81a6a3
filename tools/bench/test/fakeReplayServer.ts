/**
 * A stand-in for a gateway that replays, in the test process, so the replay bench's client side can be checked end to
 * end before the gateway's history lands: it answers joins and heartbeats, gives every kind-3 push a UUIDv7 id, keeps
 * each topic's history, relays live as kind 4 with `meta.id`, and on a join with `config.broadcast.replay` sends the
 * history since `since` (inclusive, at most `limit`) as kind 4 with `meta: {replayed: true, id}` before anything live.
 * `replays: false` accepts and ignores `replay`, like a gateway without history. `retain: n` keeps the last n messages
 * per topic; a replay that reaches past them then gets a `system` message saying so when `announce` is set.
 * `refuseReplay` answers a join with `replay` with Supabase's `UnableToReplayMessages` error.
 */
import { randomBytes } from "node:crypto"
import { WebSocket, WebSocketServer } from "ws"
import type { ServerHandle } from "../src/serverProcess.ts"

interface Entry {
  readonly id: string
  readonly ms: number
  readonly event: string
  readonly payload: Buffer
}

const uuidV7 = (ms: number): string => {
  const hex = ms.toString(16).padStart(12, "0") + randomBytes(10).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}

const kind4 = (topic: string, event: string, meta: string, payload: Buffer): Buffer => {
  const head = Buffer.from([4, Buffer.byteLength(topic), Buffer.byteLength(event), Buffer.byteLength(meta), 1])
  return Buffer.concat([head, Buffer.from(topic + event + meta), payload])
}

const replayOf = (config: unknown): { readonly since: number; readonly limit: number } | undefined => {
  if (typeof config !== "object" || config === null || !("broadcast" in config)) return undefined
  const broadcast = config.broadcast
  if (typeof broadcast !== "object" || broadcast === null || !("replay" in broadcast)) return undefined
  const replay = broadcast.replay
  if (typeof replay !== "object" || replay === null || !("since" in replay) || !("limit" in replay)) return undefined
  return typeof replay.since === "number" && typeof replay.limit === "number"
    ? { since: replay.since, limit: replay.limit }
    : undefined
}

export const startFakeReplayServer = (
  port: number,
  options: {
    readonly replays: boolean
    readonly retain?: number
    readonly announce?: boolean
    readonly refuseReplay?: boolean
  }
): Promise<ServerHandle> =>
  new Promise((resolve) => {
    const history = new Map<string, Array<Entry>>()
    /** Per topic, the time of the newest message dropped from the history. */
    const droppedUpTo = new Map<string, number>()
    const members = new Map<string, Set<WebSocket>>()
    const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false })
    server.on("connection", (ws) => {
      ws.on("message", (data, isBinary) => {
        if (!Buffer.isBuffer(data)) return
        if (isBinary) {
          // 03 J R T E M enc | join_ref | ref | topic | event | meta | payload
          let o = 7 + data[1]! + data[2]!
          const topic = data.toString("utf8", o, o += data[3]!)
          const event = data.toString("utf8", o, o += data[4]!)
          o += data[5]!
          const ms = Date.now()
          const entry = { id: uuidV7(ms), ms, event, payload: Buffer.from(data.subarray(o)) }
          const log = history.get(topic) ?? []
          log.push(entry)
          history.set(topic, log)
          if (options.retain !== undefined && log.length > options.retain) droppedUpTo.set(topic, log.shift()!.ms)
          const frame = kind4(topic, event, JSON.stringify({ id: entry.id }), entry.payload)
          for (const peer of members.get(topic) ?? [])
            if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(frame)
          return
        }
        const message: unknown = JSON.parse(data.toString("utf8"))
        if (!Array.isArray(message)) return
        const [joinRef, ref, topic, event, payload]: ReadonlyArray<unknown> = message
        if (typeof topic !== "string") return
        const config = typeof payload === "object" && payload !== null && "config" in payload
          ? payload.config
          : undefined
        if (event === "phx_join" && options.refuseReplay === true && replayOf(config) !== undefined) {
          const reason = "UnableToReplayMessages: Replay params are not valid"
          ws.send(JSON.stringify([joinRef, ref, topic, "phx_reply", { status: "error", response: { reason } }]))
          return
        }
        ws.send(JSON.stringify([joinRef, ref, topic, "phx_reply", { status: "ok", response: {} }]))
        if (event !== "phx_join") return
        const replay = options.replays ? replayOf(config) : undefined
        if (replay !== undefined) {
          const dropped = droppedUpTo.get(topic)
          if (options.announce === true && dropped !== undefined && dropped >= replay.since) {
            const notice = { status: "error", message: "Replay incomplete: older messages are past retention" }
            ws.send(JSON.stringify([null, null, topic, "system", { ...notice, extension: "system", channel: topic }]))
          }
          for (const entry of (history.get(topic) ?? []).filter((e) => e.ms >= replay.since).slice(0, replay.limit)) {
            ws.send(kind4(topic, entry.event, JSON.stringify({ replayed: true, id: entry.id }), entry.payload))
          }
        }
        const set = members.get(topic) ?? new Set()
        set.add(ws)
        members.set(topic, set)
        ws.once("close", () => set.delete(ws))
      })
    })
    server.on("listening", () =>
      resolve({
        pid: process.pid,
        port,
        logTail: () => "",
        exitStatus: () => undefined,
        stop: () =>
          new Promise((done) => {
            for (const ws of server.clients) ws.terminate()
            server.close(() => done())
          })
      }))
  })

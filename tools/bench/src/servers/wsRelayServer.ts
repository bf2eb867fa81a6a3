/**
 * The "bare ws relay" reference: a `ws` 8 server that accepts the gateway's client, answers the first
 * text frame (the join) and heartbeats with an ok reply, and relays every kind-3 push as a kind-4
 * frame to every other joined socket with a plain `ws.send` per client. No auth, no channels, no
 * pre-framing: the practical ceiling of a naive Node relay.
 */
import { WebSocket, WebSocketServer } from "ws"
import { kind3ToKind4 } from "../wire.ts"

const host = process.env["HOST"] ?? "127.0.0.1"
const port = Number(process.env["PORT"] ?? "4100")

const joined = new Set<WebSocket>()

const reply = (ws: WebSocket, text: string): void => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return
  }
  if (!Array.isArray(parsed)) return
  const [joinRef, ref, topic] = parsed as ReadonlyArray<unknown>
  ws.send(
    JSON.stringify([joinRef ?? null, ref ?? null, topic ?? null, "phx_reply", {
      status: "ok",
      response: { postgres_changes: [] }
    }])
  )
}

const server = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: false })

server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (!Buffer.isBuffer(data)) return
    if (!isBinary) {
      joined.add(ws)
      reply(ws, data.toString("utf8"))
      return
    }
    const out = kind3ToKind4(data)
    if (out === undefined) return
    for (const peer of joined) if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(out)
  })
  ws.on("close", () => joined.delete(ws))
  ws.on("error", () => joined.delete(ws))
})

server.on("listening", () => console.log(`ws-relay listening on http://${host}:${port}`))

const shutdown = (): void => {
  for (const ws of joined) ws.terminate()
  server.close(() => process.exit(0))
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)

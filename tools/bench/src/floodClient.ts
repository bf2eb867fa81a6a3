/**
 * The connection flood of the admission benchmark, in a process of its own: opening and refusing a thousand sockets a
 * second is real work, and done in the measuring process it would delay the measured clients' receive loop and be
 * counted as gateway latency. Started with IPC (`fork`): argv is `<host> <port> <path> <perSecond> <topics>`;
 * it opens `perSecond` WebSockets a second, evenly paced, and each admitted one joins a topic (round-robin) and
 * stays. On the parent's `"stop"` it answers the count of each answer (`101`, `503`, …) and exits.
 */
import { openLeanSocket, type LeanSocket } from "./leanSocket.ts"
import { heartbeatFrame } from "./wire.ts"

export interface FloodReport {
  readonly answers: Readonly<Record<string, number>>
}

const [host = "127.0.0.1", portText = "0", path = "/", rateText = "1000", topicsText = "1"] = process.argv.slice(2)
const port = Number(portText)
const perSecond = Number(rateText)
const topics = Number(topicsText)

const answers: Record<string, number> = {}
const count = (answer: string) => void (answers[answer] = (answers[answer] ?? 0) + 1)
const admitted: Array<LeanSocket> = []
const handlers = { onMessage: () => undefined, onClose: () => undefined }
const joinFrame = (topic: string) =>
  JSON.stringify(["1", "1", topic, "phx_join", {
    config: { broadcast: { ack: false, self: false }, presence: { enabled: false }, private: false }
  }])

let attempts = 0
const attempt = () => {
  const topic = `realtime:adm-${attempts++ % topics}`
  openLeanSocket({ host, port, path }, handlers, 10_000).then(
    (socket) => {
      count("101")
      admitted.push(socket)
      socket.sendText(joinFrame(topic))
    },
    (error: unknown) => count(/upgrade refused: HTTP\/1\.1 (\d{3})/.exec(String(error))?.[1] ?? "no answer")
  )
}

const started = performance.now()
// A 1 ms pacing tick: a 10 ms one would send the flood in bursts of ten, which is a different (burstier) load.
const timer = setInterval(() => {
  const due = Math.floor(((performance.now() - started) * perSecond) / 1000)
  while (attempts < due) attempt()
}, 1)
// realtime-js heartbeats every 25 s: the admitted sockets send theirs, spread over 100 ms ticks.
let cursor = 0
const heartbeat = setInterval(() => {
  const perTick = Math.ceil(admitted.length / 250)
  for (let k = 0; k < perTick; k++) {
    const socket = admitted[cursor++ % admitted.length]
    if (socket?.isOpen()) socket.sendText(heartbeatFrame(String(cursor)))
  }
}, 100)

process.on("message", (message) => {
  if (message !== "stop") return
  clearInterval(timer)
  clearInterval(heartbeat)
  const report: FloodReport = { answers }
  process.send?.(report, () => {
    for (const socket of admitted) socket.close()
    process.exit(0)
  })
})
process.on("disconnect", () => process.exit(0))

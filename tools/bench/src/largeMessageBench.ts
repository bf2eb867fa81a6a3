/**
 * What one large broadcast costs the gateway: a sender on a 2.0.0 socket broadcasts N messages of a given size (a
 * JSON text push, as realtime-js and the attack suite send it) one at a time to two receivers (2.0.0 and 1.0.0, so
 * both serializer versions are encoded), and the bench reports the gateway's CPU time per message (from /proc, so
 * parse, check, encode, write and the collector's share all count) and the end-to-end time per message. Every ms of
 * that CPU is a ms other sockets' deliveries wait on the one event loop.
 *
 * Run: `npm run bench:large -w @wedsync/tools [-- --bytes 2900000 --messages 20 --gateway-ref <ref>]`.
 */
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import WebSocket from "ws"
import { numberOption } from "./cliOptions.ts"
import { type GatewaySource, gatewaySource } from "./gatewaySource.ts"
import { CpuMeter } from "./proc.ts"
import { killAllServers, sleep } from "./serverProcess.ts"
import { percentile } from "./stats.ts"
import { anonToken, startGateway } from "./targets/gateway.ts"

export interface LargeMessageOptions {
  readonly bytes: number
  readonly messages: number
  readonly gatewayRef: string | undefined
}

export const parseLargeMessageOptions = (argv: ReadonlyArray<string>): LargeMessageOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      bytes: { type: "string", default: "2900000" },
      messages: { type: "string", default: "20" },
      "gateway-ref": { type: "string" }
    }
  })
  return {
    bytes: numberOption(values, "bytes", 1, true),
    messages: numberOption(values, "messages", 1, true),
    gatewayRef: values["gateway-ref"]
  }
}

const TOPIC = "realtime:large"
const JOIN_CONFIG = { config: { broadcast: { self: false, ack: true }, presence: { enabled: false }, private: false } }

const open = (url: string): Promise<WebSocket> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
    socket.once("open", () => resolve(socket))
    socket.once("error", reject)
  })

/** The next frame on `socket` that `accept` takes (a reply, a broadcast of at least some size). */
const next = (socket: WebSocket, accept: (data: Buffer) => boolean): Promise<void> =>
  new Promise((resolve) => {
    const onMessage = (data: Buffer) => {
      if (!accept(data)) return
      socket.off("message", onMessage)
      resolve()
    }
    socket.on("message", onMessage)
  })

const isReply = (data: Buffer) => data.length < 10_000 && data.toString().includes("phx_reply")

const run = async (options: LargeMessageOptions, source: GatewaySource) => {
  const server = await startGateway(source)
  const key = await anonToken()
  const url = (vsn: string) => `ws://127.0.0.1:${server.port}/realtime/v1/websocket?apikey=${key}&vsn=${vsn}`
  try {
    const sender = await open(url("2.0.0"))
    const v2 = await open(url("2.0.0"))
    const v1 = await open(url("1.0.0"))
    for (
      const [socket, frame] of [
        [sender, JSON.stringify(["1", "1", TOPIC, "phx_join", JOIN_CONFIG])],
        [v2, JSON.stringify(["1", "1", TOPIC, "phx_join", JOIN_CONFIG])],
        [v1, JSON.stringify({ topic: TOPIC, event: "phx_join", payload: JOIN_CONFIG, ref: "1", join_ref: "1" })]
      ] as const
    ) {
      const joined = next(socket, isReply)
      socket.send(frame)
      await joined
    }
    const filler = "y".repeat(options.bytes)
    const large = (data: Buffer) => data.length >= options.bytes
    const cpu = new CpuMeter(server.pid)
    const wall: Array<number> = []
    // Over the whole sequence, pauses included, so the collector's work after each delivery counts too (an idle
    // gateway adds well under 1% of a core to it).
    cpu.start()
    for (let i = 0; i < options.messages; i++) {
      // Built before the clock starts: the bench's own stringify is not the gateway's cost.
      const frame = JSON.stringify(["1", String(i + 2), TOPIC, "broadcast", {
        type: "broadcast",
        event: "large",
        payload: { i, filler }
      }])
      const delivered = Promise.all([next(v2, large), next(v1, large), next(sender, isReply)])
      const started = performance.now()
      sender.send(frame)
      await delivered
      wall.push(performance.now() - started)
      // Let the collector's share of this message land before the next one starts.
      await sleep(100)
    }
    const cpuSeconds = cpu.seconds()
    for (const socket of [sender, v2, v1]) socket.close()
    return { cpuMsPerMessage: (cpuSeconds * 1000) / options.messages, wall }
  } finally {
    await server.stop()
  }
}

const main = async () => {
  const options = parseLargeMessageOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const source = gatewaySource(repoRoot, options.gatewayRef)
  console.log(
    `large message: ${options.messages} broadcasts of ${options.bytes} bytes to a 2.0.0 and a 1.0.0 receiver, ` +
      `gateway from the ${source.description}`
  )
  const { cpuMsPerMessage, wall } = await run(options, source)
  const sorted = [...wall].sort((a, b) => a - b)
  console.log(
    `large message: gateway CPU ${cpuMsPerMessage.toFixed(1)} ms per message; end to end median ${
      percentile(sorted, 0.5).toFixed(1)
    } ms, worst ${percentile(sorted, 1).toFixed(1)} ms`
  )
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))
  await main()
}

/**
 * A burst of closes: N sockets opened one after another, then all closed at once, while a probe socket (in a worker
 * thread of its own, so the bench's own close work does not delay it) sends a heartbeat 2 ms after each reply. It
 * reports the probe's worst round trip during the opening and during the close burst of each round: how long the
 * gateway's other sockets wait while a thousand sockets leave together (an attacker's flood ending, a venue's Wi-Fi
 * dropping). The attack suite's `xff-spoof` and `flood-connections` phases end in such a burst.
 *
 * Run: `npm run bench:closes -w @wedsync/tools [-- --sockets 950 --rounds 5 --gateway-ref <ref>]`.
 */
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { Worker } from "node:worker_threads"
import WebSocket from "ws"
import { numberOption } from "./cliOptions.ts"
import { type GatewaySource, gatewaySource } from "./gatewaySource.ts"
import { killAllServers, sleep } from "./serverProcess.ts"
import { percentile } from "./stats.ts"
import { anonToken, startGateway } from "./targets/gateway.ts"

export interface CloseBurstOptions {
  readonly sockets: number
  readonly rounds: number
  readonly gatewayRef: string | undefined
}

export const parseCloseBurstOptions = (argv: ReadonlyArray<string>): CloseBurstOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      sockets: { type: "string", default: "950" },
      rounds: { type: "string", default: "5" },
      "gateway-ref": { type: "string" }
    }
  })
  return {
    sockets: numberOption(values, "sockets", 1, true),
    rounds: numberOption(values, "rounds", 1, true),
    gatewayRef: values["gateway-ref"]
  }
}

// The probe: heartbeats 2 ms after each reply; on any message from the bench it answers with its worst round trip
// since the last question (ms), counting a heartbeat still unanswered by how long it has waited, and starts over.
// A probe socket that closes or fails answers NaN from then on, so the bench stops instead of waiting.
const PROBE = `
const { WebSocket } = require(process.env.WS_MODULE);
const { parentPort, workerData } = require("node:worker_threads");
const probe = new WebSocket(workerData, { perMessageDeflate: false });
let worst = 0, sentAt = 0, ref = 0, waiting = false, lost = false;
const next = () => setTimeout(() => {
  sentAt = performance.now();
  waiting = true;
  probe.send(JSON.stringify([null, String(++ref), "phoenix", "heartbeat", {}]));
}, 2);
probe.on("open", () => { parentPort.postMessage(-1); next() });
probe.on("message", () => { waiting = false; worst = Math.max(worst, performance.now() - sentAt); next() });
const fail = () => { lost = true; parentPort.postMessage(Number.NaN) };
probe.on("close", fail);
probe.on("error", fail);
parentPort.on("message", () => {
  const pending = waiting ? performance.now() - sentAt : 0;
  parentPort.postMessage(lost ? Number.NaN : Math.max(worst, pending));
  worst = 0;
});
`

const open = (url: string): Promise<WebSocket> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false })
    socket.once("open", () => resolve(socket))
    socket.once("error", reject)
  })

const run = async (options: CloseBurstOptions, source: GatewaySource) => {
  const server = await startGateway(source)
  const url = `ws://127.0.0.1:${server.port}/realtime/v1/websocket?apikey=${await anonToken()}&vsn=2.0.0`
  const probe = new Worker(PROBE, {
    eval: true,
    workerData: url,
    env: { ...process.env, WS_MODULE: fileURLToPath(import.meta.resolve("ws")) }
  })
  const answer = () =>
    new Promise<number>((resolve, reject) => {
      const onError = (error: Error) => {
        probe.off("message", onMessage)
        reject(error)
      }
      const onMessage = (value: number) => {
        probe.off("error", onError)
        if (Number.isNaN(value)) reject(new Error("the probe socket closed: the gateway dropped it"))
        else resolve(value)
      }
      probe.once("message", onMessage)
      probe.once("error", onError)
    })
  await answer()
  const worstDuring = async (work: () => Promise<unknown>): Promise<number> => {
    probe.postMessage("reset")
    await answer()
    await work()
    // Replies delayed by the burst land within this.
    await sleep(300)
    probe.postMessage("read")
    return answer()
  }
  const rounds: Array<{ opening: number; closing: number }> = []
  try {
    for (let round = 0; round < options.rounds; round++) {
      const sockets: Array<WebSocket> = []
      const opening = await worstDuring(async () => {
        for (let i = 0; i < options.sockets; i++) sockets.push(await open(url))
      })
      const closing = await worstDuring(() =>
        Promise.all(sockets.map((socket) =>
          new Promise((resolve) => {
            socket.once("close", resolve)
            socket.close()
          })
        ))
      )
      rounds.push({ opening, closing })
      console.log(
        `round ${round + 1}: probe worst round trip ${opening.toFixed(1)} ms while ${options.sockets} sockets opened ` +
          `one by one, ${closing.toFixed(1)} ms while they closed at once`
      )
      await sleep(500)
    }
  } finally {
    await probe.terminate()
    await server.stop()
  }
  return rounds
}

const median = (values: ReadonlyArray<number>): number => percentile([...values].sort((a, b) => a - b), 0.5)

const main = async () => {
  const options = parseCloseBurstOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const source = gatewaySource(repoRoot, options.gatewayRef)
  console.log(
    `close burst: ${options.sockets} sockets, ${options.rounds} rounds, gateway from the ${source.description}`
  )
  const rounds = await run(options, source)
  const closing = rounds.map((r) => r.closing)
  console.log(
    `close burst: probe worst round trip median ${median(closing).toFixed(1)} ms, worst ${
      Math.max(...closing).toFixed(1)
    } ms (opening: median ${median(rounds.map((r) => r.opening)).toFixed(1)} ms)`
  )
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  // Node runs no exit handlers on a signal: turn Ctrl-C into an exit, so the servers (and a veth namespace) go too.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))
  await main()
}

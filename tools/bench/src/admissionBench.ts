/**
 * Admission-control benchmark (issue 10, "Done means"): does shedding a connection flood at the upgrade keep the
 * connected clients' delivery p99 within 2x of its unloaded value?
 *
 * Each run starts a fresh gateway (pinned to CPU 0, the bench on CPU 1) with S subscribers on T topics and one
 * publisher per topic delivering D messages per second, and measures two windows back to back on the same sockets:
 * `unloaded` (no flood), then `flood` (new devices open WebSockets at F per second and, when admitted, join a topic
 * and stay, as a venue's devices do when they all come back at once). Two modes, each with its own gateway:
 * - `shed`: `ADMISSION_MAX_CONNECTIONS` = the connected sockets, so every flood upgrade is answered 503 with
 *   `Retry-After` before any token check;
 * - `admitted`: admission off, so the flood joins the rooms and the fan-out grows under the clients already there (the
 *   control: what the same flood costs without shedding).
 * The figure to quote is the worst `flood p99 / unloaded p99` of the `shed` runs; the `admitted` runs show that the
 * flood would have hurt without it.
 *
 * Run: `npm run bench:admission -w @wedsync/tools -- --runs 3` (defaults: 2,000 subscribers on 20 topics, 20,000
 * deliveries/s, a flood of 1,000 upgrades/s, 10 s windows after 3 s of warm-up).
 */
import { fork } from "node:child_process"
import { setPriority } from "node:os"
import { parseArgs } from "node:util"
import { fileURLToPath } from "node:url"
import type { FloodReport } from "./floodClient.ts"
import { openLeanSocket, type LeanSocket } from "./leanSocket.ts"
import { pinSelf, tasksetAvailable } from "./machine.ts"
import { CpuMeter, selfGc } from "./proc.ts"
import { killAllServers, sleep, startServer } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { anonToken, GATEWAY_ENTRY, LIMIT_OVERRIDES, startFlags } from "./targets/gateway.ts"
import { encodeKind3, heartbeatFrame, kind4PayloadOffset, nowMs, readStamp, type Stamp, stampPayload } from "./wire.ts"
import { sumSeries, windowP99Ms } from "./exposition.ts"
import { numberOption } from "./cliOptions.ts"

export const MODES = ["shed", "admitted"] as const
export type Mode = (typeof MODES)[number]

export interface AdmissionOptions {
  readonly sockets: number
  readonly topics: number
  readonly deliveriesPerSecond: number
  readonly floodPerSecond: number
  readonly durationS: number
  readonly warmupS: number
  readonly runs: number
  readonly modes: ReadonlyArray<Mode>
  readonly pin: boolean
}

export const parseAdmissionOptions = (argv: ReadonlyArray<string>): AdmissionOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowNegative: true,
    options: {
      sockets: { type: "string", default: "2000" },
      topics: { type: "string", default: "20" },
      deliveries: { type: "string", default: "20000" },
      flood: { type: "string", default: "1000" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      runs: { type: "string", default: "3" },
      modes: { type: "string", default: MODES.join(",") },
      pin: { type: "boolean", default: true }
    }
  })
  const number = (
    name: "sockets" | "topics" | "deliveries" | "flood" | "duration" | "warmup" | "runs",
    min: number
  ) => numberOption(values, name, min)
  const modes = values.modes.split(",").map((m) => m.trim())
  for (const mode of modes) {
    if (!(MODES as ReadonlyArray<string>).includes(mode)) {
      throw new Error(`--modes takes ${MODES.join(", ")} (comma-separated), got "${mode}"`)
    }
  }
  const options: AdmissionOptions = {
    sockets: Math.round(number("sockets", 1)),
    topics: Math.round(number("topics", 1)),
    deliveriesPerSecond: number("deliveries", 1),
    floodPerSecond: number("flood", 1),
    durationS: number("duration", 1),
    warmupS: number("warmup", 0),
    runs: Math.round(number("runs", 1)),
    modes: modes as ReadonlyArray<Mode>,
    pin: values.pin
  }
  if (options.sockets < options.topics) throw new Error("--sockets must be at least --topics")
  return options
}

/** One window's client-side delivery latency. */
export interface WindowResult {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly received: number
  readonly expected: number
  /** The gateway's own queued-to-written p99 over the window (`wedsync_connection_write_delay_seconds`), ms. */
  readonly inNodeP99: number
}

export interface RunResult {
  readonly mode: Mode
  readonly unloaded: WindowResult
  readonly flood: WindowResult
  /** Flood upgrades by answer: `101`, `503`, or the error of a connection that never got an answer. */
  readonly floodAnswers: Readonly<Record<string, number>>
  /** `wedsync_admission_shed_total` at the end of the run, all reasons. */
  readonly shedTotal: number
  readonly serverCpuPct: number
}

/** `flood p99 / unloaded p99`; the admission target is at most 2. */
export const p99Ratio = (r: Pick<RunResult, "unloaded" | "flood">): number => r.flood.p99 / r.unloaded.p99

/** The worst (largest) ratio of the given mode's runs, or undefined without such runs. */
export const worstRatio = (results: ReadonlyArray<RunResult>, mode: Mode): number | undefined => {
  const ratios = results.filter((r) => r.mode === mode).map(p99Ratio)
  return ratios.length === 0 ? undefined : Math.max(...ratios)
}

/** The sum of every `wedsync_admission_shed_total` series in an exposition text. */
export const shedTotalOf = (exposition: string): number => sumSeries(exposition, "wedsync_admission_shed_total") ?? 0

const topicOf = (i: number) => `realtime:adm-${i}`
const joinFrame = (topic: string) =>
  JSON.stringify(["1", "1", topic, "phx_join", {
    config: { broadcast: { ack: false, self: false }, presence: { enabled: false }, private: false }
  }])
const PAYLOAD_BYTES = 200
const FLOOD_CLIENT = fileURLToPath(new URL("./floodClient.ts", import.meta.url))

const run = async (options: AdmissionOptions, mode: Mode, repoRoot: string): Promise<RunResult> => {
  const connected = options.sockets + options.topics
  const server = await startServer({
    name: "gateway",
    args: [...startFlags(repoRoot), GATEWAY_ENTRY],
    cwd: repoRoot,
    env: {
      PORT: "0",
      HOST: "127.0.0.1",
      ...LIMIT_OVERRIDES,
      // Shed: exactly the sockets this run connects fit; every flood upgrade is one too many.
      ...(mode === "shed" ? { ADMISSION_MAX_CONNECTIONS: String(connected) } : {})
    },
    cpu: options.pin ? 0 : undefined,
    startTimeoutMs: 30_000
  })
  const token = await anonToken()
  const target = { host: "127.0.0.1", port: server.port, path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0` }
  const stamp: Stamp = { t: 0, s: 0 }
  let window: LatencyHistogram | undefined
  let received = 0
  const onMessage = (data: Buffer, start: number, end: number, binary: boolean) => {
    if (!binary || window === undefined) return
    const offset = kind4PayloadOffset(data, start, end)
    if (offset < 0 || !readStamp(data, offset, end, stamp)) return
    received++
    window.record(nowMs() - stamp.t)
  }
  const quiet = { onMessage: () => undefined, onClose: () => undefined }
  const subscriberHandlers = { onMessage, onClose: () => undefined }
  const open: Array<LeanSocket> = []
  try {
    for (let i = 0; i < options.sockets; i += 200) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(200, options.sockets - i) },
          (_, k) =>
            openLeanSocket(target, subscriberHandlers, 30_000).then((s) => {
              s.sendText(joinFrame(topicOf((i + k) % options.topics)))
              return s
            })
        )
      )
      open.push(...batch)
    }
    const publishers = await Promise.all(
      Array.from({ length: options.topics }, (_, t) =>
        openLeanSocket(target, quiet, 30_000).then((s) => {
          s.sendText(joinFrame(topicOf(t)))
          return s
        }))
    )
    open.push(...publishers)
    await sleep(1_000)
    // realtime-js heartbeats every 25 s: each 100 ms tick sends its share.
    let cursor = 0
    const heartbeat = setInterval(() => {
      const perTick = Math.max(1, Math.ceil(open.length / 250))
      for (let k = 0; k < perTick; k++) {
        const s = open[cursor++ % open.length]
        if (s?.isOpen()) s.sendText(heartbeatFrame(String(cursor)))
      }
    }, 100)

    const subscribersOf = (t: number) =>
      Math.floor(options.sockets / options.topics) + (t < options.sockets % options.topics ? 1 : 0)
    const ratePerTopic = options.deliveriesPerSecond / options.sockets
    let seq = 0
    let expected = 0
    /** Publishes round-robin over the topics at the rate that makes the subscribers receive D per second. */
    const publishFor = (ms: number) =>
      new Promise<void>((resolve) => {
        const started = performance.now()
        const rate = ratePerTopic * options.topics
        const total = Math.round((rate * ms) / 1000)
        let sent = 0
        const tick = () => {
          const due = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000) + 1)
          for (; sent < due; sent++) {
            const t = sent % options.topics
            publishers[t]!.sendBinary(
              encodeKind3("1", String(++seq), topicOf(t), "bench", stampPayload(nowMs(), seq, PAYLOAD_BYTES))
            )
            expected += subscribersOf(t)
          }
          if (sent >= total) {
            clearInterval(timer)
            resolve()
          }
        }
        const timer = setInterval(tick, 5)
        tick()
      })
    const scrape = () => fetch(`http://127.0.0.1:${server.port}/metrics`).then((r) => r.text())
    const measure = async (): Promise<WindowResult> => {
      await sleep(300)
      selfGc()
      const before = await scrape()
      const histogram = new LatencyHistogram()
      received = 0
      expected = 0
      window = histogram
      await publishFor(options.durationS * 1000)
      const drainStart = performance.now()
      while (received < expected && performance.now() - drainStart < 5_000) await sleep(20)
      window = undefined
      const after = await scrape()
      return {
        inNodeP99: windowP99Ms(before, after, "wedsync_connection_write_delay_seconds"),
        p50: histogram.percentile(0.5),
        p99: histogram.percentile(0.99),
        max: histogram.max,
        received,
        expected
      }
    }

    await publishFor(options.warmupS * 1000)
    const cpu = new CpuMeter([server.pid])
    cpu.start()
    const unloaded = await measure()

    // The flood, from its own process (floodClient.ts): F upgrade attempts per second, each a new device; an admitted
    // one joins a topic and stays. Its deliveries are load, not measurements: only the clients connected before it are
    // measured.
    const flooder = fork(FLOOD_CLIENT, [
      target.host,
      String(target.port),
      target.path,
      String(options.floodPerSecond),
      String(options.topics)
    ])
    // At the lowest priority on the bench's core: the bench's receive loop must win every contest for it, or the
    // flood's client-side work would show up as delivery latency that no gateway caused.
    if (flooder.pid !== undefined) setPriority(flooder.pid, 19)
    const floodReport = new Promise<FloodReport>((resolve, reject) => {
      flooder.once("message", (report) => resolve(report as FloodReport))
      flooder.once("exit", (code) => reject(new Error(`the flood client exited (code ${code}) before its report`)))
    })
    const floodWindow = await measure().finally(() => flooder.send("stop"))
    const { answers: floodAnswers } = await floodReport
    clearInterval(heartbeat)
    const serverCpuPct = cpu.read()
    const exposition = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
    return { mode, unloaded, flood: floodWindow, floodAnswers, shedTotal: shedTotalOf(exposition), serverCpuPct }
  } finally {
    for (const s of open) s.close()
    await server.stop()
  }
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a")
const windowLine = (w: WindowResult) =>
  `p50 ${fmt(w.p50)} ms, p99 ${fmt(w.p99)} ms, max ${fmt(w.max)} ms, in-node p99 <= ${fmt(w.inNodeP99)} ms, ` +
  `received ${w.received} of ${w.expected}`

const main = async () => {
  const options = parseAdmissionOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const pinned = options.pin && tasksetAvailable() && pinSelf(1)
  console.log(
    `admission: ${options.sockets} subscribers on ${options.topics} topics, ${options.deliveriesPerSecond} ` +
      `deliveries/s, flood ${options.floodPerSecond} upgrades/s, ${options.durationS} s windows after ` +
      `${options.warmupS} s warm-up, ${options.runs} runs of ${options.modes.join(" + ")}, ${
        pinned ? "server CPU 0 / bench CPU 1" : "unpinned"
      }`
  )
  const results: Array<RunResult> = []
  for (let i = 1; i <= options.runs; i++) {
    for (const mode of options.modes) {
      const r = await run({ ...options, pin: pinned }, mode, repoRoot)
      results.push(r)
      console.log(`run ${i} ${mode}: unloaded ${windowLine(r.unloaded)}`)
      console.log(
        `run ${i} ${mode}: flood    ${windowLine(r.flood)}; p99 ratio ${fmt(p99Ratio(r))}x; flood answers ${
          JSON.stringify(r.floodAnswers)
        }, shed metric ${r.shedTotal}, server CPU ${fmt(r.serverCpuPct)}%`
      )
    }
  }
  for (const mode of options.modes) {
    const worst = worstRatio(results, mode)
    console.log(
      `worst of ${options.runs} ${mode}: flood p99 / unloaded p99 = ${fmt(worst ?? Number.NaN)}x${
        mode === "shed" ? ` (target <= 2x: ${worst !== undefined && worst <= 2 ? "met" : "NOT met"})` : ""
      }`
    )
  }
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  await main()
}

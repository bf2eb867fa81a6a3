/**
 * Upstream pool benchmark (issue 11): N clients on T topics, once connected directly to the "hosted" gateway (the
 * project's own gateway standing in for hosted Supabase) and once through a second gateway in upstream mode
 * (`SUPABASE_URL` pointing at the first), which relays the topics over its pool. One publisher per topic sits on the
 * hosted side in both modes, so the pool mode's latency is the direct one plus the extra hop.
 *
 * Reported per mode: the sockets the clients use on the upstream (its `wedsync_connection_open`, publishers excluded:
 * N directly, a handful through the pool), publish-to-receive p50/p99/max, loss, and the CPU of the gateway the clients
 * are on (the upstream directly, the relay through the pool); then the extra hop's added p50/p99.
 *
 * Run (the lead runs it on a quiet machine): `npm run bench:upstream -w @wedsync/tools` (defaults: 10,000 clients,
 * 50 topics, 60,000 deliveries/s, 10 s measured after 3 s of warm-up). The servers are pinned to CPU 0 (and the relay
 * to CPU 2 when the machine has one), the bench to CPU 1; `--no-pin` leaves them unpinned. `--mode direct|pool|both`.
 */
import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { type LeanSocket, openLeanSocket } from "./leanSocket.ts"
import { pinSelf, tasksetAvailable } from "./machine.ts"
import { CpuMeter } from "./proc.ts"
import { killAllServers, type ServerHandle, sleep, startServer } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { GATEWAY_ENTRY, LIMIT_OVERRIDES, signToken, startFlags } from "./targets/gateway.ts"
import {
  decodeText,
  encodeKind3,
  heartbeatFrame,
  kind4PayloadOffset,
  nowMs,
  readStamp,
  type Stamp,
  stampFromValue,
  stampPayload
} from "./wire.ts"
import { numberOption } from "./cliOptions.ts"

export type Mode = "direct" | "pool"

export interface UpstreamBenchOptions {
  readonly clients: number
  readonly topics: number
  readonly deliveriesPerSecond: number
  readonly durationS: number
  readonly warmupS: number
  readonly payloadBytes: number
  readonly concurrency: number
  readonly pin: boolean
  readonly modes: ReadonlyArray<Mode>
  /** Pause after the joins before publishing (through the pool the relay joins its upstream channels meanwhile). */
  readonly settleMs: number
}

export const parseUpstreamBenchOptions = (argv: ReadonlyArray<string>): UpstreamBenchOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowNegative: true,
    options: {
      clients: { type: "string", default: "10000" },
      topics: { type: "string", default: "50" },
      deliveries: { type: "string", default: "60000" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      payload: { type: "string", default: "200" },
      concurrency: { type: "string", default: "200" },
      pin: { type: "boolean", default: true },
      mode: { type: "string", default: "both" },
      settle: { type: "string", default: "2000" }
    }
  })
  const number = (name: keyof typeof values, min: number): number => numberOption(values, name, min)
  const mode = values.mode
  if (mode !== "both" && mode !== "direct" && mode !== "pool") {
    throw new Error(`--mode must be direct, pool or both, got "${mode}"`)
  }
  const options: UpstreamBenchOptions = {
    clients: Math.round(number("clients", 1)),
    topics: Math.round(number("topics", 1)),
    deliveriesPerSecond: number("deliveries", 1),
    durationS: number("duration", 0.1),
    warmupS: number("warmup", 0),
    payloadBytes: Math.round(number("payload", 40)),
    concurrency: Math.round(number("concurrency", 1)),
    pin: values.pin,
    modes: mode === "both" ? ["direct", "pool"] : [mode],
    settleMs: number("settle", 0)
  }
  if (options.clients < options.topics) throw new Error("--clients must be at least --topics")
  return options
}

export interface ModeResult {
  readonly mode: Mode
  /** Sockets the clients hold on the upstream (its `wedsync_connection_open` less the publishers). */
  readonly upstreamSockets: number
  readonly upstreamChannels: number
  readonly expected: number
  readonly received: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  /** CPU of the gateway the clients are connected to, percent of one core. */
  readonly gatewayCpuPct: number
}

const topicOf = (i: number) => `realtime:ub-${i}`
const joinFrameFor = (topic: string) =>
  JSON.stringify(["1", "1", topic, "phx_join", {
    config: { broadcast: { ack: false, self: false }, presence: { enabled: false }, private: false }
  }])

/** `name value` of an unlabelled series in an exposition text. */
const seriesValue = (exposition: string, name: string): number =>
  Number(new RegExp(`^${name} (\\S+)$`, "m").exec(exposition)?.[1] ?? Number.NaN)

const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()

/** One mode: fresh servers, clients connected and joined, warm-up, a measured window, the servers stopped. */
export const runMode = async (
  mode: Mode,
  options: UpstreamBenchOptions,
  repoRoot: string,
  cpus: { readonly upstream: number | undefined; readonly relay: number | undefined }
): Promise<ModeResult> => {
  const flags = startFlags(repoRoot)
  const servers: Array<ServerHandle> = []
  const start = (name: string, cpu: number | undefined, env: Record<string, string>) =>
    startServer({
      name,
      args: [...flags, GATEWAY_ENTRY],
      cwd: repoRoot,
      env: { PORT: "0", HOST: "127.0.0.1", ...LIMIT_OVERRIDES, ...env },
      cpu,
      startTimeoutMs: 30_000
    }).then((server) => (servers.push(server), server))
  try {
    const upstream = await start("upstream", cpus.upstream, {})
    const relay = mode === "pool"
      ? await start("relay", cpus.relay, {
        SUPABASE_URL: `http://127.0.0.1:${upstream.port}`,
        SUPABASE_SERVICE_ROLE_KEY: await signToken({ role: "service_role" }, 86_400)
      })
      : undefined
    const clientsOn = relay ?? upstream
    const token = await signToken({ role: "anon" })
    const target = (port: number) => ({
      host: "127.0.0.1",
      port,
      path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`
    })
    const latency = new LatencyHistogram()
    const stamp: Stamp = { t: 0, s: 0 }
    let measuring = false
    let received = 0
    const record = () => {
      received++
      latency.record(nowMs() - stamp.t)
    }
    // Direct: kind-4 binary frames as the publisher sent them. Through the pool: the relay re-publishes the upstream
    // broadcast as JSON text.
    const handlers = {
      onMessage: (data: Buffer, startAt: number, end: number, binary: boolean) => {
        if (!measuring) return
        if (binary) {
          const offset = kind4PayloadOffset(data, startAt, end)
          if (offset >= 0 && readStamp(data, offset, end, stamp)) record()
          return
        }
        const message = decodeText(data.toString("utf8", startAt, end))
        if (message?.event === "broadcast" && stampFromValue(message.payload, stamp)) record()
      },
      onClose: () => {}
    }
    const sockets: Array<LeanSocket> = []
    for (let i = 0; i < options.clients; i += options.concurrency) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(options.concurrency, options.clients - i) },
          (_, k) =>
            openLeanSocket(target(clientsOn.port), handlers, 30_000).then((s) => {
              s.sendText(joinFrameFor(topicOf((i + k) % options.topics)))
              return s
            })
        )
      )
      sockets.push(...batch)
    }
    const noop = { onMessage: () => undefined, onClose: () => undefined }
    const publishers = await Promise.all(
      Array.from({ length: options.topics }, (_, t) =>
        openLeanSocket(target(upstream.port), noop, 30_000).then((s) => {
          s.sendText(joinFrameFor(topicOf(t)))
          return s
        }))
    )
    // Joins answered (through the pool: its upstream channels joined) before anything is published.
    await sleep(options.settleMs)
    const heartbeat = setInterval(() => {
      for (const s of sockets) if (s.isOpen()) s.sendText(heartbeatFrame("hb"))
    }, 25_000)
    const subscribersOf = (t: number) =>
      Math.floor(options.clients / options.topics) + (t < options.clients % options.topics ? 1 : 0)
    const rate = options.deliveriesPerSecond / options.clients * options.topics
    let seq = 0
    let expected = 0
    const publishFor = (ms: number, counted: boolean) =>
      new Promise<void>((resolve) => {
        const began = performance.now()
        const total = Math.round((rate * ms) / 1000)
        let sent = 0
        const tick = () => {
          const due = Math.min(total, Math.floor(((performance.now() - began) * rate) / 1000) + 1)
          while (sent < due) {
            const t = sent % options.topics
            publishers[t]!.sendBinary(
              encodeKind3("1", String(++seq), topicOf(t), "bench", stampPayload(nowMs(), seq, options.payloadBytes))
            )
            if (counted) expected += subscribersOf(t)
            sent++
          }
          if (sent >= total) {
            clearInterval(timer)
            resolve()
          }
        }
        const timer = setInterval(tick, 5)
        tick()
      })
    await publishFor(options.warmupS * 1000, false)
    // The warm-up's deliveries still in flight are not counted.
    await sleep(Math.min(500, options.settleMs))
    const cpu = new CpuMeter(clientsOn.pid)
    measuring = true
    cpu.start()
    await publishFor(options.durationS * 1000, true)
    const drainStart = performance.now()
    while (received < expected && performance.now() - drainStart < 5_000) await sleep(20)
    measuring = false
    const gatewayCpuPct = cpu.read()
    clearInterval(heartbeat)
    const exposition = await scrape(upstream.port)
    for (const s of [...sockets, ...publishers]) s.close()
    return {
      mode,
      upstreamSockets: seriesValue(exposition, "wedsync_connection_open") - options.topics,
      upstreamChannels: seriesValue(exposition, "wedsync_connection_channels") - options.topics,
      expected,
      received,
      p50: latency.percentile(0.5),
      p99: latency.percentile(0.99),
      max: latency.max,
      gatewayCpuPct
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a")

export const describeResult = (r: ModeResult): string =>
  `${r.mode}: ${r.upstreamSockets} upstream sockets, ${r.upstreamChannels} upstream channels for the clients, ` +
  `p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, max ${fmt(r.max)} ms, lost ${
    Math.max(0, r.expected - r.received)
  } of ${r.expected}, gateway CPU ${fmt(r.gatewayCpuPct)}%`

const main = async () => {
  const options = parseUpstreamBenchOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const pinned = options.pin && tasksetAvailable() && pinSelf(1)
  const cpus = pinned
    ? { upstream: 0, relay: availableParallelism() > 2 ? 2 : 0 }
    : { upstream: undefined, relay: undefined }
  console.log(
    `upstream pool: ${options.clients} clients on ${options.topics} topics, ${options.deliveriesPerSecond} ` +
      `deliveries/s, ${options.durationS} s measured after ${options.warmupS} s warm-up, ` +
      `${pinned ? `upstream CPU ${cpus.upstream}, relay CPU ${cpus.relay}, bench CPU 1` : "unpinned"}`
  )
  const results: Array<ModeResult> = []
  for (const mode of options.modes) {
    const result = await runMode(mode, { ...options, pin: pinned }, repoRoot, cpus)
    results.push(result)
    console.log(describeResult(result))
  }
  const direct = results.find((r) => r.mode === "direct")
  const pool = results.find((r) => r.mode === "pool")
  if (direct !== undefined && pool !== undefined) {
    console.log(`the pool's extra hop adds p50 ${fmt(pool.p50 - direct.p50)} ms, p99 ${fmt(pool.p99 - direct.p99)} ms`)
  }
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  await main()
}

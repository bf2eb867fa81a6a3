/**
 * Multi-topic fan-out benchmark (issue #6 item 19): N sockets spread over T topics, one publisher socket per topic,
 * publishing so that the whole gateway delivers D messages per second. This is the realistic wedding-day shape (many
 * rooms, many publishers, each write turn carrying frames of several topics), beside `fanout`'s single topic, which is
 * the write coalescer's best case. Each run starts a fresh gateway (pinned to CPU 0, the bench on CPU 1), connects and
 * joins every socket, warms up, measures, and drains; the report gives every run's p50/p99/p99.9/max and loss and
 * the worst of the runs, which is the figure to quote. Sockets heartbeat every 25 s like realtime-js, spread evenly.
 *
 * Run: `npm run bench:topics -w @wedsync/tools -- --runs 5` (defaults: 10,000 sockets, 50 topics, 60,000
 * deliveries/s, 10 s measured after 3 s of warm-up, 200-byte payloads). `--processes 2 --redis spawn` spreads each
 * topic's subscribers over two gateway processes joined by Redis (publishers on process 1), and adds the Redis
 * commands per published message and the deliveries per process (scaleOut.ts).
 *
 * This runs on virtual machines, whose host can take a core away for a while: every run reports the CPU time stolen
 * from each pinned core (mean and worst second), and the summary gives, beside the worst of all runs, the worst of
 * the runs the host left alone. `--network veth` puts the gateway behind a veth pair in a namespace of its own
 * (splitNetwork.ts), so that each side does its own receive work, as across a real link.
 */
import { parseArgs } from "node:util"
import { fileURLToPath } from "node:url"
import {
  constants as perfConstants,
  monitorEventLoopDelay,
  type PerformanceEntry,
  PerformanceObserver
} from "node:perf_hooks"
import { openLeanSocket, type LeanSocket } from "./leanSocket.ts"
import { pinSelf, tasksetAvailable } from "./machine.ts"
import { CoreMeter, CpuMeter, SelfCpuMeter, selfGc, type StealOfCore, StealWatch } from "./proc.ts"
import { perMessage, readRedisStats, type RedisCost, redisCost } from "./redisStats.ts"
import { parseScaleOut, perProcessLine, type ScaleOut, startGateways } from "./scaleOut.ts"
import { killAllServers, sleep, startServer } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { anonToken, GATEWAY_ENTRY, LIMIT_OVERRIDES, startFlags } from "./targets/gateway.ts"
import { encodeKind3, heartbeatFrame, kind4PayloadOffset, nowMs, readStamp, type Stamp, stampPayload } from "./wire.ts"
import { histogramP99Ms } from "./exposition.ts"
import { numberOption } from "./cliOptions.ts"
import { openSplitNetwork } from "./splitNetwork.ts"

interface MultiTopicOptions {
  readonly sockets: number
  readonly topics: number
  readonly deliveriesPerSecond: number
  readonly durationS: number
  readonly warmupS: number
  readonly runs: number
  readonly payloadBytes: number
  readonly concurrency: number
  readonly pin: boolean
  /** Extra Node flags for the server, for diagnosis (`--cpu-prof`, `--trace-gc`). */
  readonly serverFlags: ReadonlyArray<string>
  /** Prints one line per measured second (latency, CPU of server and bench, bench loop delay), to place a tail. */
  readonly timeline: boolean
  readonly scale: ScaleOut
  /** `veth`: the gateway behind a veth pair in a namespace of its own (splitNetwork.ts) instead of on loopback. */
  readonly network: "loopback" | "veth"
}

/** Parses and checks the options; every subscriber count and rate must come out whole and positive. */
export const parseMultiTopicOptions = (argv: ReadonlyArray<string>): MultiTopicOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowNegative: true,
    options: {
      sockets: { type: "string", default: "10000" },
      topics: { type: "string", default: "50" },
      deliveries: { type: "string", default: "60000" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      runs: { type: "string", default: "5" },
      payload: { type: "string", default: "200" },
      concurrency: { type: "string", default: "200" },
      pin: { type: "boolean", default: true },
      "server-flags": { type: "string", default: "" },
      timeline: { type: "boolean", default: false },
      processes: { type: "string", default: "1" },
      redis: { type: "string" },
      network: { type: "string", default: "loopback" }
    }
  })
  const number = (name: keyof typeof values, min: number): number => numberOption(values, name, min)
  const options: MultiTopicOptions = {
    sockets: Math.round(number("sockets", 1)),
    topics: Math.round(number("topics", 1)),
    deliveriesPerSecond: number("deliveries", 1),
    durationS: number("duration", 1),
    warmupS: number("warmup", 0),
    runs: Math.round(number("runs", 1)),
    payloadBytes: Math.round(number("payload", 40)),
    concurrency: Math.round(number("concurrency", 1)),
    pin: values.pin,
    serverFlags: values["server-flags"].split(/\s+/).filter((flag) => flag !== ""),
    timeline: values.timeline,
    scale: parseScaleOut(values.processes, values.redis),
    network: parseNetwork(values.network)
  }
  if (options.network === "veth" && (options.scale.processes > 1 || options.scale.redis !== undefined)) {
    throw new Error("--network veth runs one gateway process without Redis (Redis is not reachable from its namespace)")
  }
  if (options.network === "veth" && !options.pin) {
    throw new Error("--network veth steers receive work to the pinned cores: it cannot be combined with --no-pin")
  }
  if (options.sockets < options.topics)
    throw new Error("--sockets must be at least --topics (one subscriber per topic)")
  return options
}

const parseNetwork = (raw: string): MultiTopicOptions["network"] => {
  if (raw === "loopback" || raw === "veth") return raw
  throw new Error(`--network must be loopback or veth, got "${raw}"`)
}

/** Publishes per second per topic so that the whole gateway delivers `deliveriesPerSecond`. */
export const publishRatePerTopic = (options: MultiTopicOptions): number => options.deliveriesPerSecond / options.sockets

interface RunResult {
  readonly published: number
  readonly expected: number
  readonly received: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly deliveriesPerSec: number
  readonly serverCpuPct: number
  /** How much of each pinned core the hypervisor gave to other guests during the window (empty when unpinned). */
  readonly steal: ReadonlyArray<StealOfCore>
  /** Gateway CPU (all processes) per 1,000 deliveries, ms. */
  readonly serverCpuMsPer1000: number
  readonly unexpectedCloses: number
  readonly receivedByProcess: ReadonlyArray<number>
  readonly expectedByProcess: ReadonlyArray<number>
  readonly redis: RedisCost | undefined
  readonly load: string
  /** The gateway's own delivery latency (queued to written) at p99, from its write-delay histogram: ms. */
  readonly inNodeP99: number
  /** The gateway's GC pauses over its life, by kind: count and total ms. */
  readonly gc: string
}

/** `kind count/total ms` of every GC kind in an exposition text (the `nodejs_gc_duration_seconds` histogram). */
const gcSummary = (exposition: string): string =>
  ["minor", "major", "incremental"]
    .map((kind) => {
      const read = (suffix: string) =>
        Number(
          exposition.match(new RegExp(`^nodejs_gc_duration_seconds_${suffix}\\{kind="${kind}"\\} (\\S+)$`, "m"))?.[1] ??
            Number.NaN
        )
      return `${kind} ${read("count")}/${Math.round(read("sum") * 1000)} ms`
    })
    .join(", ")

const topicOf = (i: number) => `realtime:mt-${i}`
const joinFrameFor = (topic: string, ref: string) =>
  JSON.stringify([ref, ref, topic, "phx_join", {
    config: { broadcast: { ack: false, self: false }, presence: { enabled: false }, private: false }
  }])

/**
 * The gateway process (0-based) of subscriber `i`: consecutive rounds of one socket per topic alternate between
 * processes, so every topic has subscribers on each of them (socket i is on topic i mod T).
 */
export const processOf = (i: number, topics: number, processes: number): number => Math.floor(i / topics) % processes

/** Where the gateway listens and how it is started: on loopback, or inside the split network's namespace. */
interface Placement {
  readonly host: string
  readonly prefix: ReadonlyArray<string>
}

const run = async (options: MultiTopicOptions, repoRoot: string, placement: Placement): Promise<RunResult> => {
  const { host } = placement
  const load = (await import("node:fs")).readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
  const gateways = await startGateways(options.scale, (port, env) =>
    startServer({
      name: "gateway",
      args: [...startFlags(repoRoot), ...options.serverFlags, GATEWAY_ENTRY],
      cwd: repoRoot,
      env: { PORT: String(port), HOST: host, ...LIMIT_OVERRIDES, ...env },
      cpu: options.pin ? 0 : undefined,
      startTimeoutMs: 30_000,
      prefix: placement.prefix
    }), options.pin ? 0 : undefined)
  const port = gateways.servers[0]!.port
  const token = await anonToken()
  const targetOf = (process: number) => ({
    host,
    port: gateways.servers[process]!.port,
    path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`
  })
  const latency = new LatencyHistogram()
  const stamp: Stamp = { t: 0, s: 0 }
  let measuring = false
  let received = 0
  let unexpectedCloses = 0
  let second = new LatencyHistogram()
  const receivedByProcess = gateways.servers.map(() => 0)
  const handlersOf = (process: number) => ({
    onMessage: (data: Buffer, start: number, end: number, binary: boolean) => {
      if (!binary || !measuring) return
      const offset = kind4PayloadOffset(data, start, end)
      if (offset < 0 || !readStamp(data, offset, end, stamp)) return
      received++
      receivedByProcess[process]!++
      const ms = nowMs() - stamp.t
      latency.record(ms)
      second.record(ms)
    },
    onClose: () => void unexpectedCloses++
  })
  const handlers = gateways.servers.map((_, process) => handlersOf(process))
  // Subscribers of topic t on each process, for the expected deliveries per process.
  const subscribersOn = Array.from({ length: options.topics }, () => gateways.servers.map(() => 0))
  for (let i = 0; i < options.sockets; i++) {
    subscribersOn[i % options.topics]![processOf(i, options.topics, gateways.servers.length)]!++
  }
  const joined = (socket: LeanSocket, topic: string, ref: string) => {
    socket.sendText(joinFrameFor(topic, ref))
    return socket
  }
  try {
    // Subscribers: socket i listens on topic i mod T. Publishers: one more socket per topic.
    const sockets: Array<LeanSocket> = []
    for (let i = 0; i < options.sockets; i += options.concurrency) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(options.concurrency, options.sockets - i) },
          (_, k) => {
            const process = processOf(i + k, options.topics, gateways.servers.length)
            return openLeanSocket(targetOf(process), handlers[process]!, 30_000).then((s) =>
              joined(s, topicOf((i + k) % options.topics), "1")
            )
          }
        )
      )
      sockets.push(...batch)
    }
    const noop = { onMessage: () => undefined, onClose: () => void unexpectedCloses++ }
    const publishers = await Promise.all(
      Array.from(
        { length: options.topics },
        (_, t) => openLeanSocket(targetOf(0), noop, 30_000).then((s) => joined(s, topicOf(t), "1"))
      )
    )
    // Let the joins finish before publishing: a publish before its join is answered would be dropped.
    await sleep(1_000)
    const subscribersOf = (t: number) =>
      Math.floor(options.sockets / options.topics) + (t < options.sockets % options.topics ? 1 : 0)

    // realtime-js heartbeats every 25 s; spread them so each 100 ms tick sends its share.
    let heartbeatCursor = 0
    const heartbeatsPerTick = Math.max(1, Math.ceil(sockets.length / 250))
    const heartbeat = setInterval(() => {
      for (let k = 0; k < heartbeatsPerTick; k++) {
        const socket = sockets[heartbeatCursor++ % sockets.length]
        if (socket?.isOpen()) socket.sendText(heartbeatFrame(String(heartbeatCursor)))
      }
    }, 100)

    const perTopic = publishRatePerTopic(options)
    const totalRate = perTopic * options.topics
    let seq = 0
    let published = 0
    let expected = 0
    const expectedByProcess = gateways.servers.map(() => 0)
    const publishFor = (ms: number, counted: boolean) =>
      new Promise<void>((resolve) => {
        const started = performance.now()
        const total = Math.round((totalRate * ms) / 1000)
        let sent = 0
        const tick = () => {
          const due = Math.min(total, Math.floor(((performance.now() - started) * totalRate) / 1000) + 1)
          while (sent < due) {
            // Round-robin over topics, so every topic publishes at the same rate and turns mix topics.
            const t = sent % options.topics
            const frame = encodeKind3(
              "1",
              String(++seq),
              topicOf(t),
              "bench",
              stampPayload(nowMs(), seq, options.payloadBytes)
            )
            publishers[t]!.sendBinary(frame)
            if (counted) {
              published++
              expected += subscribersOf(t)
              subscribersOn[t]!.forEach((n, process) => (expectedByProcess[process]! += n))
            }
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
    // Deliveries of the warm-up still in flight are not counted: wait for them to land first. Then collect the
    // bench's own garbage (10,000 sockets' worth): a full GC of this process inside the window once stalled its
    // receive loop for 200 ms and was counted as gateway latency.
    await sleep(500)
    selfGc()
    const redisBefore = gateways.redisUrl === undefined ? undefined : await readRedisStats(gateways.redisUrl)
    measuring = true
    const cpu = new CpuMeter(gateways.pids)
    cpu.start()
    const stealWatch = new StealWatch(options.pin ? [0, 1] : [])
    stealWatch.start()
    const timeline = options.timeline ?
      startTimeline(gateways.pids, `${host}:${port}`, options.pin ? 0 : undefined, () => {
        const s = second
        second = new LatencyHistogram()
        return s
      }) :
      undefined
    const started = performance.now()
    await publishFor(options.durationS * 1000, true)
    const drainStart = performance.now()
    while (received < expected && performance.now() - drainStart < 5_000) await sleep(20)
    const spanS = (performance.now() - started) / 1000
    measuring = false
    timeline?.stop()
    clearInterval(heartbeat)
    const serverCpuPct = cpu.read()
    const steal = stealWatch.stop()
    const serverCpuSeconds = cpu.seconds()
    const redis = gateways.redisUrl === undefined || redisBefore === undefined
      ? undefined
      : redisCost(redisBefore, await readRedisStats(gateways.redisUrl))
    gateways.alive()
    const exposition = await (await fetch(`http://${host}:${port}/metrics`)).text()
    for (const s of [...sockets, ...publishers]) s.close()
    return {
      published,
      expected,
      received,
      p50: latency.percentile(0.5),
      p99: latency.percentile(0.99),
      p999: latency.percentile(0.999),
      max: latency.max,
      deliveriesPerSec: received / spanS,
      serverCpuPct,
      steal,
      serverCpuMsPer1000: received > 0 ? (serverCpuSeconds * 1e6) / received : Number.NaN,
      unexpectedCloses,
      receivedByProcess,
      expectedByProcess,
      redis,
      load,
      inNodeP99: histogramP99Ms(exposition, "wedsync_connection_write_delay_seconds"),
      gc: gcSummary(exposition)
    }
  } finally {
    await gateways.stop()
  }
}

/** Count and total seconds of each GC kind in an exposition text (the `nodejs_gc_duration_seconds` histogram). */
const gcTotals = (exposition: string): Map<string, { count: number; seconds: number }> =>
  new Map(["minor", "major", "incremental"].map((kind) => {
    const read = (suffix: string) =>
      Number(
        exposition.match(new RegExp(`^nodejs_gc_duration_seconds_${suffix}\\{kind="${kind}"\\} (\\S+)$`, "m"))?.[1] ??
          Number.NaN
      )
    return [kind, { count: read("count"), seconds: read("sum") }]
  }))

/**
 * Every second: deliveries, p99 and max latency of that second, the CPU share of server and bench, the bench's own
 * worst event-loop delay, and the gateway's GC pauses of that second (one scrape of `/metrics` per second). A tail
 * that coincides with a stalled bench loop is the bench's; one with a jump in server CPU and a major GC is the
 * gateway's collector (its concurrent marking threads share the pinned core).
 */
const startTimeline = (
  serverPid: ReadonlyArray<number>,
  address: string,
  serverCore: number | undefined,
  takeSecond: () => LatencyHistogram
) => {
  const serverCpu = new CpuMeter(serverPid)
  // The whole core, softirq included: loopback TCP work is charged to the core, not to the server's own CPU time.
  const core = serverCore === undefined ? undefined : new CoreMeter(serverCore)
  core?.start()
  // The bench's core (the other one when pinned): a stall of the bench's loop there counts as latency too.
  const benchCore = serverCore === undefined ? undefined : new CoreMeter(1 - serverCore)
  benchCore?.start()
  const benchCpu = new SelfCpuMeter()
  const loop = monitorEventLoopDelay({ resolution: 5 })
  let benchGcMs = 0
  let benchMajorGcs = 0
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      benchGcMs += entry.duration
      const kind = (entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } }).detail?.kind
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) benchMajorGcs++
    }
  })
  gcObserver.observe({ entryTypes: ["gc"] })
  const scrape = () => fetch(`http://${address}/metrics`).then((r) => r.text()).then(gcTotals, () => new Map())
  let gcBefore = scrape()
  loop.enable()
  serverCpu.start()
  benchCpu.start()
  let n = 0
  const timer = setInterval(() => {
    const s = takeSecond()
    const line = `  t=${++n}s: ${s.count} deliveries, p99 ${fmt(s.percentile(0.99))} ms, max ${fmt(s.max)} ms, ` +
      `server CPU ${fmt(serverCpu.read())}%${
        core === undefined ? "" : ` (its core ${fmt(core.read())}% busy, ${fmt(core.readSteal())}% stolen)`
      }, bench CPU ${fmt(benchCpu.read())}%${
        benchCore === undefined ? "" : ` (its core ${fmt(benchCore.readSteal())}% stolen)`
      }, bench loop delay max ${fmt(loop.max / 1e6)} ms, ` +
      `bench GC ${Math.round(benchGcMs)} ms (${benchMajorGcs} major)`
    benchGcMs = 0
    benchMajorGcs = 0
    serverCpu.start()
    core?.start()
    benchCore?.start()
    benchCpu.start()
    loop.reset()
    const gcAfter = scrape()
    void Promise.all([gcBefore, gcAfter]).then(([before, after]) => {
      const gc = [...after].map(([kind, a]) => {
        const b = before.get(kind)
        return b === undefined
          ? `${kind} ?`
          : `${kind} ${a.count - b.count}/${Math.round((a.seconds - b.seconds) * 1000)} ms`
      })
      console.log(`${line}, server GC ${gc.join(", ")}`)
    })
    gcBefore = gcAfter
  }, 1_000)
  return { stop: () => (clearInterval(timer), loop.disable(), gcObserver.disconnect()) }
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a")

const main = async () => {
  const options = parseMultiTopicOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const pinned = options.pin && tasksetAvailable() && pinSelf(1)
  const perTopic = publishRatePerTopic(options)
  console.log(
    `multi-topic: ${options.sockets} sockets on ${options.topics} topics, ${options.topics} publishers, ` +
      `${
        perTopic.toFixed(2)
      } msg/s per topic = ${options.deliveriesPerSecond} deliveries/s, ${options.durationS} s measured ` +
      `on ${options.scale.processes} gateway process(es)${
        options.scale.redis === undefined
          ? ""
          : ` over Redis (${options.scale.redis === "spawn" ? "private" : "given"})`
      } ` +
      `after ${options.warmupS} s warm-up, ${options.payloadBytes} B payloads, ${options.runs} runs, ${
        pinned ? "server CPU 0 / bench CPU 1" : "unpinned"
      }`
  )
  if (options.network === "veth" && !pinned) throw new Error("--network veth needs taskset to pin both processes")
  const split = options.network === "veth" ? openSplitNetwork(0, 1) : undefined
  process.on("exit", () => split?.close())
  console.log(`network: ${split?.description ?? "loopback (the receivers' TCP work is done on the gateway's core)"}`)
  const placement: Placement = split === undefined
    ? { host: "127.0.0.1", prefix: [] }
    : { host: split.serverHost, prefix: split.prefix }
  const results: Array<RunResult> = []
  for (let i = 1; i <= options.runs; i++) {
    const r = await run({ ...options, pin: pinned }, repoRoot, placement)
    results.push(r)
    const loss = r.expected - Math.min(r.expected, r.received)
    console.log(
      `run ${i}: p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, p99.9 ${fmt(r.p999)} ms, max ${fmt(r.max)} ms, ` +
        `${Math.round(r.deliveriesPerSec)} deliveries/s, lost ${loss} of ${r.expected}, server CPU ${
          fmt(r.serverCpuPct)
        }%, ` +
        `unexpected closes ${r.unexpectedCloses}, in-node write delay p99 <= ${
          fmt(r.inNodeP99)
        } ms, GC ${r.gc}, loadavg before ${r.load}`
    )
    console.log(
      `  gateway CPU per 1,000 deliveries ${fmt(r.serverCpuMsPer1000)} ms (all processes)${
        r.redis === undefined ? "" : `, Redis commands per published message ${perMessage(r.redis, r.published)}, ` +
          `Redis CPU per 1,000 deliveries ${
            (r.received > 0 ? (r.redis.cpuSeconds * 1e6) / r.received : Number.NaN).toFixed(3)
          } ms`
      }`
    )
    if (options.scale.processes > 1) {
      console.log(`  deliveries ${perProcessLine(r.receivedByProcess, r.expectedByProcess)}`)
    }
    if (r.steal.length > 0) console.log(`  stolen by the host: ${stealLine(r.steal)}`)
  }
  const worst = (pick: (r: RunResult) => number) => Math.max(...results.map(pick))
  const lost = results.reduce((sum, r) => sum + Math.max(0, r.expected - r.received), 0)
  console.log(
    `worst of ${results.length}: p50 ${fmt(worst((r) => r.p50))} ms, p99 ${fmt(worst((r) => r.p99))} ms, ` +
      `p99.9 ${fmt(worst((r) => r.p999))} ms, max ${fmt(worst((r) => r.max))} ms, lost ${lost}`
  )
  if (pinned) console.log(undisturbedLine(results.map((r) => ({ p99: r.p99, steal: r.steal }))))
}

const stealLine = (steal: ReadonlyArray<StealOfCore>): string =>
  steal.map((s) => `CPU ${s.cpu} ${fmt(s.meanPct)}% (worst second ${fmt(s.worstSecondPct)}%)`).join(", ")

/** A run counts as disturbed by the host when either core lost this much of some second to other guests. */
export const DISTURBED_SECOND_PCT = 10

/**
 * Beside the worst of all runs (the figure to quote): the worst p99 of the runs in which the host took less than
 * `DISTURBED_SECOND_PCT` of every second of both cores, so a reader can tell the gateway's tail from the host's.
 */
export const undisturbedLine = (
  runs: ReadonlyArray<{ readonly p99: number; readonly steal: ReadonlyArray<StealOfCore> }>
): string => {
  const quiet = runs.filter((r) => r.steal.every((s) => s.worstSecondPct < DISTURBED_SECOND_PCT))
  const disturbed = runs.length - quiet.length
  return `host: ${disturbed} of ${runs.length} runs had a second with >= ${DISTURBED_SECOND_PCT}% of a core stolen; ` +
    (quiet.length === 0
      ? "no undisturbed run to compare"
      : `worst p99 of the ${quiet.length} undisturbed: ${fmt(Math.max(...quiet.map((r) => r.p99)))} ms`)
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  // Node runs no exit handlers on a signal: turn Ctrl-C into an exit, so the servers (and a veth namespace) go too.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))
  await main()
}

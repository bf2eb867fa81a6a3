/**
 * Reconnect storm with replay (issue 9): N clients on private `wedding:<id>` channels over M topics, one publisher per
 * topic publishing all along. Every client drops at once (TCP closed without a goodbye, as when a venue's Wi-Fi goes),
 * stays away `--down` seconds, and comes back spread over `--spread` seconds, rejoining with supabase-js's
 * `config.broadcast.replay = { since: <ms of the last message it saw>, limit }`. Measured: the time until every client
 * has caught up (has every message published on its topic since its last one before the drop, up to the one published
 * when it rejoined), per-client catch-up and join latency, and at the end, after the publishers stop, every client's
 * gaps (loss), duplicates (a second copy after coming back, by `meta.id`) and re-sent messages (the overlap at
 * `since`). `since` is the UUIDv7 time of the last message's `meta.id`; when live broadcasts carry no id, the
 * publisher's send time (same machine, same clock).
 *
 * The gateway must replay for this to pass; until it does, the run ends with a plain diagnosis (join refused with the
 * gateway's reason, or "no replayed message arrived") instead of waiting forever, and exits with status 1.
 *
 * Run: `npm run bench:replay -w @wedsync/tools` (defaults: 10,000 clients, 50 topics, 1 message per second per topic,
 * 2 s down, 5 s spread, limit 25). `--processes 2 --redis spawn` runs two gateway processes over a private Redis and
 * brings every client back on the other process (replay then has to come from Redis); `--env KEY=VALUE` passes gateway
 * settings (`HISTORY_MAX_MESSAGES`, `HISTORY_TTL`).
 */
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { forEachBounded } from "./bounded.ts"
import { type LeanSocket, openLeanSocket } from "./leanSocket.ts"
import { pinSelf, tasksetAvailable } from "./machine.ts"
import { CpuMeter } from "./proc.ts"
import { readRedisStats, redisCost, type RedisStats } from "./redisStats.ts"
import { passed, renderReplay, type ReplaySummary, sumTracks, verdict } from "./replayReport.ts"
import { type BroadcastMeta, ClientTrack, metaOf, parseMeta, TopicIds } from "./replayTracker.ts"
import { parseScaleOut, type ScaleOut, SCALE_OUT_USAGE, startGateways } from "./scaleOut.ts"
import { killAllServers, type ServerHandle, sleep, startServer } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { GATEWAY_ENTRY, LIMIT_OVERRIDES, signToken, startFlags } from "./targets/gateway.ts"
import {
  decodeText,
  encodeKind3,
  heartbeatFrame,
  kind4Meta,
  kind4PayloadOffset,
  nowMs,
  readStamp,
  replyStatus,
  type Stamp,
  stampFromValue,
  stampPayload
} from "./wire.ts"
import { numberOption } from "./cliOptions.ts"

export interface ReplayOptions {
  readonly clients: number
  readonly topics: number
  /** Messages per second per topic. */
  readonly rate: number
  readonly beforeS: number
  readonly downS: number
  readonly spreadS: number
  readonly limit: number
  readonly afterS: number
  /** Give up this long after the last rejoin, or after this long without any client progressing. */
  readonly timeoutS: number
  readonly payloadBytes: number
  readonly concurrency: number
  readonly pin: boolean
  readonly env: Readonly<Record<string, string>>
  readonly scale: ScaleOut
}

export const REPLAY_USAGE = `Usage: npm run bench:replay -w @wedsync/tools -- [options]

  --clients <n>            clients, each on one private wedding channel         (default 10000)
  --topics <n>             topics (weddings); client i is on topic i mod n      (default 50)
  --rate <msg/s>           messages per second per topic, all along             (default 1)
  --before <s>             publishing before the drop                           (default 2)
  --down <s>               time between the drop and the first rejoin           (default 2)
  --spread <s>             rejoins spread over this long                        (default 5)
  --limit <n>              replay.limit of every rejoin                         (default 25)
  --after <s>              publishing after everyone caught up, then the check  (default 1)
  --timeout <s>            give up this long after the last rejoin, or after
                           this long without any client progressing            (default 30)
  --payload <bytes>        broadcast payload size                               (default 200)
  --concurrency <n>        connects/joins in flight before the drop            (default 200)
  --env KEY=VALUE          gateway setting (repeatable): HISTORY_MAX_MESSAGES, HISTORY_TTL, …
  --no-pin                 do not pin the gateways to CPU 0 / the bench to CPU 1
${SCALE_OUT_USAGE}`

export const parseReplayOptions = (argv: ReadonlyArray<string>): ReplayOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowNegative: true,
    options: {
      clients: { type: "string", default: "10000" },
      topics: { type: "string", default: "50" },
      rate: { type: "string", default: "1" },
      before: { type: "string", default: "2" },
      down: { type: "string", default: "2" },
      spread: { type: "string", default: "5" },
      limit: { type: "string", default: "25" },
      after: { type: "string", default: "1" },
      timeout: { type: "string", default: "30" },
      payload: { type: "string", default: "200" },
      concurrency: { type: "string", default: "200" },
      env: { type: "string", multiple: true, default: [] },
      pin: { type: "boolean", default: true },
      processes: { type: "string", default: "1" },
      redis: { type: "string" }
    }
  })
  const number = (name: keyof typeof values, min: number, whole = false): number =>
    numberOption(values, name, min, whole)
  const env: Record<string, string> = {}
  for (const pair of values.env) {
    const eq = pair.indexOf("=")
    if (eq <= 0) throw new Error(`--env takes KEY=VALUE, got "${pair}"`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  const options: ReplayOptions = {
    clients: number("clients", 1, true),
    topics: number("topics", 1, true),
    rate: number("rate", 0.01),
    beforeS: number("before", 0.1),
    downS: number("down", 0),
    spreadS: number("spread", 0),
    limit: number("limit", 1, true),
    afterS: number("after", 0),
    timeoutS: number("timeout", 1),
    payloadBytes: number("payload", 40, true),
    concurrency: number("concurrency", 1, true),
    pin: values.pin,
    env,
    scale: parseScaleOut(values.processes, values.redis)
  }
  if (options.clients < options.topics) throw new Error("--clients must be at least --topics (one client per topic)")
  return options
}

/** The most messages one client misses: those published while it was away, the spread included. */
export const mostMissed = (options: ReplayOptions): number =>
  Math.ceil(options.rate * (options.downS + options.spreadS)) + 1

const JOIN_TIMEOUT_MS = 15_000

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a")
const secondsSince = (t: number) => (performance.now() - t) / 1000

interface Replay {
  readonly since: number
  readonly limit: number
}

const joinFrame = (topic: string, token: string, replay: Replay | undefined): string =>
  JSON.stringify(["1", "1", topic, "phx_join", {
    config: {
      broadcast: { ack: false, self: false, ...(replay === undefined ? {} : { replay }) },
      presence: { enabled: false },
      private: true
    },
    access_token: token
  }])

class Diagnosis {
  refusals = 0
  firstRefusal: string | undefined
  systemMessages = 0
  readonly systemTexts = new Set<string>()
  channelClosed = 0
  unexpectedCloses = 0

  refused(reason: string): void {
    this.refusals++
    this.firstRefusal ??= reason
  }

  system(payload: unknown): void {
    this.systemMessages++
    if (this.systemTexts.size < 3) this.systemTexts.add(JSON.stringify(payload).slice(0, 300))
  }
}

type StartServer = (
  port: number,
  env: Readonly<Record<string, string>>,
  cpu: number | undefined
) => Promise<ServerHandle>

/** The gateway of the working tree, as `npm start` runs it, with its limits lifted and `options.env` on top. */
const gatewayStarter = (repoRoot: string, options: ReplayOptions): StartServer => (port, env, cpu) =>
  startServer({
    name: "gateway",
    args: [...startFlags(repoRoot), GATEWAY_ENTRY],
    cwd: repoRoot,
    env: {
      PORT: String(port),
      HOST: "127.0.0.1",
      ...LIMIT_OVERRIDES,
      // Refusals at once: a refused rejoin is the diagnosis, not something to wait 5 s for.
      CHANNEL_ERROR_BACKOFF_MS: "0",
      CONNECT_ERROR_BACKOFF_MS: "0",
      ...env,
      ...options.env
    },
    cpu,
    startTimeoutMs: 30_000
  })

/** One storm against the servers `start` starts; prints the report and returns whether it passed, or why not. */
export const runReplay = async (
  options: ReplayOptions,
  start: StartServer
): Promise<{ readonly ok: boolean; readonly failure: string | undefined }> => {
  const pinned = options.pin && tasksetAvailable() && pinSelf(1)
  const runId = randomBytes(3).toString("hex")
  const topicOf = (t: number) => `realtime:wedding:replay-${runId}-${t}`
  const gateways = await startGateways(
    options.scale,
    (port, env) => start(port, env, pinned ? 0 : undefined),
    pinned ? 0 : undefined
  )
  try {
    const processes = gateways.servers.length
    const tokens = await Promise.all(
      Array.from(
        { length: options.topics },
        (_, t) =>
          signToken({
            role: "authenticated",
            sub: `replay-${runId}-${t}`,
            app_metadata: { wedding_ids: [`replay-${runId}-${t}`] }
          })
      )
    )
    const serviceToken = await signToken({ role: "service_role" })
    const endpoint = (process: number, token: string) => ({
      host: "127.0.0.1",
      port: gateways.servers[process]!.port,
      path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`
    })
    const diagnosis = new Diagnosis()
    const tracks = Array.from({ length: options.clients }, () => new ClientTrack())
    const ids = Array.from({ length: options.topics }, () => new TopicIds())
    const sockets: Array<LeanSocket | undefined> = Array.from({ length: options.clients }, () => undefined)
    const joinLatency = new LatencyHistogram({ minValue: 0.01 })
    const catchUp = new LatencyHistogram({ minValue: 0.01 })
    const joinSentAt = new Float64Array(options.clients)
    let dropped = false
    let progressAt = performance.now()
    let missingId = 0
    const stamp: Stamp = { t: 0, s: 0 }

    // Progress for the stall check is a replayed message or a client catching up: live messages alone keep coming
    // whether or not the gateway replays.
    const afterward = (client: number, change: () => void) => {
      const track = tracks[client]!
      const before = track.caughtUpAt
      change()
      if (before === undefined && track.caughtUpAt !== undefined) {
        progressAt = performance.now()
        catchUp.record(track.caughtUpAt - joinSentAt[client]!)
      }
    }
    const onBroadcast = (client: number, seq: number, sentAt: number, meta: BroadcastMeta) => {
      const t = client % options.topics
      if (meta.id === undefined) missingId++
      else if (!ids[t]!.check(meta.id, seq)) return
      if (dropped && meta.replayed) progressAt = performance.now()
      afterward(client, () => tracks[client]!.receive(seq, meta, sentAt, performance.now()))
    }

    /** Opens client `i` on `process`, joins (with `replay` after the drop), resolves on the join reply. */
    const connect = (client: number, process: number, replay: Replay | undefined) => {
      const t = client % options.topics
      return new Promise<void>((resolve, reject) => {
        let replied = false
        const timer = setTimeout(() => {
          if (replied) return
          replied = true
          reject(new Error(`no join reply within ${JOIN_TIMEOUT_MS} ms`))
        }, JOIN_TIMEOUT_MS)
        const onText = (text: string) => {
          const message = decodeText(text)
          if (message === undefined) return
          if (message.event === "phx_reply" && message.ref === "1" && message.topic === topicOf(t) && !replied) {
            replied = true
            clearTimeout(timer)
            const status = replyStatus(message.payload)
            if (status?.ok === true) {
              joinLatency.record(performance.now() - joinSentAt[client]!)
              afterward(client, () => tracks[client]!.checkCaughtUp(performance.now()))
              resolve()
            } else {
              const reason = status?.detail ?? JSON.stringify(message.payload)
              diagnosis.refused(reason)
              reject(new Error(`join refused: ${reason}`))
            }
          } else if (message.event === "broadcast" && stampFromValue(message.payload, stamp)) {
            const payload = message.payload
            onBroadcast(
              client,
              stamp.s,
              stamp.t,
              metaOf(typeof payload === "object" && payload !== null && "meta" in payload ? payload.meta : undefined)
            )
          } else if (message.event === "system") {
            diagnosis.system(message.payload)
            // The explicit notice beyond retention; its wording is the gateway's, so any system message about replay.
            if (dropped && /replay/i.test(JSON.stringify(message.payload))) {
              progressAt = performance.now()
              tracks[client]!.toldIncomplete(progressAt)
            }
          } else if (message.event === "phx_error" || message.event === "phx_close") {
            diagnosis.channelClosed++
          }
        }
        openLeanSocket(endpoint(process, tokens[t]!), {
          onMessage: (data, start, end, binary) => {
            if (!binary) return onText(data.toString("utf8", start, end))
            const offset = kind4PayloadOffset(data, start, end)
            if (offset < 0 || !readStamp(data, offset, end, stamp)) return
            onBroadcast(client, stamp.s, stamp.t, parseMeta(kind4Meta(data, start, end)))
          },
          onClose: (reason) => {
            diagnosis.unexpectedCloses++
            if (replied) return
            replied = true
            clearTimeout(timer)
            reject(new Error(`closed before the join reply: ${reason}`))
          }
        }, 30_000).then((socket) => {
          sockets[client] = socket
          joinSentAt[client] = performance.now()
          socket.sendText(joinFrame(topicOf(t), tokens[t]!, replay))
        }, (error: unknown) => {
          replied = true
          clearTimeout(timer)
          reject(error)
        })
      })
    }

    console.log(
      `replay storm: ${options.clients} clients on ${options.topics} private topics, ${options.rate} msg/s per topic, ` +
        `${options.downS} s down, rejoins over ${options.spreadS} s with replay limit ${options.limit}, ` +
        `${gateways.description}, ${pinned ? "gateways CPU 0 / bench CPU 1" : "unpinned"}${
          Object.keys(options.env).length > 0
            ? `, env ${Object.entries(options.env).map(([k, v]) => `${k}=${v}`).join(" ")}`
            : ""
        }`
    )
    const connectStarted = performance.now()
    await forEachBounded(options.clients, options.concurrency, (i) => connect(i, i % processes, undefined))
    console.log(`  ${options.clients} clients joined in ${fmt(secondsSince(connectStarted), 2)} s`)

    // Publishers: one per topic on process 1, joined with the service role, sequence numbers per topic from 1.
    const publishers = await Promise.all(Array.from({ length: options.topics }, async (_, t) => {
      const socket = await openLeanSocket(endpoint(0, serviceToken), {
        onMessage: () => undefined,
        onClose: () => void diagnosis.unexpectedCloses++
      }, 30_000)
      socket.sendText(joinFrame(topicOf(t), serviceToken, undefined))
      return socket
    }))
    await sleep(500)
    const published = Array.from({ length: options.topics }, () => 0)
    const publishStarted = performance.now()
    let sent = 0
    const publishTimer = setInterval(() => {
      const due = Math.floor(secondsSince(publishStarted) * options.rate * options.topics)
      while (sent < due) {
        const t = sent++ % options.topics
        const seq = ++published[t]!
        publishers[t]!.sendBinary(
          encodeKind3("1", String(seq + 1), topicOf(t), "replay", stampPayload(nowMs(), seq, options.payloadBytes))
        )
      }
    }, 5)
    // realtime-js heartbeats every 25 s; a long wait for stragglers must not look like dead sockets.
    let heartbeatCursor = 0
    let ticks = 0
    const heartbeat = setInterval(() => {
      const perTick = Math.max(1, Math.ceil(options.clients / 250))
      for (let k = 0; k < perTick; k++) {
        const socket = sockets[heartbeatCursor++ % options.clients]
        if (socket?.isOpen()) socket.sendText(heartbeatFrame(String(heartbeatCursor)))
      }
      if (++ticks % 250 === 0) { for (const publisher of publishers) publisher.sendText(heartbeatFrame("hb")) }
    }, 100)

    try {
      await sleep(options.beforeS * 1000)
      // The drop: every client's TCP connection closed at once, no close frame.
      const missingBeforeDrop = tracks.reduce((sum, track) => sum + track.missingBeforeDrop(), 0)
      const redisBefore: RedisStats | undefined = gateways.redisUrl === undefined
        ? undefined
        : await readRedisStats(gateways.redisUrl)
      const cpu = new CpuMeter(gateways.pids)
      cpu.start()
      const dropAt = performance.now()
      dropped = true
      joinLatency.reset()
      for (const socket of sockets) socket?.close()
      const sinces = tracks.map((track) => track.drop())
      const sinceFromIds = sinces.filter((s) => s.fromId).length
      const neverReceived = sinces.filter((s) => s.sinceMs === undefined).length
      const silentByProcess = gateways.servers.map((_, p) =>
        sinces.filter((s, i) => s.sinceMs === undefined && i % processes === p).length
      )
      await sleep(options.downS * 1000)

      // Rejoins spread evenly over the spread, each on the next process (the same one with a single process).
      const rejoinStart = performance.now()
      const rejoins: Array<Promise<void>> = []
      let rejoinFailures = 0
      for (let i = 0; i < options.clients; i++) {
        const due = rejoinStart + (options.spreadS * 1000 * i) / options.clients
        const wait = due - performance.now()
        if (wait > 1) await sleep(wait)
        const t = i % options.topics
        tracks[i]!.rejoining(published[t]!)
        const since = sinces[i]!.sinceMs ?? Math.floor(nowMs() - (options.beforeS + options.downS) * 1000)
        rejoins.push(
          connect(i, (i + 1) % processes, { since, limit: options.limit }).catch(() => void rejoinFailures++)
        )
      }
      await Promise.all(rejoins)
      const lastRejoinAt = performance.now()
      progressAt = Math.max(progressAt, lastRejoinAt)
      const count = (pick: (track: ClientTrack) => boolean) => tracks.reduce((n, track) => n + (pick(track) ? 1 : 0), 0)
      const stallMs = Math.min(options.timeoutS * 1000, 5_000)
      while (
        count((track) => track.settled) < options.clients - rejoinFailures &&
        performance.now() - lastRejoinAt < options.timeoutS * 1000 &&
        performance.now() - progressAt < stallMs
      ) await sleep(20)
      const allCaughtUpAt = tracks.reduce((latest, track) => Math.max(latest, track.caughtUpAt ?? Number.NaN), 0)
      const caught = count((track) => track.caughtUpAt !== undefined)
      const cpuSeconds = cpu.seconds()
      const cpuPct = cpu.read()
      const redis = gateways.redisUrl === undefined || redisBefore === undefined
        ? undefined
        : redisCost(redisBefore, await readRedisStats(gateways.redisUrl))

      // Keep publishing a little, stop, let the last deliveries land, then check every client's topic to the end.
      await sleep(options.afterS * 1000)
      clearInterval(publishTimer)
      await sleep(1_000)
      gateways.alive()
      const summary: ReplaySummary = {
        clients: options.clients,
        processes,
        limit: options.limit,
        mostMissed: mostMissed(options),
        caught,
        settled: count((track) => track.settled),
        told: count((track) => track.toldIncompleteAt !== undefined),
        allCaughtUp: caught === options.clients
          ? {
            afterDropS: (allCaughtUpAt - dropAt) / 1000,
            afterFirstRejoinS: (allCaughtUpAt - rejoinStart) / 1000,
            afterLastRejoinS: (allCaughtUpAt - lastRejoinAt) / 1000
          }
          : undefined,
        joinLatency,
        catchUp,
        ...sumTracks(tracks, (client) => published[client % options.topics]!),
        conflicts: ids.reduce((n, topic) => n + topic.conflicts, 0),
        sinceFromIds,
        neverReceived,
        neverReceivedByProcess: silentByProcess,
        missingId,
        missingBeforeDrop,
        cpuPct,
        cpuSeconds,
        redis,
        rejoinFailures,
        refusals: diagnosis.refusals,
        firstRefusal: diagnosis.firstRefusal,
        systemMessages: diagnosis.systemMessages,
        systemTexts: [...diagnosis.systemTexts],
        channelClosed: diagnosis.channelClosed,
        unexpectedCloses: diagnosis.unexpectedCloses
      }
      console.log(renderReplay(summary))
      const failure = passed(summary) ? undefined : verdict(summary)
      if (failure !== undefined) console.log(`  FAILED: ${failure}`)
      return { ok: failure === undefined, failure }
    } finally {
      clearInterval(publishTimer)
      clearInterval(heartbeat)
      for (const socket of [...sockets, ...publishers]) socket?.close()
    }
  } finally {
    await gateways.stop()
  }
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      killAllServers()
      process.exit(130)
    })
  }
  const argv = process.argv.slice(2)
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(REPLAY_USAGE)
    process.exit(0)
  }
  let options: ReplayOptions
  try {
    options = parseReplayOptions(argv)
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${REPLAY_USAGE}`)
    process.exit(2)
  }
  try {
    const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
    const { ok } = await runReplay(options, gatewayStarter(repoRoot, options))
    process.exit(ok ? 0 : 1)
  } catch (error) {
    console.log(`  FAILED: ${error instanceof Error ? error.message : String(error)}`)
    killAllServers()
    process.exit(1)
  }
}

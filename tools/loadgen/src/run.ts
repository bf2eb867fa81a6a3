/**
 * One season run: the compressed day's devices join their private `wedding:<id>` channels on the lean raw-TCP client
 * of the benches, track presence, and receive each wedding's broadcasts (one service-role publisher per wedding, rate
 * rising over the day); the gateway's /metrics and /admin/scaling are sampled on the way. Latency is measured by the
 * devices (send stamp to receipt, one clock); a loss is a gap in the sequence a device saw after its first delivery.
 * With `--database-url` the gateway also streams a table of the run's own schema (`timeline_items`): every device binds
 * INSERT on its wedding's rows in the same join, and a writer inserts rows per wedding at a rate rising like the
 * broadcasts', each row carrying its insert time and its wedding's sequence number.
 */
import pg from "pg"
import { randomBytes } from "node:crypto"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { dropChangesFixture, fixtureNames } from "../../bench/src/changesFixture.ts"
import { type LeanSocket, openLeanSocket } from "../../bench/src/leanSocket.ts"
import { pinSelf, tasksetAvailable } from "../../bench/src/machine.ts"
import { freePort, type ServerHandle, sleep, startServer } from "../../bench/src/serverProcess.ts"
import { LatencyHistogram } from "../../bench/src/stats.ts"
import { GATEWAY_ENTRY, JWT_SECRET, LIMIT_OVERRIDES, signToken, startFlags } from "../../bench/src/targets/gateway.ts"
import {
  decodeText,
  encodeKind3,
  heartbeatFrame,
  kind4PayloadOffset,
  nowMs,
  readStamp,
  replyStatus,
  type Stamp,
  stampPayload
} from "../../bench/src/wire.ts"
import type { LoadgenOptions } from "./cli.ts"
import { Progress } from "./progress.ts"
import { renderReport } from "./report.ts"
import { buildSchedule, type DaySchedule, parseCalendar, rateAt } from "./schedule.ts"
import type { Sample, Summary } from "./summary.ts"
import { sumSeries } from "../../bench/src/exposition.ts"

const RATE_GROWTH = 10
const PAYLOAD_BYTES = 120
const JOIN_TIMEOUT_MS = 15_000
const HTTP_TIMEOUT_MS = 2_000
/** realtime-js heartbeats every 25 s; spread over ticks so no second sends them all. */
const HEARTBEAT_PERIOD_MS = 25_000
const TICK_MS = 20
/** Tokens outlive any run (`--minutes` is bounded well below this). */
const LOADGEN_TOKEN_TTL_S = 6 * 3600

export interface RunResult {
  readonly summary: Summary
  readonly reportPath: string
  readonly summaryPath: string
}

const getText = async (url: string, headers: Record<string, string> = {}): Promise<string | undefined> => {
  try {
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
    return response.ok ? await response.text() : undefined
  } catch {
    return undefined
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/** `decision.desiredReplicas` and the top-level `reason` of an `/admin/scaling` answer. */
export const readScaling = (text: string | undefined): { replicas: number | null; reason: string | null } => {
  if (text === undefined) return { replicas: null, reason: null }
  try {
    const parsed: unknown = JSON.parse(text)
    if (!isRecord(parsed)) return { replicas: null, reason: null }
    const decision = parsed["decision"]
    const replicas = isRecord(decision) && typeof decision["desiredReplicas"] === "number"
      ? decision["desiredReplicas"]
      : null
    return { replicas, reason: typeof parsed["reason"] === "string" ? parsed["reason"].slice(0, 300) : null }
  } catch {
    return { replicas: null, reason: null }
  }
}

const cacheHitRatio = (exposition: string): number | null => {
  const hits = (sumSeries(exposition, "wedsync_cache_hits_total") ?? 0) +
    (sumSeries(exposition, "wedsync_cache_stale_served_total") ?? 0)
  // An L1 miss goes on to L2 and is counted again there: only the last tier's misses are misses of the cache.
  const misses = (sumSeries(exposition, "wedsync_cache_misses_total") ?? 0) -
    (sumSeries(exposition, "wedsync_cache_misses_total", `tier="l1"`) ?? 0)
  return hits + misses > 0 ? hits / (hits + misses) : null
}

const percentileOrNull = (h: LatencyHistogram, q: number): number | null => (h.count === 0 ? null : h.percentile(q))

// A reply to one of our pushes starts `["1","` (join ref "1"); presence and broadcasts pushed by the server do not.
const isOurReply = (data: Buffer, start: number, end: number): boolean =>
  end - start > 6 && data[start] === 0x5b && data[start + 1] === 0x22 && data[start + 2] === 0x31 &&
  data[start + 3] === 0x22 && data[start + 4] === 0x2c && data[start + 5] === 0x22

interface Gateway {
  readonly httpBase: string
  readonly wsHost: string
  readonly wsPort: number
  readonly adminToken: string | undefined
  readonly secret: string
  readonly description: string
  readonly stop: () => Promise<void>
}

const startOwnGateway = async (repoRoot: string, env: Readonly<Record<string, string>> = {}): Promise<Gateway> => {
  const pinned = tasksetAvailable()
  const adminToken = randomBytes(24).toString("hex")
  const server: ServerHandle = await startServer({
    name: "gateway",
    args: [...startFlags(repoRoot), GATEWAY_ENTRY],
    cwd: repoRoot,
    env: { PORT: String(await freePort()), HOST: "127.0.0.1", ...LIMIT_OVERRIDES, ADMIN_TOKEN: adminToken, ...env },
    cpu: pinned ? 0 : undefined,
    startTimeoutMs: 30_000
  })
  const self = pinned && pinSelf(1)
  return {
    httpBase: `http://127.0.0.1:${server.port}`,
    wsHost: "127.0.0.1",
    wsPort: server.port,
    adminToken,
    secret: JWT_SECRET,
    description: `started by the loadgen (${self ? "gateway CPU 0, loadgen CPU 1" : "unpinned"}, bench limits lifted)`,
    stop: server.stop
  }
}

const givenGateway = (options: LoadgenOptions): Gateway => {
  const url = new URL(options.url ?? "")
  return {
    httpBase: url.origin,
    wsHost: url.hostname,
    wsPort: Number(url.port || 80),
    adminToken: options.adminToken,
    secret: options.jwtSecret ?? JWT_SECRET,
    description: `${url.origin} (given with --url)`,
    stop: () => Promise.resolve()
  }
}

const CHANGES_TABLE = "timeline_items"

/** The run's own schema, table and publication; the gateway makes the slot. */
const createChangesFixture = async (databaseUrl: string) => {
  const fixture = fixtureNames("season")
  const db = new pg.Client({ connectionString: databaseUrl })
  db.on("error", () => undefined)
  await db.connect()
  await db.query(`create schema ${fixture.schema}`)
  await db.query(
    `create table ${fixture.schema}.${CHANGES_TABLE} (id bigint generated always as identity primary key,
       wedding_id text not null, seq bigint not null, sent_at float8 not null, title text)`
  )
  await db.query(`create publication ${fixture.publication} for table ${fixture.schema}.${CHANGES_TABLE}`)
  return { fixture, db }
}

/** The number after `"<key>":` in a JSON text, without parsing the whole frame (every device parses every row). */
export const numberAfter = (text: string, key: string): number | undefined => {
  const at = text.indexOf(`"${key}":`)
  if (at < 0) return undefined
  const start = at + key.length + 3
  let end = start
  while (end < text.length && "-+.0123456789eE".includes(text[end]!)) end++
  const n = Number(text.slice(start, end))
  return end > start && Number.isFinite(n) ? n : undefined
}

export const runSeason = async (options: LoadgenOptions, repoRoot: string): Promise<RunResult> => {
  const calendarPath = resolve(options.calendar)
  const calendar = parseCalendar(readFileSync(calendarPath, "utf8"))
  if ("error" in calendar) throw new Error(`${calendarPath}: ${calendar.error}`)
  const schedule: DaySchedule = buildSchedule(calendar.weddings, {
    durationMs: options.minutes * 60_000,
    maxDevices: options.devices,
    baseRate: options.rate,
    rateGrowth: RATE_GROWTH
  })
  const changes = options.databaseUrl === undefined ? undefined : await createChangesFixture(options.databaseUrl)
  let gateway: Gateway
  try {
    gateway = options.url === undefined
      ? await startOwnGateway(
        repoRoot,
        changes === undefined || options.databaseUrl === undefined ? {} : {
          DATABASE_URL: options.databaseUrl,
          REPLICATION_SLOT: changes.fixture.slot,
          REPLICATION_PUBLICATION: changes.fixture.publication
        }
      )
      : givenGateway(options)
  } catch (error) {
    if (changes !== undefined) await dropChangesFixture(changes.db, changes.fixture)
    throw error
  }
  const binding = changes === undefined ? undefined : { schema: changes.fixture.schema, table: CHANGES_TABLE }
  const runId = randomBytes(3).toString("hex")
  const topicOf = (w: number) => `realtime:wedding:${schedule.weddings[w]!.id}`
  const endpoint = (token: string) => ({
    host: gateway.wsHost,
    port: gateway.wsPort,
    path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`
  })
  const sockets: Array<LeanSocket | undefined> = []
  const publishers: Array<LeanSocket> = []
  try {
    // One token per supplier (its devices share it), allowing only its wedding.
    const tokens = new Map<string, string>()
    for (const d of schedule.devices) {
      const key = `${d.wedding}/${d.supplier}`
      if (tokens.has(key)) continue
      const id = schedule.weddings[d.wedding]!.id
      tokens.set(
        key,
        await signToken(
          {
            role: "authenticated",
            sub: `loadgen-${runId}-${id}-s${d.supplier}`,
            app_metadata: { wedding_ids: [id] }
          },
          LOADGEN_TOKEN_TTL_S,
          gateway.secret
        )
      )
    }
    const serviceToken = await signToken({ role: "service_role" }, LOADGEN_TOKEN_TTL_S, gateway.secret)

    const n = schedule.devices.length
    const lastSeq = new Float64Array(n)
    const isPresent = new Uint8Array(n)
    const overall = new LatencyHistogram({ minValue: 0.01 })
    const window = new LatencyHistogram({ minValue: 0.01 })
    const stamp: Stamp = { t: 0, s: 0 }
    let deliveries = 0
    let lost = 0
    let joined = 0
    let present = 0
    let joinFailures = 0
    let firstJoinFailure: string | null = null
    let presenceTracks = 0
    const lastChangeSeq = new Float64Array(n)
    const changeLatency = new LatencyHistogram({ minValue: 0.01 })
    let changeDeliveries = 0
    let changesLost = 0
    let rowsInserted = 0
    const failJoin = (reason: string) => {
      joinFailures++
      firstJoinFailure ??= reason.slice(0, 300)
    }

    const onDelivery = (device: number, data: Buffer, start: number, end: number) => {
      const offset = kind4PayloadOffset(data, start, end)
      if (offset < 0 || !readStamp(data, offset, end, stamp)) return
      const latency = nowMs() - stamp.t
      overall.record(latency)
      window.record(latency)
      deliveries++
      const last = lastSeq[device]!
      if (last > 0 && stamp.s > last + 1) lost += stamp.s - last - 1
      if (stamp.s > last) lastSeq[device] = stamp.s
    }

    const onChange = (device: number, text: string) => {
      const sentAt = numberAfter(text, "sent_at")
      const seq = numberAfter(text, "seq")
      if (sentAt === undefined || seq === undefined) return
      changeLatency.record(nowMs() - sentAt)
      changeDeliveries++
      const last = lastChangeSeq[device]!
      if (last > 0 && seq > last + 1) changesLost += seq - last - 1
      if (seq > last) lastChangeSeq[device] = seq
    }

    const joinDevice = (device: number): void => {
      const plan = schedule.devices[device]!
      const token = tokens.get(`${plan.wedding}/${plan.supplier}`)!
      const topic = topicOf(plan.wedding)
      let replied = false
      const timer = setTimeout(() => {
        if (!replied) failJoin("no join reply within 15 s")
        replied = true
      }, JOIN_TIMEOUT_MS)
      openLeanSocket(endpoint(token), {
        onMessage: (data, start, end, binary) => {
          if (binary) return onDelivery(device, data, start, end)
          if (binding !== undefined && !isOurReply(data, start, end)) {
            const text = data.toString("utf8", start, end)
            if (text.includes(`"postgres_changes",{"ids"`)) onChange(device, text)
            return
          }
          if (!isOurReply(data, start, end)) return
          const message = decodeText(data.toString("utf8", start, end))
          const status = message === undefined ? undefined : replyStatus(message.payload)
          if (message?.ref === "2") {
            if (status?.ok === true) presenceTracks++
            return
          }
          if (message?.ref !== "1" || replied) return
          replied = true
          clearTimeout(timer)
          if (status?.ok !== true) return failJoin(status?.detail ?? "join refused")
          joined++
          present++
          isPresent[device] = 1
          sockets[device]?.sendText(JSON.stringify(["1", "2", topic, "presence", {
            type: "presence",
            event: "track",
            payload: { device: `d${device}`, supplier: plan.supplier }
          }]))
        },
        onClose: (reason) => {
          if (!replied) failJoin(`closed before the join reply: ${reason}`)
          replied = true
        }
      }, JOIN_TIMEOUT_MS).then((socket) => {
        sockets[device] = socket
        socket.sendText(JSON.stringify(["1", "1", topic, "phx_join", {
          config: {
            broadcast: { ack: false, self: false },
            presence: { key: `d${device}`, enabled: true },
            private: true,
            ...(binding === undefined ? {} : {
              postgres_changes: [{
                event: "INSERT",
                ...binding,
                filter: `wedding_id=eq.${schedule.weddings[plan.wedding]!.id}`
              }]
            })
          },
          access_token: token
        }]))
      }, (error: unknown) => {
        replied = true
        clearTimeout(timer)
        failJoin(error instanceof Error ? error.message : String(error))
      })
    }

    // Publishers first, each waiting for its join reply, so that no device waits on a wedding with no sender.
    for (let w = 0; w < schedule.weddings.length; w++) {
      let onReply: (ok: boolean) => void = () => undefined
      const replied = new Promise<boolean>((resolveReply) => (onReply = resolveReply))
      const socket = await openLeanSocket(endpoint(serviceToken), {
        onMessage: (data, start, end, binary) => {
          if (binary || !isOurReply(data, start, end)) return
          const message = decodeText(data.toString("utf8", start, end))
          if (message?.ref === "1") onReply(replyStatus(message.payload)?.ok === true)
        },
        onClose: () => onReply(false)
      }, JOIN_TIMEOUT_MS)
      publishers.push(socket)
      socket.sendText(JSON.stringify(["1", "1", topicOf(w), "phx_join", {
        config: { broadcast: { ack: false, self: false }, presence: { enabled: false }, private: true },
        access_token: serviceToken
      }]))
      if (!(await Promise.race([replied, sleep(JOIN_TIMEOUT_MS).then(() => false)]))) {
        throw new Error(`the publisher of ${topicOf(w)} was not let in`)
      }
    }

    const byLeave = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
      schedule.devices[a]!.leaveAtMs - schedule.devices[b]!.leaveAtMs
    )
    const seq = new Float64Array(schedule.weddings.length)
    const credit = new Float64Array(schedule.weddings.length)
    const rowSeq = new Float64Array(schedule.weddings.length)
    const rowCredit = new Float64Array(schedule.weddings.length)
    // Rows due wait here while an insert is in flight: one statement at a time, in order, so a wedding's sequence
    // numbers commit in the order the devices must see them.
    let pendingRows: Array<{ readonly wedding: string; readonly seq: number }> = []
    let inserting: Promise<void> | undefined
    let insertFailure: string | undefined
    const flushRows = () => {
      if (changes === undefined || inserting !== undefined || pendingRows.length === 0) return
      const rows = pendingRows
      pendingRows = []
      // Values as parameters (arrays unnested), never spliced into the SQL text: the ids come from a calendar file.
      inserting = changes.db.query(
        `insert into ${changes.fixture.schema}.${CHANGES_TABLE} (wedding_id, seq, title, sent_at)
         select w, s, 'season', $3 from unnest($1::text[], $2::bigint[]) as r(w, s)`,
        [rows.map((r) => r.wedding), rows.map((r) => r.seq), nowMs()]
      ).then(
        () => void (rowsInserted += rows.length),
        (error: unknown) => void (insertFailure ??= error instanceof Error ? error.message : String(error))
      ).finally(() => {
        inserting = undefined
      })
    }
    let broadcastsSent = 0
    let joinCursor = 0
    let leaveCursor = 0
    let heartbeatCursor = 0
    let ticks = 0
    const started = performance.now()
    let lastTick = started
    const elapsed = () => performance.now() - started

    const tick = () => {
      const now = performance.now()
      const at = now - started
      const dt = (now - lastTick) / 1000
      lastTick = now
      while (joinCursor < n && schedule.devices[joinCursor]!.joinAtMs <= at) joinDevice(joinCursor++)
      while (leaveCursor < n && schedule.devices[byLeave[leaveCursor]!]!.leaveAtMs <= at) {
        const device = byLeave[leaveCursor++]!
        const socket = sockets[device]
        if (socket !== undefined) {
          if (isPresent[device] === 1) present--
          isPresent[device] = 0
          socket.close()
          sockets[device] = undefined
        }
      }
      const rate = rateAt(schedule, at)
      schedule.weddings.forEach((w, i) => {
        if (at < w.activeFromMs || at > w.activeUntilMs) return
        credit[i] = credit[i]! + rate * dt
        while (credit[i]! >= 1) {
          credit[i] = credit[i]! - 1
          const s = ++seq[i]!
          publishers[i]!.sendBinary(
            encodeKind3("1", String(s + 1), topicOf(i), "season", stampPayload(nowMs(), s, PAYLOAD_BYTES))
          )
          broadcastsSent++
        }
      })
      if (changes !== undefined) {
        // Rows rise like the broadcasts: `--changes-rate` at the start, 10x at the end.
        const rowRate = options.changesRate *
          (1 + (schedule.rateGrowth - 1) * Math.min(1, Math.max(0, at / schedule.durationMs)))
        schedule.weddings.forEach((w, i) => {
          if (at < w.activeFromMs || at > w.activeUntilMs) return
          rowCredit[i] = rowCredit[i]! + rowRate * dt
          while (rowCredit[i]! >= 1) {
            rowCredit[i] = rowCredit[i]! - 1
            pendingRows.push({ wedding: w.id, seq: ++rowSeq[i]! })
          }
        })
        flushRows()
      }
      const perTick = Math.ceil((n * TICK_MS) / HEARTBEAT_PERIOD_MS)
      for (let k = 0; k < perTick && n > 0; k++) {
        const socket = sockets[heartbeatCursor++ % n]
        if (socket?.isOpen()) socket.sendText(heartbeatFrame("hb"))
      }
      if (++ticks % (HEARTBEAT_PERIOD_MS / TICK_MS) === 0) {
        for (const p of publishers)
          p.sendText(heartbeatFrame("hb"))
      }
    }

    const samples: Array<Sample> = []
    let deliveriesAtLastSample = 0
    let lastSampleAt = started
    const sample = async () => {
      const headers: Record<string, string> = gateway.adminToken === undefined
        ? {}
        : { authorization: `Bearer ${gateway.adminToken}` }
      const [metrics, scalingText] = await Promise.all([
        getText(`${gateway.httpBase}/metrics`),
        gateway.adminToken === undefined
          ? Promise.resolve(undefined)
          : getText(`${gateway.httpBase}/admin/scaling`, headers)
      ])
      const now = performance.now()
      const scaling = readScaling(scalingText)
      samples.push({
        t: (now - started) / 1000,
        p50Ms: percentileOrNull(window, 0.5),
        p99Ms: percentileOrNull(window, 0.99),
        devices: sockets.reduce((count, s) => (s?.isOpen() === true ? count + 1 : count), 0),
        gatewayConnections: metrics === undefined ? null : sumSeries(metrics, "wedsync_connection_open") ?? null,
        deliveriesPerS: (deliveries - deliveriesAtLastSample) / Math.max(0.001, (now - lastSampleAt) / 1000),
        desiredReplicas: scaling.replicas,
        reason: scaling.reason,
        cacheHitRatio: metrics === undefined ? null : cacheHitRatio(metrics)
      })
      window.reset()
      deliveriesAtLastSample = deliveries
      lastSampleAt = now
    }

    const progress = new Progress(process.stderr, schedule.durationMs)
    const ticker = setInterval(tick, TICK_MS)
    let sampling = Promise.resolve()
    const sampler = setInterval(() => {
      sampling = sampling.then(sample)
    }, options.sampleS * 1000)
    const drawer = setInterval(
      () => progress.draw(elapsed(), `${present} devices, ${deliveries} deliveries, ${lost} lost`),
      250
    )
    try {
      await sleep(schedule.durationMs)
    } finally {
      clearInterval(ticker)
      clearInterval(sampler)
      clearInterval(drawer)
    }
    // In-flight broadcasts land before the final sample and the sockets close.
    await inserting
    await sleep(Math.min(2_000, options.sampleS * 1000))
    await sampling
    await sample()
    progress.done(`${joined} joined, ${deliveries} deliveries, ${lost} lost`)

    const summary: Summary = {
      startedAt: new Date(performance.timeOrigin + started).toISOString(),
      calendar: calendarPath,
      weddings: schedule.weddings.length,
      durationS: schedule.durationMs / 1000,
      compression: schedule.compression,
      devicesPlanned: n,
      forecastDevices: schedule.forecastDevices,
      devicesJoined: joined,
      joinFailures,
      firstJoinFailure,
      presenceTracks,
      broadcastsSent,
      deliveries,
      lost,
      latency: {
        p50Ms: percentileOrNull(overall, 0.5),
        p99Ms: percentileOrNull(overall, 0.99),
        maxMs: overall.count === 0 ? null : overall.max
      },
      rate: { basePerWedding: schedule.baseRate, growth: schedule.rateGrowth },
      gateway: gateway.description,
      postgresChanges: changes === undefined
        ? "skipped (no --database-url)"
        : `INSERT on ${changes.fixture.schema}.${CHANGES_TABLE}, ${options.changesRate}/s per wedding rising to ${RATE_GROWTH}x${
          insertFailure === undefined ? "" : `; an insert failed: ${insertFailure}`
        }`,
      changes: changes === undefined ? null : {
        inserted: rowsInserted,
        deliveries: changeDeliveries,
        lost: changesLost,
        latency: {
          p50Ms: percentileOrNull(changeLatency, 0.5),
          p99Ms: percentileOrNull(changeLatency, 0.99),
          maxMs: changeLatency.count === 0 ? null : changeLatency.max
        }
      },
      samples
    }
    const out = resolve(options.out)
    mkdirSync(out, { recursive: true })
    const summaryPath = join(out, "summary.json")
    const reportPath = join(out, "report.html")
    writeFileSync(summaryPath, JSON.stringify(summary, null, 2) + "\n")
    writeFileSync(reportPath, renderReport(summary))
    return { summary, reportPath, summaryPath }
  } finally {
    for (const socket of sockets) socket?.close()
    for (const socket of publishers) socket.close()
    await gateway.stop()
    if (changes !== undefined) await dropChangesFixture(changes.db, changes.fixture)
  }
}

/**
 * The figures `/dashboard` shows, sampled once a second from this process's metric registry into one snapshot that
 * every open dashboard stream sends (the work does not grow with the number of viewers).
 *
 * Rates and latency quantiles are computed from differences between samples: deliveries/s from the counter,
 * p50/p99 from the histograms' bucket counts over the last `LATENCY_WINDOW_S` seconds (linear within a bucket, so a
 * figure is as fine as the bucket boundaries). The last `HISTORY_S` seconds are kept as chart series. Device counts,
 * Redis and broker state and the scaling recommendation are read every `SLOW_EVERY` samples, since each costs a
 * round trip.
 */
import { ConnectionRegistry } from "@wedsync/connection"
import { Broker } from "@wedsync/hub"
import { RedisClient } from "@wedsync/redis"
import { Clock, Effect, Metric, Option } from "effect"
import * as ClusterDevices from "./ClusterDevices.ts"

export const HISTORY_S = 300
/** The day chart keeps one point per `DAY_STEP_MS` for the last 24 hours. */
const DAY_STEP_MS = 5 * 60_000
const DAY_POINTS = 288
const LATENCY_WINDOW_S = 10
const SLOW_EVERY = 5
const TOP_SCOPES = 5

/** The scaling recommendation as `/admin/scaling` answers it, or why it is not shown. */
export type Scaling =
  | { readonly available: true; readonly body: unknown }
  | { readonly available: false; readonly reason: string }

export interface Slow {
  readonly devices: Omit<ClusterDevices.Summary, "counts"> | undefined
  readonly redis:
    | { readonly ok: boolean; readonly latencyMs?: number | undefined; readonly error?: string | undefined }
    | undefined
  readonly broker: string | undefined
  readonly scaling: Scaling
}

export interface Series {
  readonly at: Array<number>
  readonly connections: Array<number>
  readonly deliveriesPerSecond: Array<number>
  readonly deliveryP50Ms: Array<number | null>
  readonly deliveryP99Ms: Array<number | null>
  readonly fanoutP50Ms: Array<number | null>
  readonly fanoutP99Ms: Array<number | null>
}

export interface Snapshot {
  readonly at: number
  readonly worker: number
  readonly pid: number
  readonly draining: boolean
  readonly connections: number
  readonly channels: number
  readonly topics: number
  readonly deliveriesTotal: number
  readonly deliveriesPerSecond: number
  readonly publicationsPerSecond: number
  readonly latencyWindowSeconds: number
  readonly deliveryP50Ms: number | null
  readonly deliveryP99Ms: number | null
  readonly fanoutP50Ms: number | null
  readonly fanoutP99Ms: number | null
  readonly eventLoop: { readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number }
  readonly cache: ReadonlyArray<{ readonly kind: string; readonly hits: number; readonly misses: number }>
  /** `wedsync_admission_shed_total` summed over its labels, when that metric is registered. */
  readonly shed: { readonly total: number; readonly perSecond: number } | undefined
  readonly sloMs: number
  readonly alerts: ReadonlyArray<string>
  readonly slow: Slow
  readonly series: Series
  /** This process's connections every `DAY_STEP_MS` over the last day, against the forecast of `/admin/scaling`. */
  readonly day: { readonly at: ReadonlyArray<number>; readonly connections: ReadonlyArray<number> }
}

type Buckets = ReadonlyArray<readonly [number, number]>

/**
 * The `q` quantile of the observations between two cumulative bucket snapshots, in the histogram's unit, or null
 * when there were none. Within a bucket the value is interpolated linearly; in the open last bucket it is that
 * bucket's lower bound.
 */
export const windowQuantile = (now: Buckets, before: Buckets | undefined, q: number): number | null => {
  const countAt = (i: number) => (now[i]?.[1] ?? 0) - (before?.[i]?.[1] ?? 0)
  const total = countAt(now.length - 1)
  if (total <= 0) return null
  const target = q * total
  let lower = 0
  let below = 0
  for (let i = 0; i < now.length; i++) {
    const upper = now[i]![0]
    const cumulative = countAt(i)
    if (cumulative >= target) {
      if (!Number.isFinite(upper)) return lower
      const inBucket = cumulative - below
      return inBucket === 0 ? upper : lower + (upper - lower) * ((target - below) / inBucket)
    }
    lower = upper
    below = cumulative
  }
  return lower
}

interface Reading {
  readonly gauges: Map<string, number>
  readonly counters: Map<string, number>
  readonly histograms: Map<string, Buckets>
  readonly cache: Map<string, { hits: number; misses: number }>
  readonly shedTotal: number | undefined
}

const read = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>): Reading => {
  const gauges = new Map<string, number>()
  const counters = new Map<string, number>()
  const histograms = new Map<string, Buckets>()
  const cache = new Map<string, { hits: number; misses: number }>()
  let shedTotal: number | undefined
  for (const metric of snapshot) {
    switch (metric.type) {
      case "Gauge":
        gauges.set(metric.id, Number(metric.state.value))
        break
      case "Histogram":
        if (metric.attributes === undefined) histograms.set(metric.id, metric.state.buckets)
        break
      case "Counter": {
        const count = Number(metric.state.count)
        counters.set(metric.id, (counters.get(metric.id) ?? 0) + count)
        if (metric.id === "wedsync_admission_shed_total") shedTotal = (shedTotal ?? 0) + count
        // A kind's hit ratio: hits in either tier over reads, and a read is a miss only when L2 missed too.
        const kind = metric.attributes?.["kind"]
        if (kind === undefined) break
        if (metric.id === "wedsync_cache_hits_total") {
          const entry = cache.get(kind) ?? { hits: 0, misses: 0 }
          entry.hits += count
          cache.set(kind, entry)
        } else if (metric.id === "wedsync_cache_misses_total" && metric.attributes?.["tier"] === "l2") {
          const entry = cache.get(kind) ?? { hits: 0, misses: 0 }
          entry.misses += count
          cache.set(kind, entry)
        }
      }
    }
  }
  return { gauges, counters, histograms, cache, shedTotal }
}

const DELIVERY = "wedsync_connection_write_delay_seconds"
const FANOUT = "wedsync_hub_fanout_duration_seconds"

const toMs = (seconds: number | null) => seconds === null ? null : Math.round(seconds * 100_000) / 100

const emptySeries = (): Series => ({
  at: [],
  connections: [],
  deliveriesPerSecond: [],
  deliveryP50Ms: [],
  deliveryP99Ms: [],
  fanoutP50Ms: [],
  fanoutP99Ms: []
})

export interface Options {
  readonly worker: number
  readonly sloMs: number
  /** Reads `/admin/scaling`. */
  readonly scaling: Effect.Effect<Scaling>
}

/** The sampler's state and the effects that advance it; `run` samples forever, once a second. */
export const make = (options: Options) => {
  const series = emptySeries()
  const history: Array<Reading> = []
  let slow: Slow = {
    devices: undefined,
    redis: undefined,
    broker: undefined,
    scaling: { available: false, reason: "not read yet" }
  }
  let latest: Snapshot | undefined
  const day = { at: new Array<number>(), connections: new Array<number>() }
  let ticks = 0

  const readSlow = Effect.gen(function*() {
    const { counts: _perId, ...devices } = yield* ClusterDevices.summary(TOP_SCOPES)
    const redisClient = yield* Effect.serviceOption(RedisClient.RedisClient)
    let redis: Slow["redis"]
    let broker: string | undefined
    if (Option.isSome(redisClient)) {
      const health = yield* redisClient.value.health
      redis = health.ok ? { ok: true, latencyMs: health.latencyMs } : { ok: false, error: health.error }
      broker = yield* (yield* Broker.Broker).state
    }
    const scaling = yield* options.scaling
    slow = { devices, redis, broker, scaling }
  })

  const push = <A>(list: Array<A>, value: A) => {
    list.push(value)
    if (list.length > HISTORY_S) list.shift()
  }

  const sample = Effect.gen(function*() {
    if (ticks++ % SLOW_EVERY === 0) yield* readSlow
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const now = read(yield* Metric.snapshot)
    const previous = history.at(-1)
    const windowStart = history.at(-LATENCY_WINDOW_S)
    history.push(now)
    if (history.length > LATENCY_WINDOW_S + 1) history.shift()

    const delta = (id: string) =>
      previous === undefined ? 0 : Math.max(0, (now.counters.get(id) ?? 0) - (previous.counters.get(id) ?? 0))
    const quantile = (id: string, q: number) => {
      const buckets = now.histograms.get(id)
      return buckets === undefined ? null : toMs(windowQuantile(buckets, windowStart?.histograms.get(id), q))
    }
    const at = yield* Clock.currentTimeMillis
    const connections = registry.count()
    const deliveriesPerSecond = delta("wedsync_hub_deliveries_total")
    const deliveryP50Ms = quantile(DELIVERY, 0.5)
    const deliveryP99Ms = quantile(DELIVERY, 0.99)
    const fanoutP50Ms = quantile(FANOUT, 0.5)
    const fanoutP99Ms = quantile(FANOUT, 0.99)
    push(series.at, at)
    push(series.connections, connections)
    push(series.deliveriesPerSecond, deliveriesPerSecond)
    push(series.deliveryP50Ms, deliveryP50Ms)
    push(series.deliveryP99Ms, deliveryP99Ms)
    push(series.fanoutP50Ms, fanoutP50Ms)
    push(series.fanoutP99Ms, fanoutP99Ms)
    if (at - (day.at.at(-1) ?? Number.NEGATIVE_INFINITY) >= DAY_STEP_MS) {
      day.at.push(at)
      day.connections.push(connections)
      if (day.at.length > DAY_POINTS) {
        day.at.shift()
        day.connections.shift()
      }
    }

    const shedPerSecond = now.shedTotal === undefined ? 0 : delta("wedsync_admission_shed_total")
    const alerts: Array<string> = []
    if (deliveryP99Ms !== null && deliveryP99Ms > options.sloMs) {
      alerts.push(`delivery p99 ${deliveryP99Ms} ms is above the ${options.sloMs} ms SLO`)
    }
    if (fanoutP99Ms !== null && fanoutP99Ms > options.sloMs) {
      alerts.push(`fan-out p99 ${fanoutP99Ms} ms is above the ${options.sloMs} ms SLO`)
    }
    if (shedPerSecond > 0) alerts.push(`shedding load: ${shedPerSecond} admissions refused in the last second`)
    if (registry.isDraining()) alerts.push("draining")
    if (slow.redis !== undefined && !slow.redis.ok) alerts.push(`Redis is down: ${slow.redis.error ?? ""}`)

    const gauge = (id: string) => now.gauges.get(id) ?? 0
    latest = {
      at,
      worker: options.worker,
      pid: process.pid,
      draining: registry.isDraining(),
      connections,
      channels: gauge("wedsync_connection_channels"),
      topics: gauge("wedsync_hub_topics"),
      deliveriesTotal: now.counters.get("wedsync_hub_deliveries_total") ?? 0,
      deliveriesPerSecond,
      publicationsPerSecond: delta("wedsync_hub_publications_total"),
      latencyWindowSeconds: LATENCY_WINDOW_S,
      deliveryP50Ms,
      deliveryP99Ms,
      fanoutP50Ms,
      fanoutP99Ms,
      eventLoop: {
        p50Ms: toMs(gauge("nodejs_eventloop_lag_p50_seconds")) ?? 0,
        p99Ms: toMs(gauge("nodejs_eventloop_lag_p99_seconds")) ?? 0,
        maxMs: toMs(gauge("nodejs_eventloop_lag_max_seconds")) ?? 0
      },
      cache: Array.from(now.cache, ([kind, counts]) => ({ kind, ...counts })),
      shed: now.shedTotal === undefined ? undefined : { total: now.shedTotal, perSecond: shedPerSecond },
      sloMs: options.sloMs,
      alerts,
      slow,
      series,
      day
    }
  })

  return {
    /** The newest snapshot, or undefined before the first sample. */
    latest: (): Snapshot | undefined => latest,
    sample,
    run: Effect.forever(Effect.andThen(sample, Effect.sleep("1 second")))
  }
}

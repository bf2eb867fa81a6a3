/**
 * The scaling policy of `packages/scaling` run on this process's own load (issue 10 item 2).
 *
 * Every `SCALE_SAMPLE_INTERVAL_MS` it samples this process (open sockets, delivery p99 of the window since the last
 * sample from the write-delay histogram's buckets, event-loop delay p99 of the last `ProcessMetrics` window, CPU as a
 * fraction of one core, resident memory), keeps the history `ReplicaPolicy.retain` asks for, and runs
 * `ReplicaPolicy.decide` with the calendar forecast as `predict`. The calendar is `WEDDING_CALENDAR_FILE` (read once)
 * or `WEDDING_CALENDAR_SQL` (read again every `SCALE_CALENDAR_REFRESH`; a failed read keeps the last weddings and is
 * retried). The decision is exported as gauges (for the HPA and dashboards), logged when it changes, and served by
 * `GET /admin/scaling` with the wedding-season mode in effect (`Season`) and the season the calendar gives now.
 *
 * Each process reports its own observation as if it were one replica: `desired_replicas` is what this process's load
 * alone asks for. A deployment scales on `wedsync_scaling_load_ratio` averaged over its pods (the HPA's own
 * `ceil(replicas × average / target)`) and on the largest `wedsync_scaling_predicted_replicas` (docs/architecture.md).
 * Nothing here changes how the process serves: admission control reads `latency` only.
 */
import { ConnectionMetrics, ConnectionRegistry, type Transport } from "@wedsync/connection"
import { ProcessMetrics } from "@wedsync/metrics"
import { type Calendar, LoadForecast, ReplicaPolicy, ScalingConfig, SeasonMode } from "@wedsync/scaling"
import { Clock, Context, Duration, Effect, Layer, Metric } from "effect"
import { Season } from "./Season.ts"
import * as WeddingCalendar from "./WeddingCalendar.ts"

const gauge = (name: string, description: string) => Metric.gauge(name, { description })

export const desiredReplicas = gauge(
  "wedsync_scaling_desired_replicas",
  "Replicas the scaling policy recommends from this process's own load and the calendar"
)
export const headroomRatio = gauge(
  "wedsync_scaling_headroom_ratio",
  "Fraction of this process's capacity still free on its fullest measured metric (negative above capacity)"
)
export const loadRatio = gauge(
  "wedsync_scaling_load_ratio",
  "This process's fullest measured metric against its target (capacity less headroom); 1 is on target"
)
export const predictedConnections = gauge(
  "wedsync_scaling_predicted_connections",
  "Connections the wedding calendar predicts across the deployment for the next SCALE_LEAD_TIME (peak); 0 without a calendar"
)
export const predictedReplicas = gauge(
  "wedsync_scaling_predicted_replicas",
  "Replicas the wedding calendar asks for SCALE_LEAD_TIME ahead; 0 without a calendar or wedding"
)

export const seasonActive = gauge(
  "wedsync_scaling_season_active",
  "1 while wedding-season mode is applied to this process's settings (SEASON_MODE, resolved at start), else 0"
)

export const metrics = [
  desiredReplicas,
  headroomRatio,
  loadRatio,
  predictedConnections,
  predictedReplicas,
  seasonActive
] as const

/** What `GET /admin/scaling` answers. */
export interface Snapshot {
  readonly at: string
  /** `decision.reason` at the top, where the dashboard's scaling panel reads it. */
  readonly reason: string
  readonly observation: ReplicaPolicy.ProcessLoad
  readonly decision: ReplicaPolicy.Decision
  readonly headroom: number | undefined
  readonly loadRatio: number | undefined
  readonly calendar: {
    /** `WEDDING_CALENDAR_FILE=…` or `WEDDING_CALENDAR_SQL`. */
    readonly source: string
    readonly weddings: number
    readonly predictedConnections: number
    readonly predictedReplicas: number | undefined
    /** When the weddings were last read; undefined while no read has succeeded. */
    readonly loadedAt: string | undefined
    /** The last read's failure, while it stands (the weddings are then those of the last good read). */
    readonly error: string | undefined
    /** Rows of the query that made no wedding, and the first reasons. */
    readonly skippedRows: number
    readonly problems: ReadonlyArray<string>
    /** The next weddings' preparations: when to warm the cache and when to have their capacity (ISO times). */
    readonly upcoming: ReadonlyArray<{
      readonly id: string
      readonly devices: number
      readonly warmAt: string
      readonly scaleAt: string
      readonly start: string
    }>
  } | undefined
  readonly season: {
    readonly setting: ScalingConfig.SeasonModeSetting
    /** Applied to this process's settings at start. */
    readonly active: boolean
    readonly reason: string
    readonly settings: SeasonMode.SeasonSettings
    readonly configured: SeasonMode.SeasonSettings
    /** What the calendar says now; when it differs from `active`, the change applies at the next start. */
    readonly now: { readonly active: boolean; readonly reason: string }
    readonly pending: string | undefined
  }
  /** With a calendar: the predicted connections from a day before to a day after now (`LoadForecast.curve`). */
  readonly forecast?: ReadonlyArray<{ readonly at: number; readonly connections: number }> | undefined
}

const DAY_MS = 86_400_000
/** Weddings listed under `calendar.upcoming`. */
const UPCOMING = 5
/** Ten minutes: 289 points a side-by-side day, and the curve is computed again only when its window moves. */
const FORECAST_STEP_MS = 600_000

export interface ScalingControllerShape {
  /** The latest sample and decision (a sample is taken when the controller starts), with the calendar's curve. */
  readonly current: Effect.Effect<Snapshot>
  /** The recent latencies admission control sheds on. */
  readonly latency: Effect.Effect<Transport.RecentLatency>
}

/**
 * The delivery p99 of the observations between two states of a cumulative histogram, as the upper bound of the bucket
 * that holds it (the largest boundary when it lies above all of them), in ms; `undefined` without observations.
 */
export const windowP99Ms = (
  previous: Metric.HistogramState | undefined,
  now: Metric.HistogramState
): number | undefined => {
  const before = (i: number) => previous?.buckets[i]?.[1] ?? 0
  const total = now.count - (previous?.count ?? 0)
  if (total <= 0) return undefined
  const rank = 0.99 * total
  for (let i = 0; i < now.buckets.length; i++) {
    const [boundary, cumulative] = now.buckets[i]!
    if (cumulative - before(i) >= rank) return boundary * 1000
  }
  const last = now.buckets[now.buckets.length - 1]
  return last === undefined ? undefined : last[0] * 1000
}

const round = (n: number) => Math.round(n * 1000) / 1000

/** The fullest measured metric of one observation against `of` (capacity, or target), or `undefined`. */
const fullest = (load: ReplicaPolicy.ProcessLoad, of: (metric: ReplicaPolicy.MetricName) => number) => {
  let ratio: number | undefined
  for (const metric of ReplicaPolicy.METRICS) {
    const value = load[metric]
    if (value !== undefined) ratio = Math.max(ratio ?? 0, value / of(metric))
  }
  return ratio
}

export interface Options {
  readonly intervalMs: number
  readonly calendar: WeddingCalendar.Source | undefined
}

/** What the controller knows of the calendar. */
interface CalendarState {
  readonly weddings: ReadonlyArray<Calendar.Wedding>
  readonly forecast: LoadForecast.Forecast
  readonly loadedAt: number | undefined
  readonly error: string | undefined
  readonly skipped: number
  readonly problems: ReadonlyArray<string>
}

export const make = (options: Options) =>
  Effect.gen(function*() {
    const config = yield* ScalingConfig.ScalingConfig
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const season = yield* Season
    const source = options.calendar
    // The query is asked for the day behind (the dashboard's predicted-against-actual chart) and far enough ahead for
    // the season's lookahead and the scaling lead time.
    const window = (now: number) =>
      [now - DAY_MS, now + Math.max(2 * DAY_MS, config.seasonLookaheadMs, config.leadTimeMs + config.rampMs)] as const
    let calendar: CalendarState | undefined
    let calendarVersion = 0
    const readCalendar = (source: WeddingCalendar.Source) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const [from, to] = window(now)
        const loaded = yield* WeddingCalendar.read(source, from, to)
        calendar = {
          weddings: loaded.weddings,
          forecast: LoadForecast.make(loaded.weddings, config),
          loadedAt: now,
          error: undefined,
          skipped: loaded.skipped,
          problems: loaded.problems
        }
        calendarVersion++
        if (loaded.skipped > 0) {
          yield* Effect.logWarning(
            `${WeddingCalendar.describe(source)}: ${loaded.skipped} rows skipped: ${loaded.problems.join("; ")}`
          )
        }
      })
    // The query reads live data: a failure keeps the last weddings and is tried again at the next refresh. The file
    // was checked at start (`checkEnvironment`), so its failure here is one the operator must see: the start fails.
    const refreshCalendar = (source: WeddingCalendar.Source) =>
      readCalendar(source).pipe(
        Effect.catch((error) =>
          Effect.andThen(
            Effect.sync(() => {
              const empty = LoadForecast.make([], config)
              calendar = {
                ...(calendar ?? { weddings: [], forecast: empty, loadedAt: undefined, skipped: 0, problems: [] }),
                error: error.message
              }
            }),
            Effect.logWarning(`scaling calendar not refreshed: ${error.message}`)
          )
        )
      )
    if (source?._tag === "File") yield* readCalendar(source)
    else if (source?._tag === "Sql") {
      yield* refreshCalendar(source)
      yield* Effect.forkScoped(
        Effect.forever(Effect.andThen(Effect.sleep(Duration.millis(config.calendarRefreshMs)), refreshCalendar(source)))
      )
    }
    const predict = (at: number) => calendar?.forecast.replicasAt(at)
    yield* Metric.update(seasonActive, season.active ? 1 : 0)
    let lastSeasonNote: string | undefined

    let history: ReadonlyArray<ReplicaPolicy.LoadSample> = []
    let lastDelivery: Metric.HistogramState | undefined
    // The first sample has no CPU reading: the average since the process started is start-up work (loading modules),
    // not load, and would ask for a replica that the scale-down window then holds for minutes.
    let lastCpu = process.cpuUsage()
    let lastCpuAt = yield* Clock.currentTimeMillis
    let deliveryP99Ms = 0
    let lastDecision: string | undefined

    const sample = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const delivery = yield* Metric.value(ConnectionMetrics.writeDelay)
      // A window without deliveries had none that were slow: 0, not missing, or an idle process could never scale
      // down (the policy holds a scale-down while a metric is missing).
      deliveryP99Ms = windowP99Ms(lastDelivery, delivery) ?? 0
      lastDelivery = delivery
      const eventLoop = yield* Metric.value(ProcessMetrics.eventLoopLagP99)
      const cpu = process.cpuUsage(lastCpu)
      const elapsedMs = now - lastCpuAt
      lastCpu = process.cpuUsage()
      lastCpuAt = now
      const observation: ReplicaPolicy.ProcessLoad = {
        connections: registry.count(),
        deliveryP99Ms,
        eventLoopP99Ms: eventLoop.value * 1000,
        cpu: elapsedMs > 0 ? round((cpu.user + cpu.system) / 1000 / elapsedMs) : undefined,
        memoryBytes: process.memoryUsage.rss()
      }
      history = ReplicaPolicy.retain([...history, { at: now, replicas: 1, processes: [observation] }], now, config)
      const decision = ReplicaPolicy.decide(history, now, config, predict)
      const headroom = fullest(observation, (m) => config.capacity[m])
      const ratio = fullest(observation, (m) => ReplicaPolicy.targetOf(config.capacity, config.headroom, m))
      const predicted = calendar?.forecast.peakBetween(now, now + config.leadTimeMs)
      const predictedCount = calendar === undefined ? undefined : predict(now)
      yield* Metric.update(desiredReplicas, decision.desiredReplicas)
      yield* Metric.update(headroomRatio, headroom === undefined ? 1 : round(1 - headroom))
      yield* Metric.update(loadRatio, ratio === undefined ? 0 : round(ratio))
      yield* Metric.update(predictedConnections, Math.round(predicted ?? 0))
      yield* Metric.update(predictedReplicas, predictedCount ?? 0)
      const change = `${decision.direction}:${decision.desiredReplicas}`
      if (change !== lastDecision) {
        lastDecision = change
        yield* Effect.logInfo(`scaling: ${decision.reason}`).pipe(
          Effect.annotateLogs({ desiredReplicas: decision.desiredReplicas, drivenBy: decision.drivenBy })
        )
      }
      const seasonNow = SeasonMode.resolve(config.seasonMode, calendar?.weddings ?? [], now, config)
      const pending = seasonNow.active === season.active
        ? undefined
        : `wedding-season mode turns ${seasonNow.active ? "on" : "off"} at the next start: ${seasonNow.reason}`
      if (pending !== lastSeasonNote) {
        lastSeasonNote = pending
        if (pending !== undefined) yield* Effect.logInfo(pending)
      }
      const iso = (at: number) => new Date(at).toISOString()
      const snapshot: Snapshot = {
        at: new Date(now).toISOString(),
        reason: decision.reason,
        observation,
        decision,
        headroom: headroom === undefined ? undefined : round(1 - headroom),
        loadRatio: ratio === undefined ? undefined : round(ratio),
        calendar: source === undefined || calendar === undefined ? undefined : {
          source: WeddingCalendar.describe(source),
          weddings: calendar.weddings.length,
          predictedConnections: Math.round(predicted ?? 0),
          predictedReplicas: predictedCount,
          loadedAt: calendar.loadedAt === undefined ? undefined : iso(calendar.loadedAt),
          error: calendar.error,
          skippedRows: calendar.skipped,
          problems: calendar.problems,
          upcoming: LoadForecast.preparations(calendar.forecast, config)
            .filter((p) => p.end >= now)
            .slice(0, UPCOMING)
            .map((p) => ({
              id: p.id,
              devices: p.devices,
              warmAt: iso(p.warmAt),
              scaleAt: iso(p.scaleAt),
              start: iso(p.start)
            }))
        },
        season: {
          setting: season.setting,
          active: season.active,
          reason: season.reason,
          settings: season.settings,
          configured: season.configured,
          now: { active: seasonNow.active, reason: seasonNow.reason },
          pending
        }
      }
      return snapshot
    })

    let current = yield* sample
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.sleep(Duration.millis(options.intervalMs)),
          Effect.tap(sample, (next) => Effect.sync(() => (current = next)))
        )
      )
    )
    // Asked per request, not per sample: a large calendar makes the curve the costliest part, and it only moves
    // once per step.
    let curve:
      | { readonly step: number; readonly version: number; readonly points: Snapshot["forecast"] }
      | undefined
    const forecastNow = (now: number): Snapshot["forecast"] => {
      if (calendar === undefined) return undefined
      const step = Math.floor(now / FORECAST_STEP_MS)
      if (curve?.step !== step || curve.version !== calendarVersion) {
        const from = step * FORECAST_STEP_MS - DAY_MS
        curve = {
          step,
          version: calendarVersion,
          points: LoadForecast.curve(calendar.forecast, from, from + 2 * DAY_MS, FORECAST_STEP_MS)
        }
      }
      return curve.points
    }

    return ScalingController.of({
      current: Effect.map(Clock.currentTimeMillis, (now) =>
        calendar === undefined ? current : { ...current, forecast: forecastNow(now) }),
      latency: Effect.map(
        Metric.value(ProcessMetrics.eventLoopLagP99),
        (state): Transport.RecentLatency => ({ eventLoopP99Ms: state.value * 1000, deliveryP99Ms })
      )
    })
  })

export class ScalingController extends Context.Service<ScalingController, ScalingControllerShape>()(
  "@wedsync/gateway/ScalingController"
) {
  static readonly layer = (options: Options): Layer.Layer<
    ScalingController,
    Calendar.CalendarError,
    ScalingConfig.ScalingConfig | ConnectionRegistry.ConnectionRegistry | Season
  > => Layer.effect(ScalingController, make(options))
}

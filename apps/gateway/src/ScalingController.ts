/**
 * The scaling policy of `packages/scaling` run on this process's own load (issue 10 item 2).
 *
 * Every `SCALE_SAMPLE_INTERVAL_MS` it samples this process (open sockets, delivery p99 of the window since the last
 * sample from the write-delay histogram's buckets, event-loop delay p99 of the last `ProcessMetrics` window, CPU as a
 * fraction of one core, resident memory), keeps the history `ReplicaPolicy.retain` asks for, and runs
 * `ReplicaPolicy.decide` with the calendar forecast (`WEDDING_CALENDAR_FILE`) as `predict`. The decision is exported
 * as gauges (for the HPA and dashboards), logged when it changes, and served by `GET /admin/scaling`.
 *
 * Each process reports its own observation as if it were one replica: `desired_replicas` is what this process's load
 * alone asks for. A deployment scales on `wedsync_scaling_load_ratio` averaged over its pods (the HPA's own
 * `ceil(replicas × average / target)`) and on the largest `wedsync_scaling_predicted_replicas` (docs/architecture.md).
 * Nothing here changes how the process serves: admission control reads `latency` only.
 */
import { ConnectionMetrics, ConnectionRegistry, type Transport } from "@wedsync/connection"
import { ProcessMetrics } from "@wedsync/metrics"
import { type Calendar, LoadForecast, ReplicaPolicy, ScalingConfig } from "@wedsync/scaling"
import { Clock, Context, Duration, Effect, Layer, Metric } from "effect"
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

export const metrics = [desiredReplicas, headroomRatio, loadRatio, predictedConnections, predictedReplicas] as const

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
    readonly weddings: number
    readonly predictedConnections: number
    readonly predictedReplicas: number | undefined
  } | undefined
  /** With a calendar: the predicted connections from a day before to a day after now (`LoadForecast.curve`). */
  readonly forecast?: ReadonlyArray<{ readonly at: number; readonly connections: number }> | undefined
}

const DAY_MS = 86_400_000
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

export const make = (options: { readonly intervalMs: number }) =>
  Effect.gen(function*() {
    const config = yield* ScalingConfig.ScalingConfig
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const weddings = config.calendarFile === undefined ? undefined : yield* WeddingCalendar.load(config.calendarFile)
    const forecast = weddings === undefined ? undefined : LoadForecast.make(weddings, config)
    const predict = forecast?.replicasAt

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
      const predicted = forecast?.peakBetween(now, now + config.leadTimeMs)
      const predictedCount = predict?.(now)
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
      const snapshot: Snapshot = {
        at: new Date(now).toISOString(),
        reason: decision.reason,
        observation,
        decision,
        headroom: headroom === undefined ? undefined : round(1 - headroom),
        loadRatio: ratio === undefined ? undefined : round(ratio),
        calendar: weddings === undefined ? undefined : {
          weddings: weddings.length,
          predictedConnections: Math.round(predicted ?? 0),
          predictedReplicas: predictedCount
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
    let curve: { readonly step: number; readonly points: Snapshot["forecast"] } | undefined
    const forecastNow = (now: number): Snapshot["forecast"] => {
      if (forecast === undefined) return undefined
      const step = Math.floor(now / FORECAST_STEP_MS)
      if (curve?.step !== step) {
        const from = step * FORECAST_STEP_MS - DAY_MS
        curve = { step, points: LoadForecast.curve(forecast, from, from + 2 * DAY_MS, FORECAST_STEP_MS) }
      }
      return curve.points
    }

    return ScalingController.of({
      current: Effect.map(Clock.currentTimeMillis, (now) =>
        forecast === undefined ? current : { ...current, forecast: forecastNow(now) }),
      latency: Effect.map(
        Metric.value(ProcessMetrics.eventLoopLagP99),
        (state): Transport.RecentLatency => ({ eventLoopP99Ms: state.value * 1000, deliveryP99Ms })
      )
    })
  })

export class ScalingController extends Context.Service<ScalingController, ScalingControllerShape>()(
  "@wedsync/gateway/ScalingController"
) {
  static readonly layer = (options: { readonly intervalMs: number }): Layer.Layer<
    ScalingController,
    Calendar.CalendarError,
    ScalingConfig.ScalingConfig | ConnectionRegistry.ConnectionRegistry
  > => Layer.effect(ScalingController, make(options))
}

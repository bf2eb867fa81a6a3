/**
 * Allocation-free metric handles for hot paths (per message, per recipient).
 *
 * `Metric.update` builds an Effect on every call; at fan-out rates that is garbage the GC has to chase. A hot handle
 * captures the current Effect context once (which carries the `MetricRegistry` and `CurrentMetricAttributes`) and
 * calls the metric's own `updateUnsafe` / `modifyUnsafe` with it, which is what `Metric.update` does internally. The
 * values land in the same registry that `PrometheusMetrics.format()` reads, so `/metrics` sees them.
 *
 * Creating a handle also registers its series, so it is exported as 0 before the first event instead of being absent.
 * A handle does not follow later changes of the context it was created in (for example `Metric.CurrentMetricAttributes`
 * provided further down the call stack): create it where the attributes you want are already in place.
 */
import { Effect, Metric } from "effect"
import type { Context } from "effect"

/** A counter handle. `inc()` adds 1. */
interface HotCounter {
  readonly inc: (n?: number) => void
}

/** A gauge handle: `set` replaces the value, `add` applies a delta (negative to decrease). */
interface HotGauge {
  readonly set: (value: number) => void
  readonly add: (delta: number) => void
}

/** A histogram handle recording one observation per call. */
interface HotHistogram {
  readonly observe: (value: number) => void
}

/** Any number-valued counter, including `Metric.withAttributes(counter, …)`. */
type CounterMetric = Metric.Metric<number, Metric.CounterState<number>>
/** Any number-valued gauge, including `Metric.withAttributes(gauge, …)`. */
export type GaugeMetric = Metric.Metric<number, Metric.GaugeState<number>>
/** Any number-valued histogram, including `Metric.withAttributes(histogram, …)`. */
type HistogramMetric = Metric.Metric<number, Metric.HistogramState>

/** Builds a counter handle from an already captured context (for code that builds many handles at once). */
export const counterUnsafe = (metric: CounterMetric, context: Context.Context<never>): HotCounter => {
  metric.valueUnsafe(context)
  return {
    inc: (n = 1) => metric.updateUnsafe(n, context)
  }
}

/** Builds a gauge handle from an already captured context. */
export const gaugeUnsafe = (metric: GaugeMetric, context: Context.Context<never>): HotGauge => {
  metric.valueUnsafe(context)
  return {
    set: (value) => metric.updateUnsafe(value, context),
    add: (delta) => metric.modifyUnsafe(delta, context)
  }
}

/** Builds a histogram handle from an already captured context. */
export const histogramUnsafe = (metric: HistogramMetric, context: Context.Context<never>): HotHistogram => {
  metric.valueUnsafe(context)
  return {
    observe: (value) => metric.updateUnsafe(value, context)
  }
}

/** Captures the current context and returns a counter handle. */
export const counter = (metric: CounterMetric): Effect.Effect<HotCounter> =>
  Effect.map(Effect.context<never>(), (context) => counterUnsafe(metric, context))

/** Captures the current context and returns a gauge handle. */
export const gauge = (metric: GaugeMetric): Effect.Effect<HotGauge> =>
  Effect.map(Effect.context<never>(), (context) => gaugeUnsafe(metric, context))

/** Captures the current context and returns a histogram handle. */
export const histogram = (metric: HistogramMetric): Effect.Effect<HotHistogram> =>
  Effect.map(Effect.context<never>(), (context) => histogramUnsafe(metric, context))

/**
 * One counter handle per value of a bounded label, e.g.
 * `counterByLabel(closes, "reason", ["slow_consumer", "heartbeat_timeout"])` → `handles.slow_consumer.inc()`.
 * Every series is registered up front, so dashboards see zeros instead of gaps. Bounded by construction: the label
 * values are fixed here, never taken from a message.
 */
export const counterByLabel = <const Values extends ReadonlyArray<string>>(
  metric: CounterMetric,
  label: string,
  values: Values
): Effect.Effect<{ readonly [K in Values[number]]: HotCounter }> =>
  Effect.map(Effect.context<never>(), (context) => {
    const handles: Record<string, HotCounter> = {}
    for (const value of values) {
      handles[value] = counterUnsafe(Metric.withAttributes(metric, { [label]: value }), context)
    }
    return handles as { readonly [K in Values[number]]: HotCounter }
  })

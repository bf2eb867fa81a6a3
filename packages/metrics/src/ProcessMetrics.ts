/**
 * Process-level collector: event-loop lag, resident memory, heap in use and CPU time, sampled on a fixed interval.
 *
 * `layer` opens a `perf_hooks.monitorEventLoopDelay` histogram in its scope (disabled on release), takes one sample at
 * once so the first scrape already has values, then forks a scoped fiber that samples every `interval` (5 s by
 * default). Each sample reports the lag quantiles of the window since the previous sample, then resets the histogram,
 * so a spike shows up for one window instead of being diluted forever. It is not a general Node runtime exporter: no
 * GC, handle or libuv metrics.
 */
import { monitorEventLoopDelay } from "node:perf_hooks"
import type { ELDHistogram } from "node:perf_hooks"
import { Duration, Effect, Layer, Metric } from "effect"
import type { Context } from "effect"
import * as HotMetric from "./HotMetric.ts"

/** Event-loop lag of the last window in seconds; `quantile` is "0.5", "0.99" or "1" (the maximum). */
export const eventLoopLag = Metric.gauge("wedsync_process_event_loop_lag_seconds", {
  description: "Event-loop lag over the last sampling window, in seconds (quantile 1 is the maximum)."
})
/** Resident set size. */
export const residentMemory = Metric.gauge("wedsync_process_resident_memory_bytes", {
  description: "Resident memory size in bytes."
})
/** V8 heap in use. */
export const heapUsed = Metric.gauge("wedsync_process_heap_used_bytes", {
  description: "V8 heap used in bytes."
})
/** User plus system CPU time since the process started. */
export const cpuSeconds = Metric.counter("wedsync_process_cpu_seconds_total", {
  description: "Total user and system CPU time spent in seconds.",
  incremental: true
})

/** Every metric this module registers, for catalogues and the name lint. */
export const metrics = [eventLoopLag, residentMemory, heapUsed, cpuSeconds] as const

/** Collector options. */
export interface Options {
  /** Time between samples. Default 5 seconds. */
  readonly interval?: Duration.Input | undefined
  /** Resolution of the event-loop delay timer in milliseconds. Default 10. */
  readonly resolutionMs?: number | undefined
}

const NS_PER_SECOND = 1e9
const MICROS_PER_SECOND = 1e6

const makeSampler = (monitor: ELDHistogram, context: Context.Context<never>): () => void => {
  const p50 = HotMetric.gaugeUnsafe(Metric.withAttributes(eventLoopLag, { quantile: "0.5" }), context)
  const p99 = HotMetric.gaugeUnsafe(Metric.withAttributes(eventLoopLag, { quantile: "0.99" }), context)
  const max = HotMetric.gaugeUnsafe(Metric.withAttributes(eventLoopLag, { quantile: "1" }), context)
  const rss = HotMetric.gaugeUnsafe(residentMemory, context)
  const heap = HotMetric.gaugeUnsafe(heapUsed, context)
  const cpu = HotMetric.counterUnsafe(cpuSeconds, context)
  // CPU time is a counter: add only what was spent since the previous sample.
  let lastCpuMicros = 0
  return () => {
    // A window without a timer tick reports min = 2^63 and max = 0; report zero lag rather than garbage.
    const empty = monitor.count === 0
    p50.set(empty ? 0 : monitor.percentile(50) / NS_PER_SECOND)
    p99.set(empty ? 0 : monitor.percentile(99) / NS_PER_SECOND)
    max.set(empty ? 0 : monitor.max / NS_PER_SECOND)
    monitor.reset()
    const memory = process.memoryUsage()
    rss.set(memory.rss)
    heap.set(memory.heapUsed)
    const usage = process.cpuUsage()
    const cpuMicros = usage.user + usage.system
    cpu.inc((cpuMicros - lastCpuMicros) / MICROS_PER_SECOND)
    lastCpuMicros = cpuMicros
  }
}

/** Builds the collector with the given options; `layer` is this with the defaults. */
export const layerWith = (options: Options = {}): Layer.Layer<never> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const monitor = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const m = monitorEventLoopDelay({ resolution: options.resolutionMs ?? 10 })
        m.enable()
        return m
      }),
      (m) => Effect.sync(() => void m.disable())
    )
    const sample = Effect.sync(makeSampler(monitor, yield* Effect.context<never>()))
    // Sample once before the layer is up, so the first scrape already has values.
    yield* sample
    const interval = options.interval ?? Duration.seconds(5)
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(interval), sample)))
  }))

/** The collector with a 5 second interval. */
export const layer: Layer.Layer<never> = layerWith()

/**
 * Process-level collector under the names stock Node.js dashboards query (prom-client's defaults: `process_*`,
 * `nodejs_*`), so an off-the-shelf Grafana "Node.js application" dashboard works against `/metrics` unchanged.
 *
 * `layer` opens a `perf_hooks.monitorEventLoopDelay` histogram and a `gc` performance observer in its scope (both
 * released with it), takes one sample at once so the first scrape already has every series, then forks a scoped fiber
 * that samples every `interval` (5 s by default). Each sample reports the event-loop lag of the window since the
 * previous sample, then resets the histogram, so a spike shows up for one window instead of being diluted forever.
 * Lag percentiles are separate gauges, as prom-client exposes them: a gauge with a `quantile` label is not valid
 * exposition (`promtool check metrics` refuses it), and a summary would claim quantiles over all time.
 */
import { readFileSync } from "node:fs"
import { readdir } from "node:fs/promises"
import {
  constants as perfConstants,
  monitorEventLoopDelay,
  type PerformanceEntry,
  PerformanceObserver
} from "node:perf_hooks"
import type { ELDHistogram } from "node:perf_hooks"
import { Duration, Effect, Layer, Metric } from "effect"
import type { Context } from "effect"
import * as HotMetric from "./HotMetric.ts"

const gauge = (name: string, description: string) => Metric.gauge(name, { description })
const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const cpuUser = counter("process_cpu_user_seconds_total", "Total user CPU time spent in seconds.")
const cpuSystem = counter("process_cpu_system_seconds_total", "Total system CPU time spent in seconds.")
export const cpuTotal = counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
export const residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
const startTime = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
const openFds = gauge("process_open_fds", "Number of open file descriptors.")
const maxFds = gauge("process_max_fds", "Maximum number of open file descriptors.")
const eventLoopLag = gauge(
  "nodejs_eventloop_lag_seconds",
  "Mean event-loop lag of the last sampling window in seconds."
)
const eventLoopLagMin = gauge(
  "nodejs_eventloop_lag_min_seconds",
  "Minimum event-loop lag of the last window in seconds."
)
const eventLoopLagMax = gauge(
  "nodejs_eventloop_lag_max_seconds",
  "Maximum event-loop lag of the last window in seconds."
)
const eventLoopLagMean = gauge(
  "nodejs_eventloop_lag_mean_seconds",
  "Mean event-loop lag of the last window in seconds."
)
const eventLoopLagStddev = gauge(
  "nodejs_eventloop_lag_stddev_seconds",
  "Standard deviation of the event-loop lag of the last window in seconds."
)
const eventLoopLagP50 = gauge(
  "nodejs_eventloop_lag_p50_seconds",
  "50th percentile of the event-loop lag of the last window in seconds."
)
const eventLoopLagP90 = gauge(
  "nodejs_eventloop_lag_p90_seconds",
  "90th percentile of the event-loop lag of the last window in seconds."
)
export const eventLoopLagP99 = gauge(
  "nodejs_eventloop_lag_p99_seconds",
  "99th percentile of the event-loop lag of the last window in seconds."
)
const heapTotal = gauge("nodejs_heap_size_total_bytes", "Process heap size from Node.js in bytes.")
const heapUsed = gauge("nodejs_heap_size_used_bytes", "Process heap size used from Node.js in bytes.")
const externalMemory = gauge("nodejs_external_memory_bytes", "Node.js external memory size in bytes.")
const activeResources = gauge(
  "nodejs_active_resources",
  "Number of active resources keeping the event loop alive (handles and requests)."
)
const versionInfo = gauge("nodejs_version_info", "Node.js version info (value 1; the version is the label).")

/** Boundaries of prom-client's GC histogram, in seconds. */
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5] as const
const gcDuration = Metric.histogram("nodejs_gc_duration_seconds", {
  description: "Garbage collection duration by kind (major, minor, incremental, weakcb), in seconds.",
  boundaries: GC_BUCKETS
})
/** `PerformanceEntry.detail.kind` of a gc entry, by `perf_hooks.constants.NODE_PERFORMANCE_GC_*`. */
const GC_KINDS: ReadonlyArray<readonly [number, string]> = [
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [perfConstants.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"]
]

/** Every metric this module registers, for catalogues and the name lint. */
export const metrics = [
  cpuUser,
  cpuSystem,
  cpuTotal,
  residentMemory,
  startTime,
  openFds,
  maxFds,
  eventLoopLag,
  eventLoopLagMin,
  eventLoopLagMax,
  eventLoopLagMean,
  eventLoopLagStddev,
  eventLoopLagP50,
  eventLoopLagP90,
  eventLoopLagP99,
  heapTotal,
  heapUsed,
  externalMemory,
  activeResources,
  versionInfo,
  gcDuration
] as const

/** Collector options. */
export interface Options {
  /** Time between samples. Default 5 seconds. */
  readonly interval?: Duration.Input | undefined
  /** Resolution of the event-loop delay timer in milliseconds. Default 10. */
  readonly resolutionMs?: number | undefined
}

const NS_PER_SECOND = 1e9
const MICROS_PER_SECOND = 1e6

// Linux only; elsewhere these two series stay at 0 rather than guessing. The listing runs on libuv's thread pool: with
// 17,000 sockets a synchronous `readdirSync` blocked the loop for 20-25 ms every sample, and at 80% load that one
// pause grew into a 250 ms delivery tail (issue #6 item 19; the async listing costs the loop about 2 ms).
const countOpenFds = (): Promise<number> => readdir("/proc/self/fd").then((names) => names.length, () => 0)
const readMaxFds = (): number => {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const soft = Number(line?.split(/\s+/)[3])
    return Number.isFinite(soft) ? soft : 0
  } catch {
    return 0
  }
}

const makeSampler = (monitor: ELDHistogram, context: Context.Context<never>): () => Promise<void> => {
  const hot = (metric: HotMetric.GaugeMetric) => HotMetric.gaugeUnsafe(metric, context)
  const lagNow = hot(eventLoopLag)
  const lagMin = hot(eventLoopLagMin)
  const lagMax = hot(eventLoopLagMax)
  const lagMean = hot(eventLoopLagMean)
  const lagStddev = hot(eventLoopLagStddev)
  const lagP50 = hot(eventLoopLagP50)
  const lagP90 = hot(eventLoopLagP90)
  const lagP99 = hot(eventLoopLagP99)
  const rss = hot(residentMemory)
  const heapTotalNow = hot(heapTotal)
  const heapUsedNow = hot(heapUsed)
  const external = hot(externalMemory)
  const resources = hot(activeResources)
  const fds = hot(openFds)
  const user = HotMetric.counterUnsafe(cpuUser, context)
  const system = HotMetric.counterUnsafe(cpuSystem, context)
  const total = HotMetric.counterUnsafe(cpuTotal, context)
  // CPU time is a counter: add only what was spent since the previous sample.
  let last = { user: 0, system: 0 }
  return (): Promise<void> => {
    // A window without a timer tick reports min = 2^63 and max = 0; report zero lag rather than garbage.
    const empty = monitor.count === 0
    const seconds = (ns: number) => (empty ? 0 : ns / NS_PER_SECOND)
    lagNow.set(seconds(monitor.mean))
    lagMin.set(seconds(monitor.min))
    lagMax.set(seconds(monitor.max))
    lagMean.set(seconds(monitor.mean))
    lagStddev.set(seconds(monitor.stddev))
    lagP50.set(seconds(monitor.percentile(50)))
    lagP90.set(seconds(monitor.percentile(90)))
    lagP99.set(seconds(monitor.percentile(99)))
    monitor.reset()
    const memory = process.memoryUsage()
    rss.set(memory.rss)
    heapTotalNow.set(memory.heapTotal)
    heapUsedNow.set(memory.heapUsed)
    external.set(memory.external)
    resources.set(process.getActiveResourcesInfo().length)
    const usage = process.cpuUsage()
    user.inc((usage.user - last.user) / MICROS_PER_SECOND)
    system.inc((usage.system - last.system) / MICROS_PER_SECOND)
    total.inc((usage.user + usage.system - last.user - last.system) / MICROS_PER_SECOND)
    last = usage
    return countOpenFds().then((count) => fds.set(count))
  }
}

/** Builds the collector with the given options; `layer` is this with the defaults. */
export const layerWith = (options: Options = {}): Layer.Layer<never> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const monitor = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const m = monitorEventLoopDelay({ resolution: options.resolutionMs ?? 10 })
        m.enable()
        return m
      }),
      (m) => Effect.sync(() => void m.disable())
    )
    // Handles for every kind up front, so each series exists (with count 0) from the first scrape.
    const gcByKind = new Map(
      GC_KINDS.map((
        [kind, label]
      ) => [kind, HotMetric.histogramUnsafe(Metric.withAttributes(gcDuration, { kind: label }), context)])
    )
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const observer = new PerformanceObserver((list) => {
          for (const entry of list.getEntries()) {
            const kind = (entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } }).detail?.kind
            if (kind !== undefined) gcByKind.get(kind)?.observe(entry.duration / 1000)
          }
        })
        observer.observe({ entryTypes: ["gc"] })
        return observer
      }),
      (observer) => Effect.sync(() => observer.disconnect())
    )
    yield* Metric.update(startTime, Math.round(Date.now() / 1000 - process.uptime()))
    yield* Metric.update(maxFds, readMaxFds())
    yield* Metric.update(Metric.withAttributes(versionInfo, { version: process.version }), 1)
    const sampler = makeSampler(monitor, context)
    const sample = Effect.promise(sampler)
    // Sample once before the layer is up, so the first scrape already has values.
    yield* sample
    const interval = options.interval ?? Duration.seconds(5)
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(interval), sample)))
  }))

/** The collector with a 5 second interval. */
export const layer: Layer.Layer<never> = layerWith()

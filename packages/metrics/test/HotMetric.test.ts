import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { Exposition, HotMetric } from "../src/index.ts"

const freshRegistry = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

const line = (text: string, prefix: string) => text.split("\n").find((l) => l.startsWith(prefix + " "))

describe("HotMetric", () => {
  it.effect("a counter bumped through the handle shows up in the Prometheus text", () =>
    freshRegistry(Effect.gen(function*() {
      const deliveries = Metric.counter("wedsync_test_deliveries_total", { description: "d", incremental: true })
      const handle = yield* HotMetric.counter(deliveries)
      handle.inc()
      handle.inc(4)
      const text = yield* Exposition.render
      assert.strictEqual(line(text, "wedsync_test_deliveries_total"), "wedsync_test_deliveries_total 5")
      assert.include(text, "# HELP wedsync_test_deliveries_total d")
      assert.include(text, "# TYPE wedsync_test_deliveries_total counter")
    })))

  it.effect("uses the default registry when none is provided, as a plain PrometheusMetrics scrape does", () =>
    Effect.gen(function*() {
      const name = `wedsync_test_default_registry_${process.pid}_total`
      const handle = yield* HotMetric.counter(Metric.counter(name, { description: "default registry" }))
      handle.inc(2)
      assert.strictEqual(line(yield* Exposition.render, name), `${name} 2`)
    }))

  it.effect("registers the series at 0 before the first event", () =>
    freshRegistry(Effect.gen(function*() {
      yield* HotMetric.counter(Metric.counter("wedsync_test_idle_total", { description: "idle" }))
      assert.strictEqual(line(yield* Exposition.render, "wedsync_test_idle_total"), "wedsync_test_idle_total 0")
    })))

  it.effect("handles keep writing to the registry captured at creation, even when called from a plain callback", () =>
    Effect.gen(function*() {
      const registry = new Map()
      const counter = Metric.counter("wedsync_test_callback_total", { description: "cb" })
      const handle = yield* HotMetric.counter(counter).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(() => (handle.inc(3), resolve()))))
      const value = yield* Metric.value(counter).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      assert.strictEqual(value.count, 3)
    }))

  it.effect("gauge set/add and histogram observe", () =>
    freshRegistry(Effect.gen(function*() {
      const gauge = yield* HotMetric.gauge(Metric.gauge("wedsync_test_open_sockets", { description: "g" }))
      gauge.set(10)
      gauge.add(-3)
      gauge.add(1)
      const histogram = yield* HotMetric.histogram(
        Metric.histogram("wedsync_test_latency_seconds", { description: "h", boundaries: [0.01, 0.1, 1] })
      )
      histogram.observe(0.005)
      histogram.observe(0.05)
      histogram.observe(5)
      const text = yield* Exposition.render
      assert.strictEqual(line(text, "wedsync_test_open_sockets"), "wedsync_test_open_sockets 8")
      assert.include(text, `wedsync_test_latency_seconds_bucket{le="0.01"} 1`)
      assert.include(text, `wedsync_test_latency_seconds_bucket{le="0.1"} 2`)
      assert.include(text, `wedsync_test_latency_seconds_bucket{le="+Inf"} 3`)
      assert.include(text, "wedsync_test_latency_seconds_count 3")
    })))

  it.effect("labelled handles write separate series, including ones made by counterByLabel", () =>
    freshRegistry(Effect.gen(function*() {
      const closes = Metric.counter("wedsync_test_closes_total", { description: "closes" })
      const byReason = yield* HotMetric.counterByLabel(closes, "reason", ["slow_consumer", "heartbeat_timeout"])
      byReason.slow_consumer.inc()
      byReason.slow_consumer.inc()
      const tagged = yield* HotMetric.counter(Metric.withAttributes(closes, { reason: "normal" }))
      tagged.inc()
      const text = yield* Exposition.render
      assert.include(text, `wedsync_test_closes_total{reason="slow_consumer"} 2`)
      assert.include(text, `wedsync_test_closes_total{reason="heartbeat_timeout"} 0`)
      assert.include(text, `wedsync_test_closes_total{reason="normal"} 1`)
    })))

  it.effect("an incremental counter ignores negative input instead of going backwards", () =>
    freshRegistry(Effect.gen(function*() {
      const counter = Metric.counter("wedsync_test_monotonic_total", { description: "m", incremental: true })
      const handle = yield* HotMetric.counter(counter)
      handle.inc(2)
      handle.inc(-5)
      assert.strictEqual((yield* Metric.value(counter)).count, 2)
    })))
})

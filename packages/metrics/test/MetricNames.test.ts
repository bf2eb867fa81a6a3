import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { HotMetric, MetricNames, ProcessMetrics } from "../src/index.ts"

const rulesOf = (metric: MetricNames.Described) => MetricNames.lint([metric]).map((v) => v.rule)

describe("MetricNames", () => {
  it.effect("everything this package registers passes the lint", () =>
    Effect.gen(function*() {
      yield* Layer.build(ProcessMetrics.layer)
      const snapshot = yield* Metric.snapshot
      assert.isAtLeast(snapshot.length, 6)
      const violations = yield* MetricNames.lintRegistered()
      assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
      assert.deepStrictEqual(MetricNames.lint(ProcessMetrics.metrics), [])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it("accepts well-formed names and bounded labels", () => {
    const good = [
      Metric.counter("wedsync_hub_fanout_deliveries_total", {
        description: "d",
        attributes: { reason: "slow_consumer" }
      }),
      Metric.counter("wedsync_cache_hits_total", { description: "h", attributes: { tier: "l1" } }),
      Metric.counter("wedsync_connection_errors_total", {
        description: "e",
        attributes: { code: "ChannelRateLimitReached" }
      }),
      Metric.gauge("wedsync_connection_open", { description: "o", attributes: { vsn: "2.0.0" } }),
      Metric.histogram("wedsync_hub_publish_latency_seconds", { description: "l", boundaries: [0.001, 0.01] }),
      Metric.histogram("wedsync_connection_frame_size_bytes", { description: "s", boundaries: [64, 1024] })
    ]
    assert.deepStrictEqual(MetricNames.lint(good), [])
  })

  it("refuses a deliberately bad name", () => {
    const bad = Metric.counter("HubMessages", { description: "bad" })
    const violations = MetricNames.lint([bad])
    assert.deepStrictEqual(violations.map((v) => v.rule), ["name", "counter-suffix"])
    assert.match(MetricNames.formatViolations(violations), /HubMessages: \[name\] HubMessages does not match/)
  })

  it("refuses each broken rule with its own reason", () => {
    assert.deepStrictEqual(rulesOf(Metric.counter("wedsync_hub_messages", { description: "x" })), ["counter-suffix"])
    assert.deepStrictEqual(rulesOf(Metric.gauge("wedsync_hub_rooms_total", { description: "x" })), ["total-suffix"])
    assert.deepStrictEqual(rulesOf(Metric.gauge("wedsync_hub_rooms")), ["description"])
    assert.deepStrictEqual(
      rulesOf(Metric.histogram("wedsync_hub_latency_ms", { description: "x", boundaries: [1] })),
      ["unit-suffix"]
    )
    assert.deepStrictEqual(rulesOf(Metric.frequency("wedsync_hub_close_reasons_total", { description: "x" })), [
      "frequency"
    ])
    assert.deepStrictEqual(
      rulesOf(Metric.counter("wedsync_hub_joins_total", { description: "x", attributes: { topic: "room-1" } })),
      ["label-name"]
    )
    assert.deepStrictEqual(
      rulesOf(
        Metric.counter("wedsync_hub_joins_total", { description: "x", attributes: { target: "realtime:room-1" } })
      ),
      ["label-value"]
    )
  })

  it("ignores the unit attributes the exporter never renders", () => {
    const timer = Metric.counter("wedsync_hub_busy_seconds_total", { description: "x", attributes: { unit: "s" } })
    assert.deepStrictEqual(MetricNames.lint([timer]), [])
  })

  it("refuses one name registered with two types", () => {
    const violations = MetricNames.lint([
      Metric.counter("wedsync_hub_events_total", { description: "x" }),
      Metric.gauge("wedsync_hub_events_total", { description: "x" })
    ])
    assert.deepStrictEqual(violations.map((v) => v.rule), ["type-conflict", "total-suffix"])
  })

  it.effect("refuses a metric whose series count shows an unbounded label", () =>
    Effect.gen(function*() {
      const joins = Metric.counter("wedsync_hub_joins_total", { description: "x" })
      for (let i = 0; i < 5; i++) {
        ;(yield* HotMetric.counter(Metric.withAttributes(joins, { event: `e${i}` }))).inc()
      }
      const violations = yield* MetricNames.lintRegistered({ maxSeriesPerMetric: 4 })
      assert.deepStrictEqual(violations.map((v) => v.rule), ["cardinality"])
      assert.deepStrictEqual(yield* MetricNames.lintRegistered({ maxSeriesPerMetric: 5 }), [])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
})

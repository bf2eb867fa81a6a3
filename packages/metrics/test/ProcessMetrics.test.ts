import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Metric, Scope } from "effect"
import { TestClock } from "effect/testing"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Exposition, ProcessMetrics } from "../src/index.ts"

const valueOf = (text: string, series: string): number => {
  const found = text.split("\n").find((l) => l.startsWith(series + " "))
  assert.isDefined(found, `no line for ${series} in:\n${text}`)
  return Number(found!.slice(series.length + 1))
}

const freshRegistry = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

describe("ProcessMetrics", () => {
  it.effect("samples once when the layer starts, with HELP/TYPE lines for every series", () =>
    freshRegistry(Effect.gen(function*() {
      yield* Layer.build(ProcessMetrics.layer)
      const text = yield* Exposition.render
      assert.include(text, "# TYPE nodejs_eventloop_lag_p99_seconds gauge")
      assert.include(text, "# TYPE process_cpu_seconds_total counter")
      assert.include(text, "# HELP process_resident_memory_bytes")
      for (const q of ["p50", "p90", "p99", "max"]) {
        assert.isAtLeast(valueOf(text, `nodejs_eventloop_lag_${q}_seconds`), 0)
      }
      assert.isAbove(valueOf(text, "process_resident_memory_bytes"), 1_000_000)
      assert.isAbove(valueOf(text, "nodejs_heap_size_used_bytes"), 100_000)
      assert.isAbove(valueOf(text, "process_cpu_seconds_total"), 0)
    })))

  it.effect("samples again every interval; CPU time only grows", () =>
    freshRegistry(Effect.gen(function*() {
      yield* Layer.build(ProcessMetrics.layerWith({ interval: "1 second" }))
      const cpuBefore = (yield* Metric.value(ProcessMetrics.cpuTotal)).count
      yield* Metric.update(ProcessMetrics.residentMemory, -1)
      yield* TestClock.adjust("999 millis")
      assert.strictEqual((yield* Metric.value(ProcessMetrics.residentMemory)).value, -1)
      // Burn a little CPU so the next delta is visibly positive.
      let x = 0
      for (let i = 0; i < 2_000_000; i++) x += i
      assert.isAbove(x, 0)
      yield* TestClock.adjust("1 millis")
      assert.isAbove((yield* Metric.value(ProcessMetrics.residentMemory)).value, 0)
      assert.isAbove((yield* Metric.value(ProcessMetrics.cpuTotal)).count, cpuBefore)
    })))

  it.effect("stops sampling when its scope closes", () =>
    freshRegistry(Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(ProcessMetrics.layer, scope)
      yield* Scope.close(scope, Exit.void)
      yield* Metric.update(ProcessMetrics.residentMemory, -1)
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual((yield* Metric.value(ProcessMetrics.residentMemory)).value, -1)
    })))

  it.live("reports real event-loop lag after the loop was blocked", () =>
    freshRegistry(Effect.gen(function*() {
      yield* Layer.build(ProcessMetrics.layerWith({ interval: "200 millis", resolutionMs: 5 }))
      // Let the monitor tick, then block the loop for ~60 ms inside the window.
      yield* Effect.sleep("20 millis")
      const until = performance.now() + 60
      while (performance.now() < until) { /* block */ }
      // Poll faster than the window so a busy machine delaying one timer cannot make us miss the sample.
      let seen = 0
      for (let i = 0; i < 50 && seen < 0.04; i++) {
        yield* Effect.sleep("20 millis")
        seen = Math.max(seen, valueOf(yield* Exposition.render, `nodejs_eventloop_lag_max_seconds`))
      }
      assert.isAtLeast(seen, 0.04)
    })))

  it.live("counts a full collection as major and a young-generation one as minor", () =>
    freshRegistry(Effect.gen(function*() {
      yield* Layer.build(ProcessMetrics.layer)
      const count = (kind: string) =>
        Effect.map(Exposition.render, (text) => valueOf(text, `nodejs_gc_duration_seconds_count{kind="${kind}"}`))
      const majorBefore = yield* count("major")
      setFlagsFromString("--expose-gc")
      const gc = runInNewContext("gc") as (options?: { type: "major" | "minor" }) => void
      gc({ type: "major" })
      gc({ type: "minor" })
      // Performance entries reach their observer asynchronously.
      let major = majorBefore
      for (let i = 0; i < 100 && major === majorBefore; i++) {
        yield* Effect.sleep("10 millis")
        major = yield* count("major")
      }
      assert.isAbove(major, majorBefore)
      assert.isAbove(yield* count("minor"), 0)
    })))
})

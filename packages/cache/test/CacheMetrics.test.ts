import { assert, it } from "@effect/vitest"
import { MetricNames } from "@wedsync/metrics"
import { Effect, Metric } from "effect"
import { CacheMetrics } from "../src/index.ts"

it.effect("every cache series follows the naming and label rules and is declared at 0", () =>
  Effect.gen(function*() {
    yield* CacheMetrics.declareSeries
    const snapshot = (yield* Metric.snapshot).filter((m) => m.id.startsWith("wedsync_cache_"))
    assert.isAbove(snapshot.length, 50)
    assert.strictEqual(MetricNames.formatViolations(MetricNames.lint(snapshot)), "")
  }))

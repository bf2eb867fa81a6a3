import { assert, describe, it } from "@effect/vitest"
import { MetricNames } from "@wedsync/metrics"
import { Effect } from "effect"
import * as RedisMetrics from "../src/RedisMetrics.ts"

describe("RedisMetrics", () => {
  it("names every handle by the metrics rules", () => {
    const violations = MetricNames.lint(RedisMetrics.metrics)
    assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
  })

  it.effect("declares every labelled series within the label rules", () =>
    Effect.gen(function*() {
      yield* RedisMetrics.declareSeries
      const violations = (yield* MetricNames.lintRegistered()).filter((v) => v.metric.startsWith("wedsync_redis_"))
      assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
    }))
})

import { assert, describe, it } from "@effect/vitest"
import { MetricNames } from "@wedsync/metrics"
import { Effect } from "effect"
import * as UpstreamMetrics from "../src/UpstreamMetrics.ts"

describe("UpstreamMetrics", () => {
  it("names every handle by the metrics rules", () => {
    const violations = MetricNames.lint(UpstreamMetrics.metrics)
    assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
  })

  it.effect("declares every labelled series within the label rules", () =>
    Effect.gen(function*() {
      yield* UpstreamMetrics.declareSeries
      const violations = (yield* MetricNames.lintRegistered()).filter((v) => v.metric.startsWith("wedsync_upstream_"))
      assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
    }))
})

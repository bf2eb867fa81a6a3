import { assert, describe, it } from "@effect/vitest"
import { MetricNames } from "@wedsync/metrics"
import * as ChangesMetrics from "../src/ChangesMetrics.ts"

describe("ChangesMetrics", () => {
  it("names every handle by the metrics rules", () => {
    const violations = MetricNames.lint(ChangesMetrics.metrics)
    assert.deepStrictEqual(violations, [], MetricNames.formatViolations(violations))
  })
})

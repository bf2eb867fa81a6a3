import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { LatencyHistogram, percentile } from "../src/stats.ts"

describe("percentile", () => {
  it("is NaN for an empty sample", () => {
    assert.isNaN(percentile([], 0.5))
  })

  it("uses the nearest-rank definition", () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert.strictEqual(percentile(sorted, 0), 1)
    assert.strictEqual(percentile(sorted, 0.1), 1)
    assert.strictEqual(percentile(sorted, 0.11), 2)
    assert.strictEqual(percentile(sorted, 0.5), 5)
    assert.strictEqual(percentile(sorted, 0.99), 10)
    assert.strictEqual(percentile(sorted, 1), 10)
  })

  it("p99 and p99.9 of 1..1000", () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1)
    assert.strictEqual(percentile(sorted, 0.99), 990)
    assert.strictEqual(percentile(sorted, 0.999), 999)
  })

  it("clamps q outside [0, 1]", () => {
    assert.strictEqual(percentile([3, 4], -1), 3)
    assert.strictEqual(percentile([3, 4], 2), 4)
  })

  it("returns an element of the sample, and is monotone in q", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (values, a, b) => {
          const sorted = [...values].sort((x, y) => x - y)
          const [lo, hi] = a <= b ? [a, b] : [b, a]
          assert.include(sorted, percentile(sorted, lo))
          assert.isAtMost(percentile(sorted, lo), percentile(sorted, hi))
        }
      )
    )
  })
})

describe("LatencyHistogram", () => {
  it("is empty at first and after reset", () => {
    const h = new LatencyHistogram()
    assert.strictEqual(h.count, 0)
    assert.isNaN(h.percentile(0.5))
    h.record(5)
    h.reset()
    assert.strictEqual(h.count, 0)
    assert.isNaN(h.max)
  })

  it("tracks count, min, max and mean exactly", () => {
    const h = new LatencyHistogram()
    for (const v of [2, 4, 6, 8]) h.record(v)
    assert.strictEqual(h.count, 4)
    assert.strictEqual(h.min, 2)
    assert.strictEqual(h.max, 8)
    assert.strictEqual(h.mean, 5)
  })

  it("a single value is reported exactly at every percentile", () => {
    const h = new LatencyHistogram()
    h.record(42.5)
    assert.strictEqual(h.percentile(0.5), 42.5)
    assert.strictEqual(h.percentile(0.999), 42.5)
  })

  it("negative values (clock skew) count as zero", () => {
    const h = new LatencyHistogram()
    h.record(-3)
    assert.strictEqual(h.min, 0)
    assert.strictEqual(h.percentile(1), 0)
  })

  it("stays within its precision of the exact nearest-rank percentile", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.01, max: 100_000, noNaN: true }), { minLength: 1, maxLength: 2000 }),
        fc.constantFrom(0.5, 0.9, 0.99, 0.999, 1),
        (values, q) => {
          const h = new LatencyHistogram({ precision: 0.01 })
          for (const v of values) h.record(v)
          const exact = percentile([...values].sort((x, y) => x - y), q)
          const approx = h.percentile(q)
          assert.isAtLeast(approx, exact * (1 - 1e-9))
          assert.isAtMost(approx, exact * 1.01 + 1e-9)
        }
      )
    )
  })

  it("values above the range land in the last bucket and report the true max", () => {
    const h = new LatencyHistogram({ maxValue: 100 })
    h.record(50)
    h.record(1e6)
    assert.strictEqual(h.percentile(1), 1e6)
  })
})

/** The delivery p99 of one sampling window, from two states of the cumulative write-delay histogram. */
import { assert, describe, it } from "@effect/vitest"
import { windowP99Ms } from "../src/ScalingController.ts"

const state = (counts: ReadonlyArray<number>) => ({
  buckets: [0.001, 0.01, 0.1].map((boundary, i): [number, number] => [boundary, counts[i] ?? 0]),
  count: counts[counts.length - 1] ?? 0,
  min: 0,
  max: 0,
  sum: 0
})

describe("windowP99Ms", () => {
  it("is the upper bound of the bucket holding the 99th percentile of the window only", () => {
    // All time: 1,000 fast observations; this window: 100 more, 2 of them slow (above 10 ms).
    const before = state([1000, 1000, 1000])
    assert.strictEqual(windowP99Ms(before, state([1098, 1098, 1100])), 100)
    // One slow in a hundred is still within the 99th percentile of the fast bucket.
    assert.strictEqual(windowP99Ms(before, state([1099, 1099, 1100])), 1)
  })

  it("is undefined without observations in the window, and the largest boundary above every bucket", () => {
    assert.isUndefined(windowP99Ms(state([5, 5, 5]), state([5, 5, 5])))
    assert.strictEqual(windowP99Ms(undefined, { ...state([0, 0, 0]), count: 10 }), 100)
    assert.strictEqual(windowP99Ms(undefined, state([10, 10, 10])), 1)
  })
})

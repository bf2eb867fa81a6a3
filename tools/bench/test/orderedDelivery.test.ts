import { assert, describe, it } from "@effect/vitest"
import { orderedDelivery } from "../src/targets/Target.ts"

describe("orderedDelivery", () => {
  it("passes every delivery on and flags repeats and reorders per connection", () => {
    const delivered: Array<number> = []
    const reordered: Array<number> = []
    const events = {
      onDelivery: (_t: number, s: number) => delivered.push(s),
      onReorder: (s: number) => reordered.push(s),
      onUnexpectedClose: () => undefined
    }
    const a = orderedDelivery(events)
    const b = orderedDelivery(events)
    for (const s of [1, 2, 2, 4, 3, 5]) a(0, s)
    b(0, 1)
    assert.deepStrictEqual(delivered, [1, 2, 2, 4, 3, 5, 1])
    assert.deepStrictEqual(reordered, [2, 3])
  })
})

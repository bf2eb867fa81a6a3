import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { decide, retryAfter } from "../src/Admission.ts"
import { defaults } from "../src/ScalingConfig.ts"

// Safe capacity 12000 sockets, 100 ms delivery p99, 100 ms event-loop p99; Retry-After 5-30 s.
const options = defaults

describe("Admission.decide", () => {
  it("admits below the safe capacity and sheds at and above it", () => {
    assert.deepStrictEqual(decide({ connections: 11_999 }, options, 0.5), { _tag: "Admit" })
    const shed = decide({ connections: 12_000 }, options, 0.5)
    assert.strictEqual(shed._tag, "Shed")
    if (shed._tag === "Shed") {
      assert.strictEqual(shed.reason, "connections")
      assert.strictEqual(shed.detail, "12000 connections, safe capacity 12000")
      assert.strictEqual(shed.retryAfterSeconds, 18) // 5 + floor(0.5 × 26)
    }
  })

  it("sheds when the event loop or delivery p99 is past its guard, even with room for sockets", () => {
    const healthy = { connections: 100, deliveryP99Ms: 100, eventLoopP99Ms: 100 }
    assert.strictEqual(decide(healthy, options, 0)._tag, "Admit")
    const loop = decide({ ...healthy, eventLoopP99Ms: 101 }, options, 0)
    assert.deepStrictEqual(loop, {
      _tag: "Shed",
      reason: "event-loop-delay",
      retryAfterSeconds: 5,
      detail: "event-loop delay p99 101 ms above 100 ms"
    })
    const delivery = decide({ ...healthy, deliveryP99Ms: 250 }, options, 0)
    assert.strictEqual(delivery._tag === "Shed" ? delivery.reason : "admitted", "delivery-latency")
  })

  it("does not shed on a latency it could not read", () => {
    assert.strictEqual(
      decide({ connections: 10, deliveryP99Ms: undefined, eventLoopP99Ms: undefined }, options, 0)._tag,
      "Admit"
    )
  })

  it("Retry-After is a whole number of seconds within its bounds for any random, and spreads over them", () => {
    fc.assert(
      fc.property(
        fc.double({ noNaN: false }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 0, max: 600 }),
        (random, min, span) => {
          const s = retryAfter(random, min, min + span)
          return Number.isInteger(s) && s >= min && s <= min + span
        }
      )
    )
    assert.strictEqual(retryAfter(0, 5, 30), 5)
    assert.strictEqual(retryAfter(0.999999, 5, 30), 30)
    assert.strictEqual(retryAfter(Number.NaN, 5, 30), 5)
    const seen = new Set(Array.from({ length: 26 }, (_, i) => retryAfter((i + 0.5) / 26, 5, 30)))
    assert.strictEqual(seen.size, 26)
  })
})

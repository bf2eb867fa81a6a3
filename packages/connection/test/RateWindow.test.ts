import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { RateWindow } from "../src/RateWindow.ts"

/** Increasing Clock times, as the actor reads them. */
const times = fc.array(fc.integer({ min: 0, max: 2_000 }), { maxLength: 60 }).map((gaps) => {
  let t = 0
  return gaps.map((gap) => (t += gap))
})

describe("RateWindow", () => {
  it("fixed: the limit per window, then a new window once windowMs has passed since its start", () => {
    const window = RateWindow.fixed(2, 1000)
    assert.deepStrictEqual([window.hit(0), window.hit(10), window.hit(999)], [true, true, false])
    assert.isTrue(window.exceeded)
    assert.deepStrictEqual([window.hit(1000), window.hit(1500), window.hit(1999), window.hit(2000)], [
      true,
      true,
      false,
      true
    ])
  })

  it("fixed: add counts without rolling; roll starts the next window", () => {
    const window = RateWindow.fixed(1, 1000)
    window.roll(0)
    assert.deepStrictEqual([window.add(), window.add()], [true, false])
    window.roll(999)
    assert.isTrue(window.exceeded)
    window.roll(1000)
    assert.isFalse(window.exceeded)
  })

  it("sliding: refuses exactly what a log of the calls of the last windowMs refuses", () => {
    fc.assert(fc.property(times, fc.integer({ min: 0, max: 6 }), (ts, limit) => {
      const window = RateWindow.sliding(limit, 3000)
      let log: Array<number> = []
      for (const now of ts) {
        log = log.filter((t) => now - t < 3000)
        log.push(now)
        assert.strictEqual(window.hit(now), log.length <= limit)
      }
    }))
  })
})

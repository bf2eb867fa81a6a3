import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import type { Wedding } from "../src/Calendar.ts"
import { curve, devicesOf, make, MAX_CURVE_POINTS, preparations } from "../src/LoadForecast.ts"
import { decide, type LoadSample, retain } from "../src/ReplicaPolicy.ts"
import { defaults, type ScalingOptions } from "../src/ScalingConfig.ts"

const HOUR = 3_600_000
const day = Date.UTC(2027, 5, 12)
const h = (hours: number) => day + hours * HOUR

/** Ramp 2 h, decline 1 h, 8 h by default; 40 connections per process once the 20% headroom is kept. */
const options: ScalingOptions = {
  ...defaults,
  rampMs: 2 * HOUR,
  declineMs: HOUR,
  defaultDurationMs: 8 * HOUR,
  devicesPerSupplier: 3,
  devicesPerGuest: 0.5,
  leadTimeMs: HOUR / 2,
  warmBeforeRampMs: HOUR / 4,
  capacity: { ...defaults.capacity, connections: 50 }
}

// A: 10 suppliers × 4 devices + 100 guests × 0.5 = 90 devices, 14:00-23:00.
// B: 5 suppliers × 3 (the default) = 15 devices, 16:00 for the default 8 hours.
const a: Wedding = { id: "a", start: h(14), end: h(23), suppliers: 10, devicesPerSupplier: 4, guests: 100 }
const b: Wedding = { id: "b", start: h(16), suppliers: 5 }

describe("LoadForecast", () => {
  it("counts supplier devices and the guests who open the app", () => {
    assert.strictEqual(devicesOf(a, options), 90)
    assert.strictEqual(devicesOf(b, options), 15)
    assert.strictEqual(devicesOf({ ...b, guests: 3 }, options), 17) // 1.5 guest devices round up
  })

  it("predicts the shape of a day with two weddings: ramp before each start, plateau, decline after the end", () => {
    const f = make([a, b], options)
    const at = (hours: number) => f.connectionsAt(h(hours))
    assert.deepStrictEqual(
      [11, 12, 13, 14, 15, 16, 20, 23, 23.5, 24, 24.5, 25].map(at),
      [0, 0, 45, 90, 97.5, 105, 105, 105, 60, 15, 7.5, 0]
    )
    assert.strictEqual(f.peakBetween(h(10), h(13)), 45)
    // B's start (the top of its ramp) lies inside the window: found exactly, not by sampling.
    assert.strictEqual(f.peakBetween(h(15.5), h(17)), 105)
    assert.strictEqual(f.peakBetween(h(26), h(30)), 0)
  })

  it("asks for capacity a lead time ahead of the connections that need it", () => {
    const f = make([a, b], options)
    assert.strictEqual(f.replicasAt(h(11.5)), undefined) // the window ends at A's ramp start
    assert.strictEqual(f.replicasAt(h(12.5)), 2) // 45 connections expected at 13:00
    // At 13:30 the 67.5 connections present fit in 2 processes, but 14:00's 90 need 3: they are asked for now.
    assert.strictEqual(Math.ceil(f.connectionsAt(h(13.5)) / 40), 2)
    assert.strictEqual(f.replicasAt(h(13.5)), 3)
    assert.strictEqual(f.replicasAt(h(15.5)), 3) // 105 at 16:00
    const longer = make([a, b], { ...options, leadTimeMs: 2 * HOUR })
    assert.strictEqual(longer.replicasAt(h(12.5)), 3)
    assert.strictEqual(make([a, b], { ...options, headroom: 0 }).replicasAt(h(15.5)), 3) // 105 / 50
  })

  it("over a simulated day, pre-scaling has the capacity in place before the devices arrive; reactive alone lags", () => {
    const f = make([a, b], options)
    const day = (predict: ((at: number) => number | undefined) | undefined) => {
      const history: Array<LoadSample> = []
      let replicas = 1
      let shortMinutes = 0
      for (let minute = 10 * 60; minute <= 27 * 60; minute++) {
        const at = h(minute / 60)
        const connections = f.connectionsAt(at)
        // The replicas running when these devices are connected must hold them at the target (capacity less headroom).
        if (replicas < Math.ceil(connections / 40)) shortMinutes++
        history.push({
          at,
          replicas,
          processes: Array.from({ length: replicas }, () => ({
            connections: connections / replicas,
            deliveryP99Ms: 2,
            eventLoopP99Ms: 2,
            cpu: 0.05,
            memoryBytes: 1e8
          }))
        })
        replicas = decide(retain(history, at, options), at, options, predict).desiredReplicas
      }
      return { shortMinutes, replicas }
    }
    const predicted = day(f.replicasAt)
    assert.strictEqual(predicted.shortMinutes, 0)
    assert.strictEqual(predicted.replicas, 1) // back to the minimum once the day is over
    assert.isAbove(day(undefined).shortMinutes, 0)
  })

  it("schedules the cache warmer before each wedding's ramp, earliest first", () => {
    const plan = preparations(make([b, a], options), options)
    assert.deepStrictEqual(plan.map((p) => [p.id, p.warmAt, p.scaleAt, p.rampStart]), [
      ["a", h(11.75), h(11.5), h(12)],
      ["b", h(13.75), h(13.5), h(14)]
    ])
    assert.strictEqual(plan[1]!.end, h(24))
  })

  it("draws the curve with both ends and at most MAX_CURVE_POINTS points", () => {
    const f = make([a, b], options)
    const hourly = curve(f, h(12), h(25), HOUR)
    assert.lengthOf(hourly, 14)
    assert.deepStrictEqual(hourly[2], { at: h(14), connections: 90 })
    assert.isAtMost(curve(f, h(0), h(48), 1).length, MAX_CURVE_POINTS)
  })

  it("the peak of a window is at least the curve anywhere inside it, and is reached", () => {
    const wedding = fc.record({
      id: fc.string({ maxLength: 4 }),
      start: fc.integer({ min: 0, max: 48 }).map((q) => h(q / 2)),
      suppliers: fc.integer({ min: 0, max: 50 }),
      guests: fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined })
    })
    fc.assert(
      fc.property(
        fc.array(wedding, { maxLength: 6 }),
        fc.integer({ min: 0, max: 36 * 60 }),
        fc.integer({ min: 1, max: 6 * 60 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }),
        (weddings, fromMinute, spanMinutes, probes) => {
          const f = make(weddings, options)
          const from = h(fromMinute / 60)
          const to = from + spanMinutes * 60_000
          const peak = f.peakBetween(from, to)
          const points = [from, to, ...probes.map((p) => from + p * (to - from))]
          const values = points.map(f.connectionsAt)
          return values.every((v) => v <= peak + 1e-9) &&
            (peak === 0 ||
              f.phases.some((p) => [p.start, p.end, from, to].some((t) => Math.abs(f.connectionsAt(t) - peak) < 1e-9)))
        }
      )
    )
  })
})

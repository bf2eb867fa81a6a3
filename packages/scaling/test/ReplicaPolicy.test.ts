import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { decide, type LoadSample, type ProcessLoad, recommend, retain } from "../src/ReplicaPolicy.ts"
import { defaults, type ScalingOptions } from "../src/ScalingConfig.ts"

/** 1000 connections per process, so the target with 20% headroom is 800. */
const options: ScalingOptions = {
  ...defaults,
  minReplicas: 1,
  maxReplicas: 50,
  capacity: { ...defaults.capacity, connections: 1000 }
}

/** A process whose only meaningful load is its connections: every other metric is low. */
const proc = (connections: number, extra: ProcessLoad = {}): ProcessLoad => ({
  connections,
  deliveryP99Ms: 2,
  eventLoopP99Ms: 3,
  cpu: 0.05,
  memoryBytes: 50_000_000,
  ...extra
})

const sample = (at: number, replicas: number, connectionsEach: number): LoadSample => ({
  at,
  replicas,
  processes: Array.from({ length: replicas }, () => proc(connectionsEach))
})

describe("ReplicaPolicy.decide", () => {
  it("scales up to ceil(replicas × average / target), driven by the fullest metric", () => {
    const d = decide([sample(0, 2, 1200)], 0, options)
    assert.strictEqual(d.desiredReplicas, 3)
    assert.strictEqual(d.direction, "up")
    assert.strictEqual(d.drivenBy, "connections")
    assert.match(d.reason, /^up 2 → 3: connections 1200 per process against target 800 \(ratio 1\.5\)/)

    const hot = decide([{ at: 0, replicas: 2, processes: [proc(100, { eventLoopP99Ms: 120 }), proc(100)] }], 0, options)
    // Event loop: average (120 + 3) / 2 = 61.5 ms against 40 ms → ceil(2 × 1.54) = 4.
    assert.strictEqual(hot.desiredReplicas, 4)
    assert.strictEqual(hot.drivenBy, "eventLoopP99Ms")
  })

  it("keeps the count while the ratio is within the 10% tolerance band, and moves just outside it", () => {
    for (const within of [760, 800, 850, 880]) {
      const d = decide([sample(0, 2, within)], 0, options)
      assert.strictEqual(d.desiredReplicas, 2, `${within} connections`)
      assert.match(d.reason, /^hold at 2: connections .*; within the 10% tolerance band$/)
    }
    assert.strictEqual(decide([sample(0, 2, 900)], 0, options).desiredReplicas, 3) // ratio 1.125
    // 700 / 800 = 0.875: outside the band, but ceil(2 × 0.875) is still 2.
    assert.strictEqual(decide([sample(0, 4, 700)], 0, options).desiredReplicas, 4)
    assert.strictEqual(decide([sample(0, 4, 500)], 0, options).desiredReplicas, 3)
  })

  it("keeps 20% headroom: 900 connections on a 1000-connection process asks for a second one", () => {
    assert.strictEqual(decide([sample(0, 1, 900)], 0, options).desiredReplicas, 2)
    assert.strictEqual(decide([sample(0, 1, 900)], 0, { ...options, headroom: 0 }).desiredReplicas, 1)
  })

  it("scale-down stabilization: load flapping every sample holds the replicas; the same flapping without a window flaps", () => {
    const run = (o: ScalingOptions) => {
      const history: Array<LoadSample> = []
      let replicas = 4
      const seen: Array<number> = []
      // Each 15 s the total load switches between 3200 connections (4 × 800) and 800 (what one process carries).
      for (let i = 0; i < 40; i++) {
        const at = i * 15_000
        const total = i % 2 === 0 ? 3200 : 800
        history.push(sample(at, replicas, total / replicas))
        replicas = decide(history, at, o).desiredReplicas
        seen.push(replicas)
      }
      return seen
    }
    assert.deepStrictEqual(new Set(run(options)), new Set([4]))
    const flapping = run({ ...options, scaleDownStabilizationMs: 0, scaleDownPeriodMs: 1 })
    assert.isAbove(new Set(flapping).size, 1)
  })

  it("scale-down waits for the window, then steps down at most 50% per period", () => {
    const history: Array<LoadSample> = [sample(0, 8, 800)]
    let replicas = 8
    const at = (t: number) => {
      history.push(sample(t, replicas, 800 / replicas)) // one process' worth of load in total
      const d = decide(history, t, options)
      replicas = d.desiredReplicas
      return d
    }
    const early = at(60_000)
    assert.strictEqual(early.desiredReplicas, 8)
    assert.deepStrictEqual(early.limitedBy, ["scale-down-stabilization"])
    assert.match(early.reason, /held back by scale-down-stabilization/)
    const first = at(300_001) // the high sample at 0 has left the 5-minute window
    assert.strictEqual(first.desiredReplicas, 4)
    assert.deepStrictEqual(first.limitedBy, ["scale-down-rate"])
    // The sample at 300 001 shows 8 (taken before that step): for the next 60 s the base is 8, so 4 is as low as it goes.
    assert.strictEqual(at(330_000).desiredReplicas, 4)
    assert.strictEqual(at(361_000).desiredReplicas, 4)
    assert.strictEqual(at(391_000).desiredReplicas, 2) // base: the sample at 330 000, which shows 4
    assert.strictEqual(at(452_000).desiredReplicas, 2) // base: the sample at 391 000, still showing 4
    assert.strictEqual(at(513_000).desiredReplicas, 1)
  })

  it("scale-up stabilization: a one-sample spike inside the window does not scale up, sustained load does", () => {
    const o = { ...options, scaleUpStabilizationMs: 60_000 }
    const spike = [sample(0, 2, 400), sample(15_000, 2, 400), sample(30_000, 2, 2000)]
    const d = decide(spike, 30_000, o)
    assert.strictEqual(d.desiredReplicas, 2)
    assert.deepStrictEqual(d.limitedBy, ["scale-up-stabilization"])
    const sustained = [sample(0, 2, 400), sample(15_000, 2, 2000), sample(75_000, 2, 2000), sample(90_000, 2, 2000)]
    assert.strictEqual(decide(sustained, 90_000, o).desiredReplicas, 5)
  })

  it("rate limits scale-up to the larger of +100% and +4 per period, counted from the period's start", () => {
    const d = decide([sample(0, 2, 8000)], 0, options) // asks for 20
    assert.strictEqual(d.desiredReplicas, 6) // max(2 × 2, 2 + 4)
    assert.deepStrictEqual(d.limitedBy, ["scale-up-rate"])
    assert.strictEqual(decide([sample(0, 10, 8000)], 0, options).desiredReplicas, 20) // max(20, 14)
    assert.strictEqual(decide([sample(0, 2, 8000)], 0, { ...options, scaleUpMaxReplicas: 0 }).desiredReplicas, 4)
    // The step 2 → 6 shows from the sample at 5 s: until the period after it, the base is still 2.
    const after = [sample(0, 2, 8000), sample(5_000, 6, 2667)]
    assert.strictEqual(decide(after, 10_000, options).desiredReplicas, 6)
    assert.strictEqual(decide([...after, sample(16_000, 6, 2667)], 16_000, options).desiredReplicas, 6)
    assert.strictEqual(decide([...after, sample(21_000, 6, 2667)], 21_000, options).desiredReplicas, 12)
  })

  it("never goes below minReplicas or above maxReplicas, and says which bound held", () => {
    const low = decide([sample(0, 3, 10)], 400_000, { ...options, minReplicas: 3 })
    assert.strictEqual(low.desiredReplicas, 3)
    assert.include(low.limitedBy, "min-replicas")
    const high = decide([sample(0, 4, 5000)], 0, { ...options, maxReplicas: 5 })
    assert.strictEqual(high.desiredReplicas, 5)
    assert.include(high.limitedBy, "max-replicas")
    // Running below the minimum scales up to it even with no load.
    assert.strictEqual(decide([sample(0, 1, 0)], 0, { ...options, minReplicas: 2 }).desiredReplicas, 2)
  })

  it("a metric missing everywhere blocks a scale-down but not a scale-up", () => {
    const noCpu = (connections: number): LoadSample => ({
      at: 0,
      replicas: 4,
      processes: Array.from({ length: 4 }, () => proc(connections, { cpu: undefined }))
    })
    const down = decide([noCpu(100)], 0, options)
    assert.strictEqual(down.desiredReplicas, 4)
    assert.match(down.reason, /scale-down skipped: a metric is missing; missing: cpu/)
    assert.strictEqual(
      decide([{ ...noCpu(100), processes: [proc(100), proc(100), proc(100), proc(100)] }], 400_000, options)
        .desiredReplicas,
      2
    )
    assert.strictEqual(decide([noCpu(1600)], 0, options).desiredReplicas, 8)
  })

  it("processes without a report count as idle for scale-up and as full for scale-down", () => {
    const partial = (each: number): LoadSample => ({ at: 0, replicas: 4, processes: [proc(each), proc(each)] })
    // Reporting: 1600 each (ratio 2). With the silent two at 0 the ratio is 1.0: within tolerance, so hold.
    assert.strictEqual(recommend(partial(1600), options).reactive, 4)
    // 2400 each: with the silent two at 0, ratio 1.5 → 6 (not the 12 that ignoring them would give).
    assert.strictEqual(recommend(partial(2400), options).reactive, 6)
    // 100 each (ratio 0.125): the silent two count as at target, so (200 + 1600) / 4 / 800 → 3, not 1.
    const down = recommend(partial(100), options)
    const connections = down.metrics.find((m) => m.metric === "connections")
    assert.strictEqual(connections?._tag === "Measured" ? connections.replicas : -1, 3)
  })

  it("holds with no metric at all and with no sample", () => {
    const silent = decide([{ at: 0, replicas: 3, processes: [{}, {}] }], 0, options)
    assert.strictEqual(silent.desiredReplicas, 3)
    assert.strictEqual(silent.drivenBy, "none")
    assert.match(silent.reason, /no metric measured/)
    const nothing = decide([], 0, { ...options, minReplicas: 2 })
    assert.strictEqual(nothing.desiredReplicas, 2)
    assert.strictEqual(nothing.reason, "hold: no load samples yet")
  })

  it("takes the calendar's prediction when it is larger, through the same rate limits", () => {
    const d = decide([sample(0, 2, 100)], 0, options, () => 9)
    assert.strictEqual(d.drivenBy, "calendar")
    assert.strictEqual(d.desiredReplicas, 6)
    assert.match(d.reason, /calendar predicts 9 replicas; recommended 9; held back by scale-up-rate/)
    assert.strictEqual(decide([sample(0, 2, 1200)], 0, options, () => 1).drivenBy, "connections")
    assert.strictEqual(decide([sample(0, 2, 1200)], 0, options, () => Number.NaN).desiredReplicas, 3)
  })
})

describe("ReplicaPolicy properties", () => {
  const load = fc.record({
    connections: fc.option(fc.integer({ min: 0, max: 50_000 }), { nil: undefined }),
    deliveryP99Ms: fc.option(fc.double({ min: 0, max: 2_000, noNaN: true }), { nil: undefined }),
    eventLoopP99Ms: fc.option(fc.double({ min: 0, max: 2_000, noNaN: true }), { nil: undefined }),
    cpu: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
    memoryBytes: fc.option(fc.integer({ min: 0, max: 4_000_000_000 }), { nil: undefined })
  })
  const history = fc.array(
    fc.record({
      at: fc.integer({ min: 0, max: 900_000 }),
      replicas: fc.integer({ min: 0, max: 60 }),
      processes: fc.array(load, { maxLength: 8 })
    }),
    { maxLength: 12 }
  )

  it("the decision is always within minReplicas..maxReplicas", () => {
    fc.assert(
      fc.property(
        history,
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 30 }),
        fc.option(fc.double({ min: -10, max: 200 }), { nil: undefined }),
        (samples, min, span, predicted) => {
          const o = { ...options, minReplicas: min, maxReplicas: min + span }
          const d = decide(samples, 900_000, o, () => predicted)
          return Number.isInteger(d.desiredReplicas) && d.desiredReplicas >= min && d.desiredReplicas <= min + span
        }
      )
    )
  })

  it("deciding over the retained samples gives the decision over the whole history", () => {
    fc.assert(
      fc.property(
        history,
        fc.integer({ min: 0, max: 400_000 }),
        fc.integer({ min: 0, max: 400_000 }),
        fc.integer({ min: 1, max: 200_000 }),
        fc.integer({ min: 1, max: 200_000 }),
        (samples, up, down, upPeriod, downPeriod) => {
          const o = {
            ...options,
            scaleUpStabilizationMs: up,
            scaleDownStabilizationMs: down,
            scaleUpPeriodMs: upPeriod,
            scaleDownPeriodMs: downPeriod
          }
          const now = 900_000
          const whole = decide(samples, now, o)
          const kept = decide(retain(samples, now, o), now, o)
          return whole.desiredReplicas === kept.desiredReplicas && whole.reason === kept.reason
        }
      )
    )
  })

  it("more load never recommends fewer replicas", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 0, max: 20_000 }),
        (replicas, each, extra) => {
          const at = (add: number): LoadSample => ({
            at: 0,
            replicas,
            processes: each.map((c, i) => proc(i === 0 ? c + add : c))
          })
          return decide([at(extra)], 0, options).desiredReplicas >= decide([at(0)], 0, options).desiredReplicas
        }
      )
    )
  })
})

describe("ReplicaPolicy.retain", () => {
  it("keeps the stabilization window and the sample before the rate period, and a decision does not change without the rest", () => {
    const history = Array.from({ length: 60 }, (_, i) => sample(i * 15_000, 4, i < 30 ? 800 : 100))
    const now = 59 * 15_000
    const kept = retain(history, now, options)
    assert.strictEqual(kept[0]!.at, now - 300_000 + 15_000) // the 5-minute scale-down window
    assert.deepStrictEqual(decide(kept, now, options), decide(history, now, options))
    // With windows shorter than the rate period, the newest sample before the period is kept for its base.
    const short = { ...options, scaleDownStabilizationMs: 0, scaleDownPeriodMs: 20_000 }
    assert.deepStrictEqual(retain(history, now, short).map((s) => s.at), [now - 30_000, now - 15_000, now])
  })

  it("a broken replica reading counts as none, never as NaN", () => {
    const d = decide([{ at: 0, replicas: Number.NaN, processes: [proc(1600), proc(1600)] }], 0, options)
    assert.strictEqual(d.currentReplicas, 2)
    assert.strictEqual(d.desiredReplicas, 4)
  })
})

import { assert, describe, it } from "@effect/vitest"
import type { Wedding } from "../src/Calendar.ts"
import { defaults } from "../src/ScalingConfig.ts"
import { MIN_SEASON_IDLE_TIMEOUT_MS, overrides, resolve } from "../src/SeasonMode.ts"

const DAY = 86_400_000
const weddingsFrom = (from: number, count: number, everyMs = DAY / 4): ReadonlyArray<Wedding> =>
  Array.from({ length: count }, (_, i) => ({ id: `w-${i}`, start: from + i * everyMs, suppliers: 5 }))

// 7 days ahead, on at 10 weddings.
const options = defaults
const june = Date.UTC(2027, 5, 1)
const january = Date.UTC(2027, 0, 4)

describe("SeasonMode.resolve", () => {
  it("on and off are taken as set", () => {
    assert.deepStrictEqual(resolve("on", [], january, options), { active: true, reason: "SEASON_MODE=on" })
    assert.deepStrictEqual(resolve("off", weddingsFrom(june, 50), june, options), {
      active: false,
      reason: "SEASON_MODE=off"
    })
  })

  it("auto: on from the threshold of weddings in the window, off one below it", () => {
    assert.deepStrictEqual(resolve("auto", weddingsFrom(january, 10), january, options), {
      active: true,
      reason: "10 weddings in the next 7 days (threshold 10)"
    })
    assert.isFalse(resolve("auto", weddingsFrom(january, 9), january, options).active)
    // Weddings past the window or already started do not count.
    const outside = [...weddingsFrom(january - DAY, 4), ...weddingsFrom(january + 8 * DAY, 20)]
    assert.deepStrictEqual(resolve("auto", outside, january, options), {
      active: false,
      reason: "0 weddings in the next 7 days (threshold 10)"
    })
  })

  it("auto: May to September with any wedding ahead is season; the same months with none are not", () => {
    assert.deepStrictEqual(resolve("auto", weddingsFrom(june + DAY, 1), june, options), {
      active: true,
      reason: "May-September with 1 wedding(s) in the next 7 days"
    })
    assert.isFalse(resolve("auto", [], june, options).active)
    assert.isFalse(resolve("auto", weddingsFrom(Date.UTC(2027, 9, 2), 1), Date.UTC(2027, 9, 1), options).active)
  })
})

describe("SeasonMode.overrides", () => {
  const base = {
    idleTimeoutMs: 60_000,
    cacheL1MaxEntries: 100_000,
    cacheL1MaxBytes: 67_108_864,
    leadTimeMs: 1_800_000,
    warmBeforeRampMs: 900_000
  }

  it("in season: tighter idle cleanup, twice the cache, pre-scaling and warming twice as early", () => {
    assert.deepStrictEqual(overrides({ active: true, reason: "" }, base), {
      idleTimeoutMs: 45_000,
      cacheL1MaxEntries: 200_000,
      cacheL1MaxBytes: 134_217_728,
      leadTimeMs: 3_600_000,
      warmBeforeRampMs: 1_800_000
    })
    assert.deepStrictEqual(overrides({ active: false, reason: "" }, base), {})
  })

  it("never takes idle cleanup below a heartbeat's safety margin, nor above the configured value", () => {
    assert.strictEqual(
      overrides({ active: true, reason: "" }, { ...base, idleTimeoutMs: 35_000 }).idleTimeoutMs,
      MIN_SEASON_IDLE_TIMEOUT_MS
    )
    assert.strictEqual(
      overrides({ active: true, reason: "" }, { ...base, idleTimeoutMs: 20_000 }).idleTimeoutMs,
      20_000
    )
  })
})

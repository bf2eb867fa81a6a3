import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { buildSchedule, CURVE, joinsPerBucket, parseCalendar, presentAt, rateAt } from "../src/schedule.ts"

const HOUR = 3_600_000

const calendarText = JSON.stringify({
  weddings: [
    { id: "w-1", start: "2027-06-12T14:00:00Z", end: "2027-06-12T20:00:00Z", suppliers: 10, guests: 100 },
    { id: "w-2", start: "2027-06-12T16:00:00+01:00", suppliers: 5, devicesPerSupplier: 4 }
  ]
})

const weddingsOf = (text: string) => {
  const parsed = parseCalendar(text)
  if ("error" in parsed) throw new Error(parsed.error)
  return parsed.weddings
}

describe("parseCalendar", () => {
  it("reads the WEDDING_CALENDAR_FILE format, optional fields included", () => {
    const weddings = weddingsOf(calendarText)
    expect(weddings.map((w) => w.id)).toEqual(["w-1", "w-2"])
    expect(weddings[1]!.start).toBe(Date.parse("2027-06-12T15:00:00Z"))
    expect(weddings[1]!.end).toBeUndefined()
  })

  it("reads the shipped Saturday: 20 weddings, 9,900 devices", () => {
    const saturday = weddingsOf(readFileSync(new URL("../calendars/saturday.json", import.meta.url), "utf8"))
    const schedule = buildSchedule(saturday, { durationMs: 180_000, maxDevices: 10_000, baseRate: 1, rateGrowth: 10 })
    expect(saturday).toHaveLength(20)
    expect(schedule.devices).toHaveLength(9_900)
  })

  it("refuses a time without a zone, a repeated id and an end before the start, naming each", () => {
    const parsed = parseCalendar(JSON.stringify({
      weddings: [
        { id: "a", start: "2027-06-12T14:00:00", suppliers: 1 },
        { id: "b", start: "2027-06-12T14:00:00Z", end: "2027-06-12T13:00:00Z", suppliers: 1 },
        { id: "b", start: "2027-06-12T14:00:00Z", suppliers: 1 }
      ]
    }))
    expect("error" in parsed && parsed.error).toMatch(
      /weddings\[0\]\.start.*weddings\[1\]\.end.*weddings\[2\]\.id b is repeated/
    )
    expect("error" in parseCalendar("{")).toBe(true)
    expect("error" in parseCalendar(JSON.stringify({ weddings: [] }))).toBe(true)
  })
})

describe("buildSchedule", () => {
  const weddings = weddingsOf(calendarText)
  const schedule = buildSchedule(weddings, { durationMs: 180_000, maxDevices: 10_000, baseRate: 2, rateGrowth: 10 })
  const toRun = (at: number) => (at - schedule.dayStart) / schedule.compression

  it("compresses the day from the first ramp to the last decline into the run", () => {
    expect(schedule.dayStart).toBe(Date.parse("2027-06-12T14:00:00Z") - CURVE.rampMs)
    const dayEnd = Date.parse("2027-06-12T15:00:00Z") + CURVE.defaultDurationMs + CURVE.declineMs
    expect(schedule.compression).toBeCloseTo((dayEnd - schedule.dayStart) / 180_000)
    // 10 × 3 + 100 × 0.5, and 5 × 4.
    expect(schedule.weddings.map((w) => w.devices)).toEqual([80, 20])
    expect(schedule.devices).toHaveLength(100)
  })

  it("has the forecast's devices present at every time: linear ramp, plateau, linear decline", () => {
    const w1 = { rampStart: Date.parse("2027-06-12T12:00:00Z"), start: Date.parse("2027-06-12T14:00:00Z") }
    const end1 = Date.parse("2027-06-12T20:00:00Z")
    const expected = (at: number): number => {
      const one = (devices: number, rampStart: number, start: number, end: number, declineEnd: number) =>
        at <= rampStart || at >= declineEnd
          ? 0
          : at < start
          ? devices * (at - rampStart) / (start - rampStart)
          : at <= end
          ? devices
          : devices * (declineEnd - at) / (declineEnd - end)
      const s2 = Date.parse("2027-06-12T15:00:00Z")
      return one(80, w1.rampStart, w1.start, end1, end1 + HOUR) +
        one(20, s2 - CURVE.rampMs, s2, s2 + CURVE.defaultDurationMs, s2 + CURVE.defaultDurationMs + CURVE.declineMs)
    }
    for (let at = schedule.dayStart; at <= schedule.dayStart + 16 * HOUR; at += HOUR / 4) {
      // Devices are whole: at most one per wedding ahead or behind the continuous curve.
      expect(Math.abs(presentAt(schedule, toRun(at)) - expected(at))).toBeLessThanOrEqual(2)
    }
    expect(presentAt(schedule, toRun(Date.parse("2027-06-12T16:00:00Z")))).toBe(100)
  })

  it("joins per bucket follow the ramps: nobody joins after the last ramp", () => {
    const buckets = joinsPerBucket(schedule, 18)
    expect(buckets.reduce((a, b) => a + b, 0)).toBe(100)
    const lastRampEnd = toRun(Date.parse("2027-06-12T15:00:00Z"))
    const firstEmpty = Math.ceil((lastRampEnd / schedule.durationMs) * 18)
    expect(buckets.slice(firstEmpty).every((b) => b === 0)).toBe(true)
    expect(buckets[0]).toBeGreaterThan(0)
  })

  it("raises the broadcast rate linearly to 10× over the run", () => {
    expect(rateAt(schedule, 0)).toBe(2)
    expect(rateAt(schedule, 90_000)).toBeCloseTo(11)
    expect(rateAt(schedule, 180_000)).toBeCloseTo(20)
    expect(rateAt(schedule, 999_999)).toBeCloseTo(20)
  })

  it("bounds the total: a calendar above --devices is scaled down, each wedding in proportion", () => {
    const bounded = buildSchedule(weddings, { durationMs: 60_000, maxDevices: 50, baseRate: 1, rateGrowth: 10 })
    expect(bounded.devices.length).toBeLessThanOrEqual(50)
    expect(bounded.weddings.map((w) => w.devices)).toEqual([40, 10])
    expect(bounded.forecastDevices).toBe(100)
    expect(bounded.devices.every((d) => d.joinAtMs >= 0 && d.leaveAtMs <= 60_000 + 1e-6)).toBe(true)
  })
})

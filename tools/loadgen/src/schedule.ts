/**
 * The compressed day: a wedding calendar (the `WEDDING_CALENDAR_FILE` format) turned into when each device joins and
 * leaves and how fast each wedding broadcasts, with the whole day squeezed into the run's minutes. The arrival curve
 * is the calendar forecast's shape (devices arrive linearly over a ramp before the start, stay until the end, leave
 * linearly over a decline); it is restated here because `tools` may import only `@wedsync/protocol`.
 */

export interface CalendarWedding {
  readonly id: string
  readonly start: number
  readonly end: number | undefined
  readonly suppliers: number
  readonly devicesPerSupplier: number | undefined
  readonly guests: number | undefined
}

/** The forecast's defaults (packages/scaling ScalingConfig): 2 h ramp, 1 h decline, 8 h wedding, 3 devices each. */
export const CURVE = {
  rampMs: 7_200_000,
  declineMs: 3_600_000,
  defaultDurationMs: 28_800_000,
  devicesPerSupplier: 3,
  devicesPerGuest: 0.5
} as const

const MAX_WEDDINGS = 10_000
const MAX_ID_LENGTH = 100
const ZONED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const count = (value: unknown, max: number): number | undefined =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max ? value : undefined

const instant = (value: unknown): number | undefined =>
  typeof value === "string" && ZONED.test(value) && Number.isFinite(Date.parse(value)) ? Date.parse(value) : undefined

/** The weddings of a calendar file's text, or every problem found in it. */
export const parseCalendar = (
  text: string
): { readonly weddings: ReadonlyArray<CalendarWedding> } | { readonly error: string } => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    return { error: `not JSON: ${error instanceof Error ? error.message : String(error)}` }
  }
  if (!isRecord(parsed) || !Array.isArray(parsed["weddings"])) return { error: `expected {"weddings":[…]}` }
  const entries: ReadonlyArray<unknown> = parsed["weddings"]
  if (entries.length === 0 || entries.length > MAX_WEDDINGS) {
    return { error: `expected 1 to ${MAX_WEDDINGS} weddings, got ${entries.length}` }
  }
  const problems: Array<string> = []
  const weddings: Array<CalendarWedding> = []
  const seen = new Set<string>()
  entries.forEach((entry, index) => {
    const at = `weddings[${index}]`
    if (!isRecord(entry)) return problems.push(`${at} is not an object`)
    const id = entry["id"]
    const start = instant(entry["start"])
    const end = entry["end"] === undefined ? undefined : instant(entry["end"])
    const suppliers = count(entry["suppliers"], 10_000)
    const perSupplier = entry["devicesPerSupplier"] === undefined ? undefined : count(entry["devicesPerSupplier"], 100)
    const guests = entry["guests"] === undefined ? undefined : count(entry["guests"], 100_000)
    if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID_LENGTH || !/^[\w.-]+$/.test(id)) {
      return problems.push(`${at}.id must be 1-${MAX_ID_LENGTH} letters, digits, '_', '.' or '-'`)
    }
    if (seen.has(id)) return problems.push(`${at}.id ${id} is repeated`)
    seen.add(id)
    if (start === undefined) return problems.push(`${at}.start must be ISO 8601 with a zone`)
    if (entry["end"] !== undefined && (end === undefined || end <= start)) {
      return problems.push(`${at}.end must be ISO 8601 with a zone, after start`)
    }
    if (suppliers === undefined) return problems.push(`${at}.suppliers must be an integer 0-10000`)
    if (entry["devicesPerSupplier"] !== undefined && perSupplier === undefined) {
      return problems.push(`${at}.devicesPerSupplier must be an integer 0-100`)
    }
    if (entry["guests"] !== undefined && guests === undefined) return problems.push(`${at}.guests must be 0-100000`)
    weddings.push({ id, start, end, suppliers, devicesPerSupplier: perSupplier, guests })
  })
  return problems.length > 0 ? { error: problems.join("; ") } : { weddings }
}

export const devicesOf = (wedding: CalendarWedding): number =>
  wedding.suppliers * (wedding.devicesPerSupplier ?? CURVE.devicesPerSupplier) +
  Math.ceil((wedding.guests ?? 0) * CURVE.devicesPerGuest)

/** One device of the run: run-relative times in ms. */
export interface DevicePlan {
  readonly wedding: number
  readonly supplier: number
  readonly joinAtMs: number
  readonly leaveAtMs: number
}

export interface WeddingPlan {
  readonly id: string
  /** Run-relative ms during which the wedding has devices and broadcasts. */
  readonly activeFromMs: number
  readonly activeUntilMs: number
  readonly devices: number
}

export interface DaySchedule {
  readonly durationMs: number
  /** Real ms of the day that one run ms stands for. */
  readonly compression: number
  readonly dayStart: number
  readonly weddings: ReadonlyArray<WeddingPlan>
  /** Sorted by `joinAtMs`. */
  readonly devices: ReadonlyArray<DevicePlan>
  /** The forecast's devices, before `maxDevices` scaled them down. */
  readonly forecastDevices: number
  /** Broadcasts per second per wedding at the run's start; the rate rises linearly to `rateGrowth` times it. */
  readonly baseRate: number
  readonly rateGrowth: number
}

export interface ScheduleOptions {
  readonly durationMs: number
  /** Upper bound of devices in the whole run; the calendar's devices are scaled down proportionally to fit. */
  readonly maxDevices: number
  readonly baseRate: number
  readonly rateGrowth: number
}

/**
 * Places every device on the compressed day: the day runs from the first ramp to the last decline. A ramp's devices
 * are spread evenly over it (linear arrival), a decline's evenly over it (linear departure), so the devices present at
 * any time follow the forecast's curve.
 */
export const buildSchedule = (weddings: ReadonlyArray<CalendarWedding>, options: ScheduleOptions): DaySchedule => {
  const phases = weddings.map((w) => {
    const end = w.end ?? w.start + CURVE.defaultDurationMs
    return { id: w.id, rampStart: w.start - CURVE.rampMs, start: w.start, end, declineEnd: end + CURVE.declineMs }
  })
  const dayStart = Math.min(...phases.map((p) => p.rampStart))
  const dayEnd = Math.max(...phases.map((p) => p.declineEnd))
  const compression = (dayEnd - dayStart) / options.durationMs
  const toRun = (at: number) => (at - dayStart) / compression
  const forecastDevices = weddings.reduce((sum, w) => sum + devicesOf(w), 0)
  const scale = forecastDevices > options.maxDevices ? options.maxDevices / forecastDevices : 1
  const devices: Array<DevicePlan> = []
  const plans: Array<WeddingPlan> = []
  weddings.forEach((wedding, index) => {
    const p = phases[index]!
    const n = Math.floor(devicesOf(wedding) * scale)
    const perSupplier = wedding.devicesPerSupplier ?? CURVE.devicesPerSupplier
    plans.push({ id: wedding.id, activeFromMs: toRun(p.rampStart), activeUntilMs: toRun(p.declineEnd), devices: n })
    for (let d = 0; d < n; d++) {
      const share = (d + 0.5) / n
      devices.push({
        wedding: index,
        // Devices past the suppliers' (guests') are grouped in supplier-sized users too: one token per group.
        supplier: Math.floor(d / Math.max(1, perSupplier)),
        joinAtMs: toRun(p.rampStart + share * (p.start - p.rampStart)),
        leaveAtMs: toRun(p.end + share * (p.declineEnd - p.end))
      })
    }
  })
  devices.sort((a, b) => a.joinAtMs - b.joinAtMs)
  return {
    durationMs: options.durationMs,
    compression,
    dayStart,
    weddings: plans,
    devices,
    forecastDevices,
    baseRate: options.baseRate,
    rateGrowth: options.rateGrowth
  }
}

/** Broadcasts per second of one active wedding at run time `atMs`: `baseRate` rising linearly to `rateGrowth`×. */
export const rateAt = (schedule: DaySchedule, atMs: number): number =>
  schedule.baseRate * (1 + (schedule.rateGrowth - 1) * Math.min(1, Math.max(0, atMs / schedule.durationMs)))

/** Devices present at run time `atMs` (joined and not yet left). */
export const presentAt = (schedule: DaySchedule, atMs: number): number =>
  schedule.devices.reduce((n, d) => (d.joinAtMs <= atMs && atMs < d.leaveAtMs ? n + 1 : n), 0)

/** Joins per run minute, bucketed; for the curve's shape in tests and the report. */
export const joinsPerBucket = (schedule: DaySchedule, buckets: number): ReadonlyArray<number> => {
  const out = Array.from({ length: buckets }, () => 0)
  for (const d of schedule.devices) {
    const b = Math.min(buckets - 1, Math.floor((d.joinAtMs / schedule.durationMs) * buckets))
    out[b]!++
  }
  return out
}

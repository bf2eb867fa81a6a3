/**
 * The wedding calendar file (`WEDDING_CALENDAR_FILE`): JSON of the form
 *
 * ```json
 * { "weddings": [{ "id": "w-1", "start": "2027-06-12T14:00:00+01:00", "end": "2027-06-12T23:00:00+01:00",
 *                  "suppliers": 12, "devicesPerSupplier": 4, "guests": 150 }] }
 * ```
 *
 * `end`, `devicesPerSupplier` and `guests` are optional. Times are ISO 8601 with a zone (`Z` or an offset): a time
 * without one would mean whatever zone the server runs in. The file is written by operators, so it is decoded
 * totally: every problem is reported at once, with where it is, and nothing partial is used.
 */
import { Effect, Result, Schema } from "effect"

/** Bounds that keep a mistyped file from turning into an absurd forecast or an unbounded allocation. */
export const MAX_WEDDINGS = 100_000
/** Far above 100,000 weddings of about 150 bytes each; a larger file is refused before it is parsed. */
export const MAX_CALENDAR_CHARS = 32 * 1024 * 1024
const MAX_ID_LENGTH = 200
const MAX_SUPPLIERS = 10_000
const MAX_DEVICES_PER_SUPPLIER = 10_000
const MAX_GUESTS = 100_000
/** A wedding that lasts longer than this is a typo. */
const MAX_DURATION_MS = 72 * 3_600_000

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/
const PARTS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|([+-])(\d{2}):(\d{2}))$/

/**
 * Epoch milliseconds of an ISO date-time, or undefined for one that names no real instant (`2027-02-30`, `25:00`):
 * `Date.parse` rolls those over into the next month instead of refusing them.
 */
export const toEpochMillis = (text: string): number | undefined => {
  const m = PARTS.exec(text)
  if (m === null) return undefined
  const part = (i: number) => Number(m[i] ?? 0)
  const [year, month, day, hour, minute, second] = [part(1), part(2), part(3), part(4), part(5), part(6)]
  const local = Date.UTC(year, month - 1, day, hour, minute, second)
  const check = new Date(local)
  if (
    check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day ||
    check.getUTCHours() !== hour || check.getUTCMinutes() !== minute || check.getUTCSeconds() !== second
  ) return undefined
  const offsetHours = Number(m[10] ?? 0)
  const offsetMinutes = Number(m[11] ?? 0)
  if (offsetHours > 23 || offsetMinutes > 59) return undefined
  const offset = (m[9] === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000)
  return local + fraction - offset
}

const DateTime = Schema.String.pipe(
  Schema.check(Schema.isPattern(ISO_DATE_TIME, {
    message: "Expected an ISO 8601 date-time with a zone, such as 2027-06-12T14:00:00Z or 2027-06-12T14:00:00+01:00"
  }))
)
const count = (maximum: number) => Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum })))

export const WeddingEntry = Schema.Struct({
  id: Schema.String.pipe(Schema.check(Schema.isMinLength(1), Schema.isMaxLength(MAX_ID_LENGTH))),
  start: DateTime,
  end: Schema.optionalKey(DateTime),
  suppliers: count(MAX_SUPPLIERS),
  devicesPerSupplier: Schema.optionalKey(count(MAX_DEVICES_PER_SUPPLIER)),
  guests: Schema.optionalKey(count(MAX_GUESTS))
})

export const CalendarFile = Schema.Struct({
  weddings: Schema.Array(WeddingEntry).pipe(Schema.check(Schema.isMaxLength(MAX_WEDDINGS)))
})

/** One wedding, with times in epoch milliseconds. */
export interface Wedding {
  readonly id: string
  readonly start: number
  readonly end?: number | undefined
  readonly suppliers: number
  readonly devicesPerSupplier?: number | undefined
  readonly guests?: number | undefined
}

export class CalendarError extends Schema.TaggedError<CalendarError>()("CalendarError", {
  message: Schema.String
}) {}

const decodeText = Schema.decodeUnknownResult(Schema.fromJsonString(CalendarFile))

/**
 * The weddings of a calendar file's text, or a `CalendarError` listing every problem (JSON syntax, a missing or
 * mistyped field, an unknown field, a time without a zone, an end before its start, a repeated id). `source` names the
 * file in the message.
 */
export const parse = (
  text: string,
  source = "WEDDING_CALENDAR_FILE"
): Effect.Effect<ReadonlyArray<Wedding>, CalendarError> =>
  Effect.suspend(() => {
    const fail = (detail: string) =>
      Effect.fail(new CalendarError({ message: `${source} is not a valid wedding calendar: ${detail}` }))
    if (text.length > MAX_CALENDAR_CHARS) return fail(`${text.length} characters, more than ${MAX_CALENDAR_CHARS}`)
    const decoded = decodeText(text, { errors: "all", onExcessProperty: "error" })
    if (Result.isFailure(decoded)) return fail(decoded.failure.message)
    const problems: Array<string> = []
    const seen = new Set<string>()
    const weddings: Array<Wedding> = []
    decoded.success.weddings.forEach((entry, index) => {
      const at = `at ["weddings"][${index}]`
      const start = toEpochMillis(entry.start)
      const end = entry.end === undefined ? undefined : toEpochMillis(entry.end)
      if (start === undefined) problems.push(`"start" is not a real date-time (${entry.start})\n  ${at}`)
      if (entry.end !== undefined && end === undefined) {
        problems.push(`"end" is not a real date-time (${entry.end})\n  ${at}`)
      }
      if (start !== undefined && end !== undefined) {
        if (end <= start) problems.push(`"end" must be after "start"\n  ${at}`)
        else if (end - start > MAX_DURATION_MS) problems.push(`a wedding may last at most 72 hours\n  ${at}`)
      }
      if (seen.has(entry.id)) problems.push(`the id ${JSON.stringify(entry.id)} appears more than once\n  ${at}`)
      seen.add(entry.id)
      if (start === undefined) return
      weddings.push({
        id: entry.id,
        start,
        end,
        suppliers: entry.suppliers,
        devicesPerSupplier: entry.devicesPerSupplier,
        guests: entry.guests
      })
    })
    return problems.length > 0 ? fail(problems.join("\n")) : Effect.succeed(weddings)
  })

/** One row of `WEDDING_CALENDAR_SQL`, as the driver hands it over: nothing in it is trusted. */
export type CalendarRow = Readonly<Record<string, unknown>>

/** What a calendar query's rows make: the weddings, and why the rows that made none were skipped. */
export interface RowsResult {
  readonly weddings: ReadonlyArray<Wedding>
  /** Rows skipped, with the first reasons (at most `MAX_REPORTED_PROBLEMS`). */
  readonly skipped: number
  readonly problems: ReadonlyArray<string>
}

const MAX_REPORTED_PROBLEMS = 5

/** A `timestamptz` (a `Date` from pg) or an ISO text with a zone, in epoch ms; undefined for anything else. */
const instantOf = (value: unknown): number | undefined => {
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.getTime() : undefined
  return typeof value === "string" ? toEpochMillis(value) : undefined
}

const countOf = (value: unknown, maximum: number): number | undefined => {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value
  return typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= maximum ? n : undefined
}

/**
 * The weddings of `WEDDING_CALENDAR_SQL`'s rows, the query the cache warmer already runs: `wedding_id` and
 * `starts_at` (timestamptz) are required, `ends_at`, `supplier_ids` (an array), `expected_devices` and `guests` are
 * optional. A wedding's devices are `expected_devices` when given (spread over its suppliers, at least one), else its
 * suppliers (or one) times the configured devices per supplier. Rows come from an operator's query over data users
 * write, so each is checked; a bad row is skipped and reported, never fatal, and the rest are used.
 */
export const fromRows = (rows: ReadonlyArray<CalendarRow>): RowsResult => {
  const weddings: Array<Wedding> = []
  const seen = new Set<string>()
  const problems: Array<string> = []
  let skipped = 0
  const skip = (index: number, why: string) => {
    skipped++
    if (problems.length < MAX_REPORTED_PROBLEMS) problems.push(`row ${index + 1}: ${why}`)
  }
  rows.forEach((row, index) => {
    if (weddings.length >= MAX_WEDDINGS) return skip(index, `more than ${MAX_WEDDINGS} weddings`)
    const rawId = row["wedding_id"]
    const id = typeof rawId === "string" || typeof rawId === "number" || typeof rawId === "bigint"
      ? String(rawId)
      : undefined
    if (id === undefined || id.length === 0 || id.length > MAX_ID_LENGTH) {
      return skip(index, "wedding_id is missing or not a text or number of at most 200 characters")
    }
    if (seen.has(id)) return skip(index, `wedding_id ${JSON.stringify(id)} appears more than once`)
    const start = instantOf(row["starts_at"])
    if (start === undefined) return skip(index, "starts_at is missing or not a timestamptz")
    const hasEnd = row["ends_at"] !== undefined && row["ends_at"] !== null
    const end = hasEnd ? instantOf(row["ends_at"]) : undefined
    if (hasEnd && end === undefined) return skip(index, "ends_at is not a timestamptz")
    if (end !== undefined && (end <= start || end - start > MAX_DURATION_MS)) {
      return skip(index, "ends_at must be after starts_at and at most 72 hours later")
    }
    const supplierIds = row["supplier_ids"]
    const listed = Array.isArray(supplierIds) ? supplierIds.length : undefined
    if (listed !== undefined && listed > MAX_SUPPLIERS) return skip(index, `more than ${MAX_SUPPLIERS} supplier_ids`)
    const suppliers = Math.max(1, listed ?? 1)
    const expected = row["expected_devices"] === undefined || row["expected_devices"] === null
      ? undefined
      : countOf(row["expected_devices"], MAX_SUPPLIERS * MAX_DEVICES_PER_SUPPLIER)
    if (expected === undefined && row["expected_devices"] !== undefined && row["expected_devices"] !== null) {
      return skip(index, "expected_devices is not a whole number of at least 0")
    }
    const guests = row["guests"] === undefined || row["guests"] === null
      ? undefined
      : countOf(row["guests"], MAX_GUESTS)
    seen.add(id)
    weddings.push({
      id,
      start,
      end,
      suppliers,
      devicesPerSupplier: expected === undefined ? undefined : expected / suppliers,
      guests
    })
  })
  return { weddings, skipped, problems }
}

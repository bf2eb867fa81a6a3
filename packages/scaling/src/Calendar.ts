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

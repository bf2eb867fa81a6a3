import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { CalendarError, fromRows, MAX_CALENDAR_CHARS, parse, toEpochMillis } from "../src/Calendar.ts"

const file = (weddings: ReadonlyArray<unknown>) => JSON.stringify({ weddings })
const good = { id: "w-1", start: "2027-06-12T14:00:00+01:00", suppliers: 12 }

describe("Calendar.parse", () => {
  it.effect("reads weddings with and without the optional fields, times with their zone", () =>
    Effect.gen(function*() {
      const weddings = yield* parse(file([
        good,
        {
          id: "w-2",
          start: "2027-06-12T15:30:00Z",
          end: "2027-06-12T23:00:00Z",
          suppliers: 3,
          devicesPerSupplier: 5,
          guests: 140
        }
      ]))
      assert.deepStrictEqual(weddings, [
        {
          id: "w-1",
          start: Date.UTC(2027, 5, 12, 13),
          end: undefined,
          suppliers: 12,
          devicesPerSupplier: undefined,
          guests: undefined
        },
        {
          id: "w-2",
          start: Date.UTC(2027, 5, 12, 15, 30),
          end: Date.UTC(2027, 5, 12, 23),
          suppliers: 3,
          devicesPerSupplier: 5,
          guests: 140
        }
      ])
      assert.deepStrictEqual(yield* parse(file([])), [])
    }))

  it.effect("refuses text that is not JSON, naming the file", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("{ weddings: [", "/etc/calendar.json"))
      assert.instanceOf(error, CalendarError)
      assert.match(
        error.message,
        /^\/etc\/calendar\.json is not a valid wedding calendar: Expected a valid JSON string/
      )
    }))

  it.effect("lists every field problem at once, with where it is", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse(file([
        { id: "", start: "2027-06-12 14:00", suppliers: -1 },
        { ...good, guests: 1.5, colour: "blue" }
      ])))
      for (
        const expected of [
          /Expected a value with a length of at least 1\n  at \["weddings"\]\[0\]\["id"\]/,
          /Expected an ISO 8601 date-time with a zone.*\n  at \["weddings"\]\[0\]\["start"\]/,
          /Expected a value between 0 and 10000\n  at \["weddings"\]\[0\]\["suppliers"\]/,
          /Expected an integer\n  at \["weddings"\]\[1\]\["guests"\]/,
          /Expected no excess property\n  at \["weddings"\]\[1\]\["colour"\]/
        ]
      ) assert.match(error.message, expected)
      const missing = yield* Effect.flip(parse(file([{ id: "w-1", start: good.start }])))
      assert.match(missing.message, /Missing key\n  at \["weddings"\]\[0\]\["suppliers"\]/)
    }))

  it.effect("refuses an end not after its start, an impossible date, a 3-day wedding and a repeated id", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse(file([
        { ...good, end: "2027-06-12T13:00:00+01:00" },
        { ...good, id: "w-2", start: "2027-02-30T14:00:00Z" },
        { ...good, id: "w-3", end: "2027-06-16T14:00:00+01:00" },
        { ...good, id: "w-3" }
      ])))
      assert.match(error.message, /"end" must be after "start"\n  at \["weddings"\]\[0\]/)
      assert.match(error.message, /"start" is not a real date-time \(2027-02-30T14:00:00Z\)\n  at \["weddings"\]\[1\]/)
      assert.match(error.message, /a wedding may last at most 72 hours\n  at \["weddings"\]\[2\]/)
      assert.match(error.message, /the id "w-3" appears more than once\n  at \["weddings"\]\[3\]/)
      // The same wedding with a real end is accepted.
      assert.lengthOf(yield* parse(file([{ ...good, end: "2027-06-12T23:00:00+01:00" }])), 1)
    }))
})

describe("Calendar.toEpochMillis", () => {
  it("reads fractions and offsets on both sides of UTC; refuses instants that do not exist", () => {
    assert.strictEqual(toEpochMillis("2027-06-12T14:00:00.250-05:30"), Date.UTC(2027, 5, 12, 19, 30, 0, 250))
    assert.strictEqual(toEpochMillis("2027-06-12T14:00+02:00"), Date.UTC(2027, 5, 12, 12))
    assert.strictEqual(toEpochMillis("2028-02-29T00:00:00Z"), Date.UTC(2028, 1, 29))
    for (
      const bad of ["2027-02-29T00:00:00Z", "2027-06-12T24:00:00Z", "2027-06-12T14:00:00+24:00", "2027-06-12T14:00:00"]
    ) {
      assert.isUndefined(toEpochMillis(bad), bad)
    }
  })

  it.effect("a file larger than MAX_CALENDAR_CHARS is refused before it is parsed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse(" ".repeat(MAX_CALENDAR_CHARS + 1)))
      assert.match(error.message, /more than 33554432$/)
    }))
})

describe("Calendar.fromRows (WEDDING_CALENDAR_SQL)", () => {
  const start = new Date(Date.UTC(2027, 5, 12, 14))
  it("turns rows into weddings: expected devices spread over the suppliers, defaults where columns are absent", () => {
    const result = fromRows([
      { wedding_id: "w-1", starts_at: start, supplier_ids: ["s-1", "s-2"], expected_devices: 30 },
      { wedding_id: 42, starts_at: "2027-06-12T15:00:00Z", ends_at: new Date(Date.UTC(2027, 5, 12, 23)), guests: 120 }
    ])
    assert.deepStrictEqual(result, {
      weddings: [
        { id: "w-1", start: start.getTime(), end: undefined, suppliers: 2, devicesPerSupplier: 15, guests: undefined },
        {
          id: "42",
          start: Date.UTC(2027, 5, 12, 15),
          end: Date.UTC(2027, 5, 12, 23),
          suppliers: 1,
          devicesPerSupplier: undefined,
          guests: 120
        }
      ],
      skipped: 0,
      problems: []
    })
  })

  it("skips and reports each hostile or broken row, and keeps the good ones beside them", () => {
    const result = fromRows([
      { wedding_id: "ok", starts_at: start },
      { wedding_id: { toString: "x" }, starts_at: start },
      { wedding_id: "no-start" },
      { wedding_id: "ok", starts_at: start },
      { wedding_id: "bad-end", starts_at: start, ends_at: "tomorrow" },
      { wedding_id: "backwards", starts_at: start, ends_at: new Date(start.getTime() - 1) },
      { wedding_id: "negative", starts_at: start, expected_devices: -3 },
      { wedding_id: "x".repeat(201), starts_at: start }
    ])
    assert.deepStrictEqual(result.weddings.map((w) => w.id), ["ok"])
    assert.strictEqual(result.skipped, 7)
    assert.deepStrictEqual(result.problems, [
      "row 2: wedding_id is missing or not a text or number of at most 200 characters",
      "row 3: starts_at is missing or not a timestamptz",
      'row 4: wedding_id "ok" appears more than once',
      "row 5: ends_at is not a timestamptz",
      "row 6: ends_at must be after starts_at and at most 72 hours later"
    ])
  })
})

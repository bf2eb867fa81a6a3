import fc from "fast-check"
import { Result } from "effect"
import { assert, describe, it } from "@effect/vitest"
import type { Column } from "../src/ChangeEvent.ts"
import * as ChangeFilter from "../src/ChangeFilter.ts"

const columns: ReadonlyArray<Column> = [
  { name: "id", type: "int8" },
  { name: "position", type: "int4" },
  { name: "price", type: "numeric" },
  { name: "title", type: "text" },
  { name: "done", type: "bool" },
  { name: "ref", type: "uuid" },
  { name: "due", type: "timestamptz" },
  { name: "tags", type: "_text" }
]

const compile = (filter: string) => {
  const parsed = ChangeFilter.parse(filter)
  if (Result.isFailure(parsed)) throw new Error(parsed.failure.message)
  const typed = ChangeFilter.validate(parsed.success, columns)
  if (Result.isFailure(typed)) throw new Error(typed.failure.message)
  return typed.success
}

const refusal = (filter: string): string => {
  const parsed = ChangeFilter.parse(filter)
  if (Result.isFailure(parsed)) return parsed.failure.message
  const typed = ChangeFilter.validate(parsed.success, columns)
  return Result.isFailure(typed) ? typed.failure.message : "accepted"
}

const row = {
  id: "9007199254740993",
  position: 5,
  price: "10.50",
  title: "First, dance",
  done: true,
  ref: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
  due: "2026-06-13 14:00:00+02",
  tags: ["a"]
}

describe("ChangeFilter", () => {
  it.each([
    ["position=eq.5", "position=eq.6"],
    ["position=neq.6", "position=neq.5"],
    ["position=lt.6", "position=lt.5"],
    ["position=lte.5", "position=lte.4"],
    ["position=gt.4", "position=gt.5"],
    ["position=gte.5", "position=gte.6"],
    ["position=in.(1,5,9)", "position=in.(1,9)"],
    ['title=eq."First, dance"', "title=eq.First"],
    ['title=in.(Cake,"First, dance")', "title=in.(Cake)"],
    ["title=like.First%", "title=like.first%"],
    ["title=ilike.first%", "title=ilike.%cake%"],
    ["done=is.true", "done=is.false"],
    ["position=not.eq.6", "position=not.eq.5"],
    ["position=not.in.(1,2)", "position=not.in.(5)"],
    ["id=eq.9007199254740993", "id=eq.9007199254740992"],
    ["price=eq.10.5", "price=eq.10.51"],
    ["price=gt.10.49", "price=gt.10.5"],
    ["ref=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ref=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"],
    ["due=eq.2026-06-13T12:00:00Z", "due=eq.2026-06-13T14:00:00Z"],
    ["due=gt.2026-06-13 11:59:59+00", "due=gt.2026-06-13 12:00:00+00"],
    ["position=gt.0,position=lt.10", "position=gt.0,position=lt.5"],
    ["position=isdistinct.4", "position=isdistinct.5"]
  ])("%s matches and %s does not", (yes, no) => {
    assert.strictEqual(ChangeFilter.matches(compile(yes), row), true)
    assert.strictEqual(ChangeFilter.matches(compile(no), row), false)
  })

  it("follows SQL for NULL: comparisons are unknown and never match, negated or not; is null matches", () => {
    const nullRow = { ...row, position: null }
    for (const f of ["position=eq.5", "position=neq.5", "position=not.eq.5", "position=lt.100", "position=in.(5)"]) {
      assert.strictEqual(ChangeFilter.matches(compile(f), nullRow), false, f)
    }
    assert.strictEqual(ChangeFilter.matches(compile("position=is.null"), nullRow), true)
    assert.strictEqual(ChangeFilter.matches(compile("position=not.is.null"), nullRow), false)
    assert.strictEqual(ChangeFilter.matches(compile("position=isdistinct.5"), nullRow), true)
    assert.strictEqual(ChangeFilter.matches(compile("position=not.is.null"), row), true)
  })

  it("never matches a row without the column (a DELETE's primary-key-only old image) or no row", () => {
    assert.strictEqual(ChangeFilter.matches(compile("title=eq.x"), { id: 1 }), false)
    assert.strictEqual(ChangeFilter.matches(compile("title=not.eq.x"), { id: 1 }), false)
    assert.strictEqual(ChangeFilter.matches(compile("title=eq.x"), undefined), false)
  })

  it("refuses malformed filters with Supabase's messages", () => {
    assert.strictEqual(refusal("position=in.1,2"), "`in` filter value must be wrapped by parentheses")
    assert.strictEqual(
      refusal("position=eq.1,,title=eq.x"),
      "filter must not contain empty segments (check for extra commas)"
    )
    assert.strictEqual(refusal("foo"), 'Error parsing `filter` params: ["foo"]')
    assert.include(refusal("position=between.1"), "Error parsing `filter` params")
    assert.strictEqual(
      refusal(`position=in.(${Array.from({ length: 101 }, (_, i) => i).join(",")})`),
      "too many values for `in` filter. Maximum 100"
    )
    assert.strictEqual(refusal(`position=in.(${Array.from({ length: 100 }, (_, i) => i).join(",")})`), "accepted")
  })

  it("refuses what it cannot evaluate exactly, next to the accepted form", () => {
    assert.strictEqual(refusal("nope=eq.1"), "invalid column for filter nope")
    assert.strictEqual(refusal("position=eq.abc"), 'invalid input value "abc" for int4 column position')
    assert.include(refusal("title=match.^F"), "not supported")
    assert.include(refusal("title=gt.M"), "not supported")
    assert.strictEqual(refusal("title=eq.M"), "accepted")
    assert.strictEqual(refusal("done=is.unknown"), "accepted")
    assert.include(refusal("position=is.true"), "boolean column")
    assert.include(refusal("position=like.1%"), "text column")
    assert.include(refusal("tags=eq.a"), "not supported")
  })

  it("types columns by a Map: a column of a type named after an Object.prototype member is refused, not mistyped", () => {
    const parsed = ChangeFilter.parse("odd=eq.1")
    if (Result.isFailure(parsed)) throw new Error("parse failed")
    for (const type of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const typed = ChangeFilter.validate(parsed.success, [{ name: "odd", type }])
      assert.strictEqual(
        Result.isFailure(typed) && typed.failure.message,
        `filters on ${type} columns are not supported by this gateway (column odd)`
      )
    }
    assert.strictEqual(Result.isSuccess(ChangeFilter.validate(parsed.success, [{ name: "odd", type: "int4" }])), true)
    // A column named __proto__ is filtered like any other.
    const proto = ChangeFilter.parse("__proto__=eq.x")
    if (Result.isFailure(proto)) throw new Error("parse failed")
    const typed = ChangeFilter.validate(proto.success, [{ name: "__proto__", type: "text" }])
    if (Result.isFailure(typed)) throw new Error(typed.failure.message)
    const row: Record<string, unknown> = Object.create(null)
    row["__proto__"] = "x"
    assert.strictEqual(ChangeFilter.matches(typed.success, row), true)
    row["__proto__"] = "y"
    assert.strictEqual(ChangeFilter.matches(typed.success, row), false)
  })

  it("parse is total: any string gives a filter or a FilterError", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (text) => {
        const parsed = ChangeFilter.parse(text)
        assert.strictEqual(Result.isSuccess(parsed) || parsed.failure instanceof ChangeFilter.FilterError, true)
      }),
      { numRuns: 2000 }
    )
  })

  it("agrees with a reference for integer comparisons on random rows", () => {
    const ops = ["eq", "neq", "lt", "lte", "gt", "gte"] as const
    const reference = (op: (typeof ops)[number], a: number, b: number) =>
      ({ eq: a === b, neq: a !== b, lt: a < b, lte: a <= b, gt: a > b, gte: a >= b })[op]
    fc.assert(
      fc.property(
        fc.constantFrom(...ops),
        fc.integer({ min: -50, max: 50 }),
        fc.integer({ min: -50, max: 50 }),
        (op, literal, value) => {
          assert.strictEqual(
            ChangeFilter.matches(compile(`position=${op}.${literal}`), { position: value }),
            reference(op, value, literal)
          )
        }
      ),
      { numRuns: 1000 }
    )
  })
})

import { assert, describe, it } from "@effect/vitest"
import * as PgValue from "../src/PgValue.ts"

const text = PgValue.keepText
const int4 = PgValue.scalars.get("int4")!

/** A registry with the built-in types these tests use, OIDs as in pg_type. */
const builtins = () => {
  const types = new PgValue.Types()
  const base = (name: string, category: string) => ({ name, category, elem: 0, base: 0, delimiter: "," })
  types.add(16, base("bool", "B"))
  types.add(20, base("int8", "N"))
  types.add(21, base("int2", "N"))
  types.add(23, base("int4", "N"))
  types.add(25, base("text", "S"))
  types.add(114, base("json", "U"))
  types.add(701, base("float8", "N"))
  types.add(1700, base("numeric", "N"))
  types.add(1184, base("timestamptz", "D"))
  types.add(3802, base("jsonb", "U"))
  types.add(603, { name: "box", category: "G", elem: 600, base: 0, delimiter: ";" })
  types.add(600, base("point", "G"))
  types.add(1007, { name: "_int4", category: "A", elem: 23, base: 0, delimiter: "," })
  types.add(1009, { name: "_text", category: "A", elem: 25, base: 0, delimiter: "," })
  types.add(1020, { name: "_box", category: "A", elem: 603, base: 0, delimiter: "," })
  types.add(22, { name: "int2vector", category: "A", elem: 21, base: 0, delimiter: "," })
  // A domain over int4, and an array of that domain.
  types.add(90001, { name: "guest_count", category: "N", elem: 0, base: 23, delimiter: "," })
  types.add(90002, { name: "_guest_count", category: "A", elem: 90001, base: 0, delimiter: "," })
  return types
}

describe("PgValue.scalars", () => {
  it("types numbers like Supabase's jsonb cast, keeping what JSON cannot hold exactly as text", () => {
    const convert = (name: string, value: string) => PgValue.scalars.get(name)!(value)
    assert.strictEqual(convert("int4", "120"), 120)
    assert.strictEqual(convert("int8", "9007199254740991"), 9007199254740991)
    assert.strictEqual(convert("int8", "9007199254740993"), "9007199254740993")
    assert.strictEqual(convert("numeric", "1234.50"), 1234.5)
    assert.strictEqual(convert("numeric", "123456789012345678901234.5"), "123456789012345678901234.5")
    assert.strictEqual(convert("numeric", "NaN"), "NaN")
    assert.strictEqual(convert("float8", "1.5e-7"), 1.5e-7)
    assert.strictEqual(convert("float8", "Infinity"), "Infinity")
    assert.strictEqual(convert("float4", "NaN"), "NaN")
    assert.strictEqual(convert("bool", "t"), true)
    assert.strictEqual(convert("bool", "f"), false)
    assert.deepStrictEqual(convert("jsonb", '{"a": [1, null]}'), { a: [1, null] })
  })

  it("knows no type named like an Object.prototype member", () => {
    assert.isUndefined(PgValue.scalars.get("constructor"))
    assert.isUndefined(PgValue.scalars.get("__proto__"))
  })
})

describe("PgValue.parseArray", () => {
  it("parses flat and empty arrays with the element rule", () => {
    assert.deepStrictEqual(PgValue.parseArray("{1,2,3}", ",", int4), [1, 2, 3])
    assert.deepStrictEqual(PgValue.parseArray("{}", ",", int4), [])
    assert.deepStrictEqual(PgValue.parseArray("{x}", ",", text), ["x"])
  })

  it("parses nested arrays, empty and multi-level", () => {
    assert.deepStrictEqual(PgValue.parseArray("{{1,2},{3,4}}", ",", int4), [[1, 2], [3, 4]])
    assert.deepStrictEqual(PgValue.parseArray("{{{1},{2}},{{3},{4}}}", ",", int4), [[[1], [2]], [[3], [4]]])
    assert.deepStrictEqual(PgValue.parseArray('{{a,"b c"},{NULL,d}}', ",", text), [["a", "b c"], [null, "d"]])
  })

  it('reads unquoted NULL (any case) as null and quoted "NULL" as the string', () => {
    assert.deepStrictEqual(PgValue.parseArray("{1,NULL,3}", ",", int4), [1, null, 3])
    assert.deepStrictEqual(PgValue.parseArray('{null,NULL,"NULL"}', ",", text), [null, null, "NULL"])
    assert.deepStrictEqual(PgValue.parseArray("{{3,NULL}}", ",", int4), [[3, null]])
  })

  it("unquotes elements with delimiters, braces, spaces, quotes and backslashes", () => {
    assert.deepStrictEqual(
      PgValue.parseArray(String.raw`{x,"y z","q\"uote","back\\slash","com,ma","{brace}",""}`, ",", text),
      ["x", "y z", 'q"uote', "back\\slash", "com,ma", "{brace}", ""]
    )
    // A quoted number is still converted by the element rule.
    assert.deepStrictEqual(PgValue.parseArray('{"1",2}', ",", int4), [1, 2])
  })

  it("skips explicit bounds and honours the element type's delimiter", () => {
    assert.deepStrictEqual(PgValue.parseArray("[0:1]={x,y}", ",", text), ["x", "y"])
    assert.deepStrictEqual(PgValue.parseArray("[1:1][1:2]={{1,2}}", ",", int4), [[1, 2]])
    assert.deepStrictEqual(PgValue.parseArray("{(1,1),(0,0);(2,2),(1,1)}", ";", text), ["(1,1),(0,0)", "(2,2),(1,1)"])
  })
})

describe("PgValue.Types", () => {
  it("converts by type name, arrays by their element's rule, domains by their base type's", () => {
    const types = builtins()
    assert.strictEqual(types.converter(23)("7"), 7)
    assert.strictEqual(types.converter(1184)("2026-06-13 10:00:00.123456+00"), "2026-06-13 10:00:00.123456+00")
    assert.deepStrictEqual(types.converter(1007)("{{1,2},{3,NULL}}"), [[1, 2], [3, null]])
    assert.deepStrictEqual(types.converter(1009)('{a,"b,c"}'), ["a", "b,c"])
    assert.deepStrictEqual(types.converter(1020)("{(1,1),(0,0);(2,2),(1,1)}"), ["(1,1),(0,0)", "(2,2),(1,1)"])
    assert.strictEqual(types.converter(90001)("12"), 12)
    assert.deepStrictEqual(types.converter(90002)("{12,NULL}"), [12, null])
    assert.strictEqual(types.name(90002), "_guest_count")
  })

  it("keeps int2vector's brace-less form, and unknown types, as text", () => {
    const types = builtins()
    assert.strictEqual(types.converter(22)("1 2"), "1 2")
    assert.strictEqual(types.converter(424242)("42"), "42")
    assert.strictEqual(types.name(424242), "unknown")
  })

  it("lists the OIDs still to load, never 0", () => {
    const types = builtins()
    assert.deepStrictEqual(types.missing([23, 0, 5, 5, 6]), [5, 6])
    types.add(5, PgValue.unknownType)
    assert.isTrue(types.has(5))
    assert.deepStrictEqual(types.missing([5, 6]), [6])
  })
})

describe("PgValue.toRecord", () => {
  const columns = [{ name: "id", type: "int4" }, { name: "body", type: "text" }, { name: "__proto__", type: "text" }]
  const converts = [int4, text, text]
  /** A tuple as pgoutput builds it: no prototype, so an absent `__proto__` column reads as absent. */
  const tuple = (values: Record<string, unknown>): PgValue.Tuple => Object.assign(Object.create(null), values)

  it("types each column, keeps SQL NULL, and gives undefined for an absent image", () => {
    assert.deepStrictEqual({ ...PgValue.toRecord(columns, converts, tuple({ id: "1", body: null }), null) }, {
      id: 1,
      body: null
    })
    assert.isUndefined(PgValue.toRecord(columns, converts, null, null))
  })

  it("fills an unchanged TOASTed value from the old image, and leaves it out when no image has it", () => {
    const withOld = PgValue.toRecord(columns, converts, tuple({ id: "1" }), tuple({ id: "1", body: "long" }))!
    assert.strictEqual(withOld["body"], "long")
    const withoutOld = PgValue.toRecord(columns, converts, tuple({ id: "1" }), null)!
    assert.isFalse("body" in withoutOld)
  })

  it("keeps a column named __proto__ as an own key of a null-prototype record", () => {
    const image: Record<string, unknown> = Object.create(null)
    image["id"] = "2"
    image["__proto__"] = "q"
    const record = PgValue.toRecord(columns, converts, image, null)!
    assert.strictEqual(Object.getPrototypeOf(record), null)
    assert.deepStrictEqual(Object.keys(record), ["id", "__proto__"])
    assert.strictEqual(record["__proto__"], "q")
  })
})

import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { Json } from "../src/index.ts"

describe("Json.nestedDeeperThan", () => {
  it("refuses text nested deeper than the limit and accepts text at the limit, as bytes and as a string", () => {
    const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`
    for (const encode of [(s: string) => s, (s: string) => Buffer.from(s)]) {
      assert.isTrue(Json.nestedDeeperThan(encode(nested(Json.MAX_DEPTH + 1)), Json.MAX_DEPTH))
      assert.isFalse(Json.nestedDeeperThan(encode(nested(Json.MAX_DEPTH)), Json.MAX_DEPTH))
      assert.isTrue(Json.nestedDeeperThan(encode("[[[1]]]"), 2))
      assert.isFalse(Json.nestedDeeperThan(encode("[[1]]"), 2))
    }
  })

  it("skips brackets inside strings, escaped quotes included", () => {
    assert.isFalse(Json.nestedDeeperThan(`{"a":"${"[".repeat(100)}\\"["}`, 2))
    assert.isFalse(Json.nestedDeeperThan(Buffer.from(`{"a":"${"{".repeat(100)}"}`), 2))
  })

  it("tells an escaped quote from a closing one after runs of backslashes, as bytes and as a string", () => {
    for (const encode of [(s: string) => s, (s: string) => Buffer.from(s)]) {
      // Two backslash characters (an escaped backslash) before a quote: it closes the string; the brackets after count.
      assert.isTrue(Json.nestedDeeperThan(encode(`["\\\\",[[1]]]`), 2))
      assert.isFalse(Json.nestedDeeperThan(encode(`["\\\\",[1]]`), 2))
      // Three backslash characters before a quote (an escaped backslash, an escaped quote): the string goes on.
      assert.isFalse(Json.nestedDeeperThan(encode(`["\\\\\\"[[[[",1]`), 2))
      // Unterminated: what follows the open quote is not counted (the parser refuses the text anyway).
      assert.isFalse(Json.nestedDeeperThan(encode(`["[[[[[`), 2))
    }
  })

  it("agrees with the character-by-character count on random texts of quotes, backslashes and brackets", () => {
    const reference = (text: string, max: number): boolean => {
      let depth = 0
      let inString = false
      for (let i = 0; i < text.length; i++) {
        const c = text[i]
        if (inString) {
          if (c === "\\") i++
          else if (c === '"') inString = false
        } else if (c === '"') inString = true
        else if (c === "{" || c === "[") {
          if (++depth > max) return true
        } else if (c === "}" || c === "]") depth--
      }
      return false
    }
    const alphabet = ['"', "\\", "[", "]", "{", "}", "a"]
    let seed = 7
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648)
    for (let n = 0; n < 5000; n++) {
      const text = Array.from({ length: next() % 40 }, () => alphabet[next() % alphabet.length]).join("")
      for (const max of [0, 1, 3]) {
        assert.strictEqual(Json.nestedDeeperThan(text, max), reference(text, max), `${JSON.stringify(text)} max ${max}`)
        assert.strictEqual(Json.nestedDeeperThan(Buffer.from(text), max), reference(text, max), text)
      }
    }
  })
})

describe("Json.lastElementText", () => {
  // Refs and names as clients send them: strings (escaped quotes and backslashes too), numbers, null.
  const primitive = fc.oneof(
    fc.constant(null),
    fc.integer(),
    fc.string({ unit: fc.constantFrom("a", '"', "\\", "]", ",", " ", "é", "\n") })
  )
  const spaces = fc.string({ unit: fc.constantFrom(" ", "\n", "\t", "\r"), maxLength: 3 })

  it("gives the last element as written, which parses to the same value, however the array is spaced", () => {
    fc.assert(
      fc.property(
        fc.array(primitive, { minLength: 4, maxLength: 4 }),
        fc.jsonValue(),
        spaces,
        spaces,
        (head, last, a, b) => {
          const compact = JSON.stringify([...head, last])
          assert.strictEqual(Json.lastElementText(compact, 4), JSON.stringify(last))
          const spaced = `${a}[${a}${head.map((h) => `${JSON.stringify(h)}${b},${a}`).join("")}${
            JSON.stringify(last, null, 2)
          }${b}]${a}`
          const slice = Json.lastElementText(spaced, 4)
          assert.isDefined(slice)
          assert.deepStrictEqual(JSON.parse(slice!), JSON.parse(JSON.stringify(last)))
          assert.strictEqual(slice, slice!.trim())
        }
      ),
      { numRuns: 1000 }
    )
  })

  it("is undefined for a text that is not an array of that shape", () => {
    assert.isUndefined(Json.lastElementText(`{"a":1}`, 4))
    assert.isUndefined(Json.lastElementText(`[1,2,{"x":1}]`, 4))
    assert.strictEqual(Json.lastElementText(`[1,2,3,4,{"x":1}]`, 4), `{"x":1}`)
  })
})

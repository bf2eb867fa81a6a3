import { assert, describe, it } from "@effect/vitest"
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

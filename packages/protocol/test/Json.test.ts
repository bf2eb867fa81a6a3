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
})

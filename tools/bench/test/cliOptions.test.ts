import { assert, describe, it } from "@effect/vitest"
import { numberOption } from "../src/cliOptions.ts"

describe("numberOption", () => {
  it("takes a number at or above its minimum, whole when asked", () => {
    assert.strictEqual(numberOption({ runs: "3" }, "runs", 1), 3)
    assert.strictEqual(numberOption({ rate: "0.5" }, "rate", 0), 0.5)
    assert.strictEqual(numberOption({ runs: "1" }, "runs", 1, true), 1)
  })

  it("refuses with the flag's name: not a number, below the minimum, not whole", () => {
    assert.throws(() => numberOption({ runs: "many" }, "runs", 1), /--runs must be a number >= 1, got "many"/)
    assert.throws(() => numberOption({ runs: "0" }, "runs", 1), /--runs must be a number >= 1/)
    assert.throws(() => numberOption({ runs: "2.5" }, "runs", 1, true), /--runs must be a whole number >= 1/)
  })
})

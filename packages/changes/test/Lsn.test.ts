import { assert, describe, it } from "@effect/vitest"
import * as Lsn from "../src/Lsn.ts"

describe("Lsn", () => {
  it("parses Postgres' spelling, padded or not, into one 64-bit number", () => {
    assert.strictEqual(Lsn.parse("0/16B3748"), 0x16b3748n)
    assert.strictEqual(Lsn.parse("00000000/016B3748"), 0x16b3748n)
    assert.strictEqual(Lsn.parse("16/B374D848"), (0x16n << 32n) | 0xb374d848n)
    assert.strictEqual(Lsn.parse("ffffffff/ffffffff"), 0xffffffffffffffffn)
    assert.strictEqual(Lsn.parse("0/0"), Lsn.zero)
  })

  it("formats upper case with unpadded halves, and normalize re-spells the decoder's padded form", () => {
    assert.strictEqual(Lsn.format(0x16b3748n), "0/16B3748")
    assert.strictEqual(Lsn.format((0x16n << 32n) | 0xb374d848n), "16/B374D848")
    assert.strictEqual(Lsn.format(Lsn.zero), "0/0")
    assert.strictEqual(Lsn.normalize("00000001/0000ABCD"), "1/ABCD")
    for (const text of ["0/0", "0/1", "1/0", "A/FFFFFFFF", "FFFFFFFF/FFFFFFFF"])
      assert.strictEqual(Lsn.format(Lsn.parse(text)), text)
  })

  it("carries across the low word in both directions", () => {
    assert.strictEqual(Lsn.format(Lsn.add(Lsn.parse("0/FFFFFFFF"), 1)), "1/0")
    assert.strictEqual(Lsn.format(Lsn.add(Lsn.parse("1/0"), -1)), "0/FFFFFFFF")
    assert.strictEqual(Lsn.format(Lsn.add(Lsn.parse("2/FFFFFFF0"), 0x20n)), "3/10")
  })

  it("compares by position, the high word first, whatever the spelling", () => {
    assert.strictEqual(Lsn.compare(Lsn.parse("1/0"), Lsn.parse("0/FFFFFFFF")), 1)
    assert.strictEqual(Lsn.compare(Lsn.parse("0/FFFFFFFF"), Lsn.parse("1/0")), -1)
    assert.strictEqual(Lsn.compare(Lsn.parse("0/16B3748"), Lsn.parse("00000000/016B3748")), 0)
    // Text order would say otherwise: "9/0" sorts after "10/0".
    assert.strictEqual(Lsn.compare(Lsn.parse("9/0"), Lsn.parse("10/0")), -1)
    assert.strictEqual(Lsn.max(Lsn.parse("1/0"), Lsn.parse("0/FFFFFFFF")), Lsn.parse("1/0"))
  })
})

import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { Publication } from "../src/index.ts"
import * as PublicationWire from "../src/PublicationWire.ts"

const origin = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])

// Strings a client controls: empty, NUL, separators, emoji, lone surrogates (not representable in UTF-8).
const hostile = ["", "\u0000", "a|b:{c}\n\"'\\", "ü€😀", "\ud800", "x\udfffy", "\ud83d", "%7B{}", "\u2028\u2029"]

const roundTrip = (publication: Publication.Publication) => {
  const decoded = PublicationWire.decode(PublicationWire.encode(origin, publication))
  if (decoded === undefined) return assert.fail("a publication we encoded must decode")
  assert.deepStrictEqual(Array.from(decoded.origin), Array.from(origin))
  assert.deepStrictEqual(decoded.publication, publication)
}

describe("PublicationWire", () => {
  it("round-trips JSON publications with hostile strings exactly", () => {
    for (const s of hostile) {
      for (const isPrivate of [false, true]) {
        roundTrip(Publication.json(`realtime:${s}`, isPrivate, `ev${s}`, JSON.stringify({ s })))
        roundTrip(Publication.json(s, isPrivate, s, s))
      }
    }
  })

  it("round-trips user broadcasts with binary payloads, both encodings, with and without meta", () => {
    const payloads = [new Uint8Array([]), new Uint8Array([0, 1, 2, 127, 128, 255]), new Uint8Array(70_000).fill(0xff)]
    for (const s of hostile) {
      for (const payload of payloads) {
        for (const encoding of ["binary", "json"] as const) {
          for (const meta of [undefined, "", `{"id":"${s}"}`]) {
            const built = Publication.userBroadcast(`realtime:${s}`, true, `e${s}`, encoding, payload, meta)
            if (!Result.isSuccess(built)) return assert.fail("short fields must build")
            roundTrip(built.success)
          }
        }
      }
    }
  })

  it("refuses bytes it did not write instead of throwing", () => {
    const good = PublicationWire.encode(origin, Publication.json("realtime:x", false, "broadcast", "{}"))
    assert.isUndefined(PublicationWire.decode(Buffer.alloc(0)))
    assert.isUndefined(PublicationWire.decode(Buffer.from("hello world, not ours")))
    for (let cut = 0; cut < good.length; cut++) assert.isUndefined(PublicationWire.decode(good.subarray(0, cut)))
    const wrongVersion = Buffer.from(good)
    wrongVersion[0] = 99
    assert.isUndefined(PublicationWire.decode(wrongVersion))
  })
})

import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as ws from "ws"
import { WsFrame } from "../src/index.ts"

interface SenderFrameOptions {
  readonly fin: boolean
  readonly rsv1: boolean
  readonly opcode: number
  readonly mask: boolean
  readonly readOnly: boolean
}
// @types/ws does not declare `Sender`, which ws's ESM entry exports at runtime.
const { Sender } = ws as unknown as {
  readonly Sender: { readonly frame: (data: Buffer, options: SenderFrameOptions) => ReadonlyArray<Buffer> }
}

const wsFrame = (opcode: number, payload: Uint8Array): Uint8Array =>
  new Uint8Array(
    Buffer.concat(Sender.frame(Buffer.from(payload), { fin: true, rsv1: false, opcode, mask: false, readOnly: false }))
  )

const payloadOf = (length: number): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff)

describe("WsFrame", () => {
  describe("frame matches ws's Sender.frame byte for byte", () => {
    for (const length of [0, 1, 125, 126, 127, 65535, 65536, 100000]) {
      for (const opcode of [WsFrame.OPCODE_TEXT, WsFrame.OPCODE_BINARY] as const) {
        it(`length ${length}, opcode ${opcode}`, () => {
          const payload = payloadOf(length)
          const ours = WsFrame.frame(opcode, payload)
          const theirs = wsFrame(opcode, payload)
          assert.strictEqual(ours.length, theirs.length)
          assert.isTrue(Buffer.from(ours).equals(Buffer.from(theirs)))
        })
      }
    }
  })

  it("header sizes follow RFC 6455 (2, 4, 10 bytes)", () => {
    assert.strictEqual(WsFrame.frame(WsFrame.OPCODE_BINARY, payloadOf(125)).length, 2 + 125)
    assert.strictEqual(WsFrame.frame(WsFrame.OPCODE_BINARY, payloadOf(126)).length, 4 + 126)
    assert.strictEqual(WsFrame.frame(WsFrame.OPCODE_BINARY, payloadOf(65535)).length, 4 + 65535)
    assert.strictEqual(WsFrame.frame(WsFrame.OPCODE_BINARY, payloadOf(65536)).length, 10 + 65536)
  })

  it("text encodes UTF-8 and sets FIN + opcode 1", () => {
    const out = WsFrame.text("héllo")
    assert.deepStrictEqual([...out], [0x81, 6, ...new TextEncoder().encode("héllo")])
    assert.isTrue(Buffer.from(out).equals(Buffer.from(wsFrame(WsFrame.OPCODE_TEXT, new TextEncoder().encode("héllo")))))
  })

  it("text writes the same bytes as encoding first and framing after, for any string and every header size", () => {
    const framedAfter = (s: string) => WsFrame.frame(WsFrame.OPCODE_TEXT, new TextEncoder().encode(s))
    const same = (s: string) => Buffer.from(WsFrame.text(s)).equals(Buffer.from(framedAfter(s)))
    // Lone surrogates (encoded as U+FFFD), astral characters, and two- and three-byte characters among ASCII.
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.oneof(fc.constantFrom("a", "é", "€", "😀", "\ud800", "\udfff", "\u0000")),
          maxLength: 300
        }),
        same
      ),
      { numRuns: 2000 }
    )
    for (const bytes of [0, 125, 126, 65535, 65536, 3_000_000]) {
      assert.isTrue(same("x".repeat(bytes)), `ASCII, ${bytes} bytes`)
      assert.isTrue(same("é".repeat(Math.floor(bytes / 2)) + "x".repeat(bytes % 2)), `two-byte, ${bytes} bytes`)
    }
    // A plain Uint8Array, as before, so callers and tests comparing frames see no Buffer.
    assert.strictEqual(Object.getPrototypeOf(WsFrame.text("x")), Uint8Array.prototype)
  })

  it("binary sets FIN + opcode 2", () => {
    assert.deepStrictEqual([...WsFrame.binary(Uint8Array.from([1, 2, 3]))], [0x82, 3, 1, 2, 3])
  })

  it("parseAll reads back a concatenation of frames of every header size", () => {
    const frames: ReadonlyArray<{ readonly opcode: 1 | 2; readonly payload: Uint8Array }> = [
      {
        opcode: WsFrame.OPCODE_TEXT,
        payload: new TextEncoder().encode(`[null,"21","phoenix","phx_reply",{"status":"ok","response":{}}]`)
      },
      { opcode: WsFrame.OPCODE_BINARY, payload: payloadOf(0) },
      { opcode: WsFrame.OPCODE_BINARY, payload: payloadOf(300) },
      { opcode: WsFrame.OPCODE_TEXT, payload: payloadOf(70000) },
      { opcode: WsFrame.OPCODE_BINARY, payload: payloadOf(125) }
    ]
    const parsed = WsFrame.parseAll(Buffer.concat(frames.map((f) => WsFrame.frame(f.opcode, f.payload))))
    assert.deepStrictEqual(
      parsed.map((f) => ({ opcode: f.opcode, payload: Buffer.from(f.payload) })),
      frames.map((f) => ({ opcode: f.opcode, payload: Buffer.from(f.payload) }))
    )
  })

  it("parseAll reads ws's own frames, also from a subarray with an offset", () => {
    const first = wsFrame(WsFrame.OPCODE_TEXT, payloadOf(200))
    const second = wsFrame(WsFrame.OPCODE_BINARY, payloadOf(66000))
    const padded = new Uint8Array(3 + first.length + second.length)
    padded.set(first, 3)
    padded.set(second, 3 + first.length)
    const parsed = WsFrame.parseAll(padded.subarray(3))
    assert.deepStrictEqual(parsed.map((f) => [f.opcode, f.payload.length]), [[1, 200], [2, 66000]])
    assert.isTrue(Buffer.from(parsed[1]!.payload).equals(Buffer.from(payloadOf(66000))))
  })

  it("frame → parseAll round-trips random frame sequences", () => {
    const frameArb = fc.record({
      opcode: fc.constantFrom(WsFrame.OPCODE_TEXT, WsFrame.OPCODE_BINARY),
      payload: fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 126, max: 70000 }).map(payloadOf))
    })
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 5 }), (frames) => {
        const parsed = WsFrame.parseAll(Buffer.concat(frames.map((f) => WsFrame.frame(f.opcode, f.payload))))
        assert.strictEqual(parsed.length, frames.length)
        parsed.forEach((f, i) => {
          assert.strictEqual(f.opcode, frames[i]!.opcode)
          assert.isTrue(Buffer.from(f.payload).equals(Buffer.from(frames[i]!.payload)))
        })
      }),
      { numRuns: 100 }
    )
  })
})

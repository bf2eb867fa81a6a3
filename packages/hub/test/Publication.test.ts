import { assert, describe, it } from "@effect/vitest"
import { ProtocolError, WsFrame } from "@wedsync/protocol"
import { Result } from "effect"
import { Publication } from "../src/index.ts"

const ROOM = "realtime:room1"
const enc = new TextEncoder()
const dec = new TextDecoder()

const bytes = (...parts: Array<string | ReadonlyArray<number>>): Array<number> =>
  parts.flatMap((p) => (typeof p === "string" ? [...enc.encode(p)] : [...p]))

/** The one WebSocket frame in `frame`, checked to be final and unmasked. */
const single = (frame: Uint8Array | undefined) => {
  if (frame === undefined) return assert.fail("expected a frame")
  assert.strictEqual(frame[0]! & 0x80, 0x80, "FIN bit")
  assert.strictEqual(frame[1]! & 0x80, 0, "server frames are not masked")
  const frames = WsFrame.parseAll(frame)
  assert.strictEqual(frames.length, 1)
  return frames[0]!
}

const broadcastOf = (encoding: "json" | "binary", payload: Uint8Array, meta?: string) => {
  const publication = Publication.userBroadcast(ROOM, false, "msg", encoding, payload, meta)
  if (Result.isFailure(publication)) return assert.fail(publication.failure.message)
  return publication.success
}

describe("Publication", () => {
  describe("frameFor", () => {
    const diff = Publication.json(ROOM, false, "presence_diff", '{"joins":{},"leaves":{}}')

    it("JSON body, v1: a text frame holding the object form with a null ref", () => {
      const frame = single(Publication.frameFor(diff, "1.0.0"))
      assert.strictEqual(frame.opcode, WsFrame.OPCODE_TEXT)
      assert.strictEqual(
        dec.decode(frame.payload),
        '{"topic":"realtime:room1","event":"presence_diff","payload":{"joins":{},"leaves":{}},"ref":null}'
      )
    })

    it("JSON body, v2: a text frame holding [null,null,topic,event,payload]", () => {
      const frame = single(Publication.frameFor(diff, "2.0.0"))
      assert.strictEqual(frame.opcode, WsFrame.OPCODE_TEXT)
      assert.strictEqual(
        dec.decode(frame.payload),
        '[null,null,"realtime:room1","presence_diff",{"joins":{},"leaves":{}}]'
      )
    })

    it("JSON user broadcast, v2: binary kind 4 byte for byte as in spec §1.6", () => {
      const frame = single(Publication.frameFor(broadcastOf("json", enc.encode('{"hello":"world","n":1}')), "2.0.0"))
      assert.strictEqual(frame.opcode, WsFrame.OPCODE_BINARY)
      assert.deepStrictEqual(
        Array.from(frame.payload),
        bytes([0x04, 0x0e, 0x03, 0x00, 0x01], "realtime:room1", "msg", '{"hello":"world","n":1}')
      )
    })

    it("JSON user broadcast with metadata, v2: metadata length and text follow the event", () => {
      const frame = single(Publication.frameFor(broadcastOf("json", enc.encode("{}"), '{"id":"m-1"}'), "2.0.0"))
      assert.deepStrictEqual(
        Array.from(frame.payload),
        bytes([0x04, 0x0e, 0x03, 0x0c, 0x01], "realtime:room1", "msg", '{"id":"m-1"}', "{}")
      )
    })

    it("JSON user broadcast, v1: the JSON broadcast shape, meta included when present", () => {
      const plain = single(Publication.frameFor(broadcastOf("json", enc.encode('{"n":1}')), "1.0.0"))
      assert.strictEqual(plain.opcode, WsFrame.OPCODE_TEXT)
      assert.deepStrictEqual(JSON.parse(dec.decode(plain.payload)), {
        topic: ROOM,
        event: "broadcast",
        payload: { type: "broadcast", event: "msg", payload: { n: 1 } },
        ref: null
      })
      const withMeta = single(Publication.frameFor(broadcastOf("json", enc.encode('{"n":1}'), '{"id":"m-1"}'), "1.0.0"))
      assert.deepStrictEqual((JSON.parse(dec.decode(withMeta.payload)) as { payload: unknown }).payload, {
        type: "broadcast",
        event: "msg",
        payload: { n: 1 },
        meta: { id: "m-1" }
      })
    })

    it("binary user broadcast, v2: kind 4 with encoding byte 0 and the raw bytes", () => {
      const frame = single(Publication.frameFor(broadcastOf("binary", new Uint8Array([1, 2, 3, 255])), "2.0.0"))
      assert.deepStrictEqual(
        Array.from(frame.payload),
        bytes([0x04, 0x0e, 0x03, 0x00, 0x00], "realtime:room1", "msg", [1, 2, 3, 255])
      )
    })

    it("binary user broadcast, v1: no frame at all (v1 cannot carry it)", () => {
      assert.isUndefined(Publication.frameFor(broadcastOf("binary", new Uint8Array([1, 2, 3])), "1.0.0"))
    })

    it("large payloads get the 16-bit and 64-bit WebSocket length forms", () => {
      for (const size of [125, 126, 65_535, 65_536, 200_000]) {
        const payload = new Uint8Array(size).fill(7)
        const frame = single(Publication.frameFor(broadcastOf("binary", payload), "2.0.0"))
        assert.strictEqual(frame.payload.length, 5 + ROOM.length + 3 + size, `size ${size}`)
      }
    })
  })

  describe("userBroadcast field limits (one length byte each)", () => {
    const at = (n: number) => "x".repeat(n)
    const topicOf = (n: number) => `realtime:${at(n - "realtime:".length)}`
    const refused = (result: Result.Result<Publication.Publication, ProtocolError.ProtocolError>) => {
      if (Result.isSuccess(result)) return assert.fail("expected a refusal")
      assert.strictEqual(result.failure.reason._tag, "MalformedWebSocketMessage")
      assert.strictEqual(result.failure.message, "Topic, event and metadata must each be at most 255 bytes")
    }
    const payload = enc.encode("{}")

    it("topic: 255 bytes accepted, 256 refused", () => {
      const accepted = Publication.userBroadcast(topicOf(255), false, "e", "json", payload)
      assert.isTrue(Result.isSuccess(accepted))
      refused(Publication.userBroadcast(topicOf(256), false, "e", "json", payload))
    })

    it("event: 255 bytes accepted, 256 refused", () => {
      assert.isTrue(Result.isSuccess(Publication.userBroadcast(ROOM, false, at(255), "json", payload)))
      refused(Publication.userBroadcast(ROOM, false, at(256), "json", payload))
    })

    it("metadata: 255 bytes accepted, 256 refused", () => {
      const meta = (n: number) => `{"k":"${at(n - 8)}"}`
      assert.strictEqual(meta(255).length, 255)
      assert.isTrue(Result.isSuccess(Publication.userBroadcast(ROOM, false, "e", "json", payload, meta(255))))
      refused(Publication.userBroadcast(ROOM, false, "e", "json", payload, meta(256)))
    })

    it("limits count UTF-8 bytes, not characters", () => {
      // 127 × "é" is 254 bytes, 128 × "é" is 256 bytes, though both are under 255 characters.
      assert.isTrue(Result.isSuccess(Publication.userBroadcast(ROOM, false, "é".repeat(127), "json", payload)))
      refused(Publication.userBroadcast(ROOM, false, "é".repeat(128), "json", payload))
    })

    it("an accepted 255-byte topic frames to a kind-4 header whose length byte is 255", () => {
      const publication = Publication.userBroadcast(topicOf(255), false, "e", "json", payload)
      if (Result.isFailure(publication)) return assert.fail(publication.failure.message)
      const frame = single(Publication.frameFor(publication.success, "2.0.0"))
      assert.strictEqual(frame.payload[1], 255)
    })
  })

  it("topic keys keep public and private rooms of one name apart", () => {
    assert.notStrictEqual(Publication.topicKey(ROOM, false), Publication.topicKey(ROOM, true))
    assert.strictEqual(
      Publication.keyOf(Publication.json(ROOM, true, "broadcast", "{}")),
      Publication.topicKey(ROOM, true)
    )
  })
})

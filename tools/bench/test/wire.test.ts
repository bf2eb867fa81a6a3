import { assert, describe, it } from "@effect/vitest"
import {
  decodeText,
  encodeKind3,
  heartbeatFrame,
  joinFrame,
  kind3ToKind4,
  kind4PayloadOffset,
  readStamp,
  replyStatus,
  type Stamp,
  stampPayload
} from "../src/wire.ts"

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

describe("wire", () => {
  it("encodes the kind-3 example of spec §1.6 byte for byte", () => {
    const frame = encodeKind3("9", "10", "realtime:room1", "msg", '{"hello":"world","n":1}')
    const expected = Buffer.concat([
      Buffer.from([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01]),
      Buffer.from('910realtime:room1msg{"hello":"world","n":1}')
    ])
    assert.strictEqual(hex(frame), hex(expected))
  })

  it("relays kind 3 as the kind-4 example of spec §1.6", () => {
    const out = kind3ToKind4(encodeKind3("9", "10", "realtime:room1", "msg", '{"hello":"world","n":1}'))
    const expected = Buffer.concat([
      Buffer.from([0x04, 0x0e, 0x03, 0x00, 0x01]),
      Buffer.from('realtime:room1msg{"hello":"world","n":1}')
    ])
    assert.strictEqual(hex(out ?? Buffer.alloc(0)), hex(expected))
    assert.isUndefined(kind3ToKind4(Buffer.from([4, 0, 0])))
  })

  it("finds the kind-4 payload inside a larger buffer", () => {
    const frame = kind3ToKind4(encodeKind3("1", "2", "realtime:bench", "bench", '{"a":1}'))!
    const buf = Buffer.concat([Buffer.from("xx"), frame, Buffer.from("yy")])
    const offset = kind4PayloadOffset(buf, 2, 2 + frame.length)
    assert.strictEqual(buf.toString("utf8", offset, 2 + frame.length), '{"a":1}')
    assert.strictEqual(kind4PayloadOffset(buf, 0, buf.length), -1)
  })

  it("stamps payloads of about the requested size", () => {
    const text = stampPayload(1_764_352_000_123.456, 77, 200)
    assert.strictEqual(Buffer.byteLength(text), 200)
    assert.deepStrictEqual(JSON.parse(text).s, 77)
  })

  it("reads the stamp without JSON.parse, bounded by end", () => {
    const out: Stamp = { t: 0, s: 0 }
    const text = stampPayload(1_764_352_000_123.4375, 123456, 200)
    const buf = Buffer.from(`zz${text}`)
    assert.isTrue(readStamp(buf, 2, buf.length, out))
    assert.closeTo(out.t, 1_764_352_000_123.4375, 1e-6)
    assert.strictEqual(out.s, 123456)
  })

  it("falls back to JSON for re-serialised payloads", () => {
    const out: Stamp = { t: 0, s: 0 }
    const buf = Buffer.from('{ "s": 5, "t": 12.5, "p": "x" }')
    assert.isTrue(readStamp(buf, 0, buf.length, out))
    assert.deepStrictEqual(out, { t: 12.5, s: 5 })
    assert.isFalse(readStamp(Buffer.from("[1,2]"), 0, 5, out))
  })

  it("writes the join of spec §2.2 and heartbeats of §1.7", () => {
    assert.strictEqual(
      joinFrame("1"),
      '["1","1","realtime:bench","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]'
    )
    assert.strictEqual(heartbeatFrame("7"), '[null,"7","phoenix","heartbeat",{}]')
  })

  it("decodes replies", () => {
    const m = decodeText('["1","1","realtime:bench","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]')
    assert.strictEqual(m?.event, "phx_reply")
    assert.strictEqual(m?.ref, "1")
    assert.isTrue(replyStatus(m?.payload)?.ok)
    assert.isFalse(replyStatus({ status: "error", response: { reason: "nope" } })?.ok)
    assert.isUndefined(decodeText('{"topic":"x"}'))
    assert.isUndefined(decodeText("not json"))
  })
})

import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { Frame, ProtocolError, Reply, Serializer } from "../src/index.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (...parts: Array<string | ReadonlyArray<number>>): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === "string" ? [...enc.encode(p)] : [...p])))

const expectSuccess = <A, E>(result: Result.Result<A, E>): A => {
  if (Result.isFailure(result)) assert.fail(`expected success, got ${String(result.failure)}`)
  return result.success
}

const expectProtocolError = <A, E>(result: Result.Result<A, E>): ProtocolError.ProtocolError => {
  if (Result.isSuccess(result)) assert.fail(`expected a ProtocolError, decoded ${JSON.stringify(result.success)}`)
  const error = result.failure
  assert.instanceOf(error, ProtocolError.ProtocolError)
  assert.strictEqual(error._tag, "ProtocolError")
  assert.strictEqual(error.reason._tag, "MalformedWebSocketMessage")
  assert.isAbove(error.message.length, 0)
  return error
}

const v1Text = (m: Frame.Message): string =>
  JSON.stringify({
    topic: m.topic,
    event: m.event,
    payload: m.payload,
    ref: m.ref,
    ...(m.joinRef === null ? {} : { join_ref: m.joinRef })
  })

interface Example {
  readonly name: string
  readonly message: Frame.Message
  /** The v2 frame exactly as the spec shows it. */
  readonly v2: string
  /** The v1 frame as the spec shows it, or as realtime-js would send the same push. */
  readonly v1: string
}

const minimalJoin = {
  config: {
    broadcast: { ack: false, self: false },
    presence: { key: "", enabled: false },
    postgres_changes: [],
    private: false
  }
}
const fullJoin = {
  config: {
    broadcast: { self: true, ack: true },
    presence: { key: "user-1", enabled: true },
    postgres_changes: [
      { event: "INSERT", schema: "public", table: "messages", filter: "room_id=eq.1" },
      { event: "*", schema: "public", table: "todos" }
    ],
    private: false
  }
}
const rejoin = {
  config: {
    broadcast: { ack: false, self: false },
    presence: { key: "k1", enabled: true },
    postgres_changes: [],
    private: false
  },
  access_token: "<jwt>",
  version: "realtime-js/2.119.1"
}
const broadcastBody = { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } }

const msg = (
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payload: unknown
): Frame.Message => ({
  joinRef,
  ref,
  topic,
  event,
  payload
})

const examples: ReadonlyArray<Example> = [
  {
    name: "phx_join minimal",
    message: msg("6", "6", "realtime:room1", "phx_join", minimalJoin),
    v2:
      `["6","6","realtime:room1","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]`,
    v1: v1Text(msg("6", "6", "realtime:room1", "phx_join", minimalJoin))
  },
  {
    name: "phx_join full",
    message: msg("9", "9", "realtime:room1", "phx_join", fullJoin),
    v2:
      `["9","9","realtime:room1","phx_join",{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"user-1","enabled":true},"postgres_changes":[{"event":"INSERT","schema":"public","table":"messages","filter":"room_id=eq.1"},{"event":"*","schema":"public","table":"todos"}],"private":false}}]`,
    v1:
      `{"topic":"realtime:room1","event":"phx_join","payload":{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"user-1","enabled":true},"postgres_changes":[{"event":"INSERT","schema":"public","table":"messages","filter":"room_id=eq.1"},{"event":"*","schema":"public","table":"todos"}],"private":false}},"ref":"9","join_ref":"9"}`
  },
  {
    name: "phx_join rejoin with token",
    message: msg("11", "11", "realtime:room9", "phx_join", rejoin),
    v2:
      `["11","11","realtime:room9","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"k1","enabled":true},"postgres_changes":[],"private":false},"access_token":"<jwt>","version":"realtime-js/2.119.1"}]`,
    v1: v1Text(msg("11", "11", "realtime:room9", "phx_join", rejoin))
  },
  {
    name: "heartbeat",
    message: msg(null, "21", "phoenix", "heartbeat", {}),
    v2: `[null,"21","phoenix","heartbeat",{}]`,
    v1: `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"21"}`
  },
  {
    name: "broadcast (v1 object / v2 text array)",
    message: msg("9", "10", "realtime:room1", "broadcast", broadcastBody),
    v2: `["9","10","realtime:room1","broadcast",{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}}]`,
    v1:
      `{"topic":"realtime:room1","event":"broadcast","payload":{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}},"ref":"10","join_ref":"9"}`
  },
  {
    name: "presence track",
    message: msg("9", "12", "realtime:room1", "presence", {
      type: "presence",
      event: "track",
      payload: { online_at: "2026-01-01T00:00:00Z", name: "alice" }
    }),
    v2:
      `["9","12","realtime:room1","presence",{"type":"presence","event":"track","payload":{"online_at":"2026-01-01T00:00:00Z","name":"alice"}}]`,
    v1:
      `{"topic":"realtime:room1","event":"presence","payload":{"type":"presence","event":"track","payload":{"online_at":"2026-01-01T00:00:00Z","name":"alice"}},"ref":"12","join_ref":"9"}`
  },
  {
    name: "presence untrack",
    message: msg("9", "13", "realtime:room1", "presence", { type: "presence", event: "untrack" }),
    v2: `["9","13","realtime:room1","presence",{"type":"presence","event":"untrack"}]`,
    v1:
      `{"topic":"realtime:room1","event":"presence","payload":{"type":"presence","event":"untrack"},"ref":"13","join_ref":"9"}`
  },
  {
    name: "access_token",
    message: msg("9", "14", "realtime:room1", "access_token", { access_token: "<jwt>" }),
    v2: `["9","14","realtime:room1","access_token",{"access_token":"<jwt>"}]`,
    v1: `{"topic":"realtime:room1","event":"access_token","payload":{"access_token":"<jwt>"},"ref":"14","join_ref":"9"}`
  },
  {
    name: "phx_leave",
    message: msg("9", "22", "realtime:room1", "phx_leave", {}),
    v2: `["9","22","realtime:room1","phx_leave",{}]`,
    v1: `{"topic":"realtime:room1","event":"phx_leave","payload":{},"ref":"22","join_ref":"9"}`
  },
  {
    name: "phx_leave for a never-joined channel",
    message: msg(null, "3", "realtime:pre-sub", "phx_leave", {}),
    v2: `[null,"3","realtime:pre-sub","phx_leave",{}]`,
    v1: `{"topic":"realtime:pre-sub","event":"phx_leave","payload":{},"ref":"3"}`
  }
]

/** A kind-3 user broadcast push as a client sent it: 03 01 02 0e 03 00 01 | "9" | "10" | "realtime:room1" | "msg" | {"hello":"world","n":1} */
const observed = bytes(
  [0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01],
  "9",
  "10",
  "realtime:room1",
  "msg",
  `{"hello":"world","n":1}`
)

const versions: ReadonlyArray<Frame.Vsn> = [Frame.V1, Frame.V2]
const textOf = (vsn: Frame.Vsn, example: Example): string => (vsn === Frame.V1 ? example.v1 : example.v2)

// Non-JSON, non-array/object and wrongly typed inputs that both serializers must reject.
const malformedCommon: ReadonlyArray<readonly [string, string]> = [
  ["empty text", ""],
  ["not JSON", "hello"],
  ["truncated JSON", `["9","9","realtime:room1","phx_join",{`],
  ["JSON string", `"phx_join"`],
  ["JSON number", "42"],
  ["JSON null", "null"]
]

const malformedByVsn: Record<Frame.Vsn, ReadonlyArray<readonly [string, string]>> = {
  "1.0.0": [
    ["array under v1", `["9","9","realtime:room1","phx_join",{}]`],
    ["missing topic", `{"event":"phx_join","payload":{},"ref":"1"}`],
    ["missing event", `{"topic":"realtime:room1","payload":{},"ref":"1"}`],
    ["non-string topic", `{"topic":1,"event":"phx_join","payload":{},"ref":"1"}`],
    ["non-string event", `{"topic":"realtime:room1","event":null,"payload":{},"ref":"1"}`],
    ["object ref", `{"topic":"realtime:room1","event":"phx_join","payload":{},"ref":{"n":1}}`],
    ["boolean join_ref", `{"topic":"realtime:room1","event":"phx_join","payload":{},"ref":"1","join_ref":true}`]
  ],
  "2.0.0": [
    ["object under v2", `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"21"}`],
    ["wrong arity (4)", `["9","9","realtime:room1","phx_join"]`],
    ["wrong arity (0)", `[]`],
    ["non-string topic", `["9","9",42,"phx_join",{}]`],
    ["null topic", `["9","9",null,"phx_join",{}]`],
    ["non-string event", `["9","9","realtime:room1",["phx_join"],{}]`],
    ["object ref", `["9",{},"realtime:room1","phx_join",{}]`],
    ["boolean join_ref", `[true,"9","realtime:room1","phx_join",{}]`]
  ]
}

describe("Serializer", () => {
  for (const vsn of versions) {
    describe(`vsn ${vsn}`, () => {
      describe("decodeText: observed client frames", () => {
        for (const example of examples) {
          it(example.name, () => {
            const decoded = expectSuccess(Serializer.decodeText(vsn, textOf(vsn, example)))
            assert.deepStrictEqual(decoded, example.message)
          })
        }
      })

      it("decode wraps a text frame as a Message", () => {
        const heartbeat = examples.find((e) => e.name === "heartbeat")!
        const inbound = expectSuccess(Serializer.decode(vsn, textOf(vsn, heartbeat)))
        assert.deepStrictEqual(inbound, { _tag: "Message", message: heartbeat.message })
      })

      it("accepts numeric refs and turns them into decimal strings", () => {
        const text = vsn === Frame.V1
          ? `{"topic":"realtime:room1","event":"phx_join","payload":{},"ref":7,"join_ref":7}`
          : `[7,7,"realtime:room1","phx_join",{}]`
        const decoded = expectSuccess(Serializer.decodeText(vsn, text))
        assert.strictEqual(decoded.ref, "7")
        assert.strictEqual(decoded.joinRef, "7")
      })

      describe("malformed text frames fail with ProtocolError", () => {
        for (const [name, text] of [...malformedCommon, ...malformedByVsn[vsn]]) {
          it(name, () => {
            expectProtocolError(Serializer.decodeText(vsn, text))
            expectProtocolError(Serializer.decode(vsn, text))
          })
        }
      })

      it("encodeRaw equals encode for the same payload", () => {
        const ref = fc.option(fc.string(), { nil: null })
        fc.assert(
          fc.property(ref, ref, fc.string(), fc.string(), fc.jsonValue(), (joinRef, r, topic, event, payload) => {
            const expected = Serializer.encode(vsn, { joinRef, ref: r, topic, event, payload })
            assert.strictEqual(Serializer.encodeRaw(vsn, joinRef, r, topic, event, JSON.stringify(payload)), expected)
          }),
          { numRuns: 500 }
        )
      })

      it("decodeText reads back what encode wrote", () => {
        const ref = fc.option(fc.string(), { nil: null })
        fc.assert(
          fc.property(ref, ref, fc.string(), fc.string(), fc.jsonValue(), (joinRef, r, topic, event, payload) => {
            const decoded = expectSuccess(
              Serializer.decodeText(vsn, Serializer.encode(vsn, { joinRef, ref: r, topic, event, payload }))
            )
            // v1 never carries join_ref; JSON has no -0, and v1 reads a null payload as {}.
            const expectedPayload = vsn === Frame.V1 && payload === null ? {} : JSON.parse(JSON.stringify(payload))
            assert.deepStrictEqual(decoded, {
              joinRef: vsn === Frame.V1 ? null : joinRef,
              ref: r,
              topic,
              event,
              payload: expectedPayload
            })
          }),
          { numRuns: 300 }
        )
      })
    })
  }

  describe("encode: server frames byte for byte", () => {
    const heartbeatReply = msg(null, "21", Reply.PHOENIX_TOPIC, Reply.PHX_REPLY, Reply.ok())

    it("v2 heartbeat reply", () => {
      assert.strictEqual(
        Serializer.encode(Frame.V2, heartbeatReply),
        `[null,"21","phoenix","phx_reply",{"status":"ok","response":{}}]`
      )
    })

    it("v1 heartbeat reply has no join_ref", () => {
      assert.strictEqual(
        Serializer.encode(Frame.V1, heartbeatReply),
        `{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"21"}`
      )
    })

    it("v1 drops join_ref even when the message has one", () => {
      assert.strictEqual(
        Serializer.encode(Frame.V1, msg("9", "9", "realtime:room1", Reply.PHX_CLOSE, {})),
        `{"topic":"realtime:room1","event":"phx_close","payload":{},"ref":"9"}`
      )
    })

    it("v2 join reply with postgres_changes", () => {
      const response = {
        postgres_changes: [
          { id: 30934519, event: "INSERT", schema: "public", table: "messages", filter: "room_id=eq.1" },
          { id: 118842310, event: "*", schema: "public", table: "todos" }
        ]
      }
      assert.strictEqual(
        Serializer.encode(Frame.V2, msg("9", "9", "realtime:room1", Reply.PHX_REPLY, Reply.ok(response))),
        `["9","9","realtime:room1","phx_reply",{"status":"ok","response":{"postgres_changes":[{"id":30934519,"event":"INSERT","schema":"public","table":"messages","filter":"room_id=eq.1"},{"id":118842310,"event":"*","schema":"public","table":"todos"}]}}]`
      )
    })

    it("v2 error reply and unmatched topic", () => {
      assert.strictEqual(
        Serializer.encode(
          Frame.V2,
          msg("9", "9", "realtime:room1", Reply.PHX_REPLY, Reply.error("ChannelRateLimitReached: Too many channels"))
        ),
        `["9","9","realtime:room1","phx_reply",{"status":"error","response":{"reason":"ChannelRateLimitReached: Too many channels"}}]`
      )
      assert.strictEqual(
        Serializer.encode(Frame.V2, msg(null, "5", "realtime:x", Reply.PHX_REPLY, Reply.error(Reply.UNMATCHED_TOPIC))),
        `[null,"5","realtime:x","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`
      )
    })

    it("v2 system message keeps the channel join_ref and a null ref", () => {
      assert.strictEqual(
        Serializer.encode(
          Frame.V2,
          msg(
            "9",
            null,
            "realtime:room1",
            Reply.SYSTEM,
            Reply.system("postgres_changes", "ok", "Subscribed to PostgreSQL", "room1")
          )
        ),
        `["9",null,"realtime:room1","system",{"extension":"postgres_changes","status":"ok","message":"Subscribed to PostgreSQL","channel":"room1"}]`
      )
    })

    it("encodeRaw writes a JSON-origin broadcast fan-out frame", () => {
      const payload = Serializer.broadcastPayloadJson("msg", `{"hello":"world","n":1}`)
      assert.strictEqual(
        Serializer.encodeRaw(Frame.V2, null, null, "realtime:room1", Reply.BROADCAST, payload),
        `[null,null,"realtime:room1","broadcast",{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}}]`
      )
      assert.strictEqual(
        Serializer.encodeRaw(Frame.V1, null, null, "realtime:room1", Reply.BROADCAST, payload),
        `{"topic":"realtime:room1","event":"broadcast","payload":{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}},"ref":null}`
      )
    })
  })

  describe("broadcastPayloadJson", () => {
    it("builds type, event, payload in that order", () => {
      assert.strictEqual(
        Serializer.broadcastPayloadJson("msg", `{"hello":"world","n":1}`),
        `{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}}`
      )
    })

    it("appends meta only when given", () => {
      assert.strictEqual(
        Serializer.broadcastPayloadJson("msg", `{"a":1}`, `{"replayed":true,"id":"abc"}`),
        `{"type":"broadcast","event":"msg","payload":{"a":1},"meta":{"replayed":true,"id":"abc"}}`
      )
    })

    it("escapes the event and yields valid JSON for any event and payload", () => {
      fc.assert(
        fc.property(
          fc.string(),
          fc.jsonValue(),
          fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: undefined }),
          (event, payload, meta) => {
            const text = Serializer.broadcastPayloadJson(
              event,
              JSON.stringify(payload),
              meta === undefined ? undefined : JSON.stringify(meta)
            )
            const expected = meta === undefined
              ? { type: "broadcast", event, payload }
              : { type: "broadcast", event, payload, meta }
            assert.deepStrictEqual(JSON.parse(text), JSON.parse(JSON.stringify(expected)))
          }
        ),
        { numRuns: 300 }
      )
    })
  })

  describe("decodeBinary: kind 3 user broadcast push", () => {
    it("decodes the observed JSON push", () => {
      const b = expectSuccess(Serializer.decodeBinary(observed))
      assert.strictEqual(b.joinRef, "9")
      assert.strictEqual(b.ref, "10")
      assert.strictEqual(b.topic, "realtime:room1")
      assert.strictEqual(b.userEvent, "msg")
      assert.isUndefined(b.meta)
      assert.strictEqual(b.encoding, "json")
      assert.strictEqual(dec.decode(b.payload), `{"hello":"world","n":1}`)
    })

    it("decode wraps it as a UserBroadcast under v2", () => {
      const inbound = expectSuccess(Serializer.decode(Frame.V2, observed))
      assert.strictEqual(inbound._tag, "UserBroadcast")
    })

    it("decodes the observed binary payload (encoding 0)", () => {
      const frame = bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x00], "9", "10", "realtime:room1", "msg", [
        0x01,
        0x02,
        0x03,
        0xff
      ])
      const b = expectSuccess(Serializer.decodeBinary(frame))
      assert.strictEqual(b.encoding, "binary")
      assert.deepStrictEqual([...b.payload], [1, 2, 3, 255])
    })

    it("decodes the observed metadata", () => {
      const meta = `{"persist":{"ttl":60}}`
      assert.strictEqual(enc.encode(meta).length, 22)
      const frame = bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 22, 0x01], "9", "10", "realtime:room1", "msg", meta, `{"a":1}`)
      const b = expectSuccess(Serializer.decodeBinary(frame))
      assert.strictEqual(b.meta, meta)
      assert.strictEqual(dec.decode(b.payload), `{"a":1}`)
    })

    it("empty refs decode as null", () => {
      const frame = bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00], "t", "e")
      const b = expectSuccess(Serializer.decodeBinary(frame))
      assert.isNull(b.joinRef)
      assert.isNull(b.ref)
      assert.strictEqual(b.payload.length, 0)
    })

    it("keeps a leading U+FEFF in a field", () => {
      const frame = bytes([0x03, 0x01, 0x01, 0x07, 0x01, 0x00, 0x00], "1", "2", "\uFEFFroom", "e")
      assert.strictEqual(expectSuccess(Serializer.decodeBinary(frame)).topic, "\uFEFFroom")
    })

    const invalid: ReadonlyArray<readonly [string, Uint8Array]> = [
      [
        "invalid JSON payload",
        bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01], "9", "10", "realtime:room1", "msg", `{"hello":`)
      ],
      ["empty JSON payload", bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01], "9", "10", "realtime:room1", "msg")],
      [
        "payload bytes not UTF-8 under JSON encoding",
        bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0x00, 0x01], "t", "e", [0x22, 0xff, 0x22])
      ],
      [
        "bad encoding byte",
        bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x02], "9", "10", "realtime:room1", "msg", `{}`)
      ],
      [
        "truncated lengths (fields longer than the frame)",
        bytes([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01], "9", "10", "realtime:ro")
      ],
      ["metadata length past the end", bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0xff, 0x00], "t", "e", "{}")],
      ["header shorter than 7 bytes", Uint8Array.from([0x03, 0x01, 0x02, 0x0e, 0x03, 0x00])],
      ["empty frame", new Uint8Array(0)],
      [
        "wrong kind (4, server-only)",
        bytes([0x04, 0x0e, 0x03, 0x00, 0x01], "realtime:room1", "msg", `{"hello":"world","n":1}`)
      ],
      [
        "wrong kind (0, Phoenix push)",
        bytes([0x00, 0x01, 0x02, 0x0e, 0x03, 0x00, 0x01], "9", "10", "realtime:room1", "msg", `{}`)
      ],
      ["invalid UTF-8 in topic", bytes([0x03, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00], [0xc3, 0x28], "e")],
      ["overlong UTF-8 in event", bytes([0x03, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00], "t", [0xc0, 0xaf])],
      [
        "UTF-16 surrogate encoded in ref",
        bytes([0x03, 0x00, 0x03, 0x01, 0x01, 0x00, 0x00], [0xed, 0xa0, 0x80], "t", "e")
      ],
      ["metadata that is not JSON", bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0x03, 0x00], "t", "e", "{x}")],
      ["metadata that is a JSON array", bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00], "t", "e", "[]")]
    ]
    for (const [name, frame] of invalid) {
      it(`fails on ${name}`, () => {
        expectProtocolError(Serializer.decodeBinary(frame))
        expectProtocolError(Serializer.decode(Frame.V2, frame))
      })
    }

    it("decode with a binary frame under v1 fails", () => {
      expectProtocolError(Serializer.decode(Frame.V1, observed))
    })
  })

  describe("encodeUserBroadcast: kind 4", () => {
    it("encodes the spec example exactly", () => {
      const out = expectSuccess(
        Serializer.encodeUserBroadcast("realtime:room1", "msg", "json", enc.encode(`{"hello":"world","n":1}`))
      )
      assert.deepStrictEqual(
        [...out],
        [...bytes([0x04, 0x0e, 0x03, 0x00, 0x01], "realtime:room1", "msg", `{"hello":"world","n":1}`)]
      )
    })

    it("encodes a binary payload with metadata", () => {
      const out = expectSuccess(
        Serializer.encodeUserBroadcast("realtime:room1", "msg", "binary", Uint8Array.from([1, 2, 3, 255]), `{"id":"x"}`)
      )
      assert.deepStrictEqual([...out], [
        ...bytes([0x04, 0x0e, 0x03, 0x0a, 0x00], "realtime:room1", "msg", `{"id":"x"}`, [1, 2, 3, 255])
      ])
    })

    it("counts UTF-8 bytes, not UTF-16 units", () => {
      const out = expectSuccess(Serializer.encodeUserBroadcast("realtime:é🎉", "m", "json", enc.encode("1")))
      assert.strictEqual(out[1], enc.encode("realtime:é🎉").length)
    })

    it("accepts 255-byte fields", () => {
      const topic = "t".repeat(255)
      const out = expectSuccess(
        Serializer.encodeUserBroadcast(topic, "e".repeat(255), "json", enc.encode("{}"), `{"k":"${"m".repeat(247)}"}`)
      )
      assert.strictEqual(out[1], 255)
      assert.strictEqual(out[2], 255)
      assert.strictEqual(out[3], 255)
    })

    it("fails on a topic over 255 bytes", () => {
      expectProtocolError(Serializer.encodeUserBroadcast("t".repeat(256), "msg", "json", enc.encode("{}")))
      // 128 two-byte characters: 128 UTF-16 units but 256 bytes.
      expectProtocolError(Serializer.encodeUserBroadcast("é".repeat(128), "msg", "json", enc.encode("{}")))
    })

    it("fails on an event or metadata over 255 bytes", () => {
      expectProtocolError(Serializer.encodeUserBroadcast("t", "e".repeat(256), "json", enc.encode("{}")))
      expectProtocolError(
        Serializer.encodeUserBroadcast("t", "e", "json", enc.encode("{}"), `{"k":"${"m".repeat(300)}"}`)
      )
    })
  })

  describe("decodeUserBroadcast: kind 4", () => {
    it("reads back what encodeUserBroadcast wrote, with and without metadata", () => {
      const payload = Uint8Array.from([1, 2, 3, 255])
      const withMeta = expectSuccess(Serializer.decodeUserBroadcast(
        expectSuccess(Serializer.encodeUserBroadcast("realtime:é🎉", "msg", "binary", payload, `{"id":"x"}`))
      ))
      assert.deepStrictEqual({ ...withMeta, payload: [...withMeta.payload] }, {
        topic: "realtime:é🎉",
        userEvent: "msg",
        meta: `{"id":"x"}`,
        encoding: "binary",
        payload: [1, 2, 3, 255]
      })
      const plain = expectSuccess(Serializer.decodeUserBroadcast(
        expectSuccess(Serializer.encodeUserBroadcast("realtime:room1", "m", "json", enc.encode("{}")))
      ))
      assert.deepStrictEqual([plain.meta, plain.encoding, new TextDecoder().decode(plain.payload)], [
        undefined,
        "json",
        "{}"
      ])
    })

    it("fails on another kind, a short frame, an unknown encoding or lengths past the end", () => {
      expectProtocolError(Serializer.decodeUserBroadcast(Uint8Array.from([3, 0, 0, 0, 0, 0, 1])))
      expectProtocolError(Serializer.decodeUserBroadcast(Uint8Array.from([4, 0, 0, 0])))
      expectProtocolError(Serializer.decodeUserBroadcast(Uint8Array.from([4, 0, 0, 0, 2])))
      expectProtocolError(Serializer.decodeUserBroadcast(Uint8Array.from([4, 9, 0, 0, 0, 65])))
    })
  })

  describe("encodeUserBroadcastPush → decodeBinary", () => {
    const maxBytes = (s: string): boolean => enc.encode(s).length <= 255
    // Full Unicode code points (no lone surrogates: TextEncoder would replace them).
    const field = fc.string({ unit: "binary", maxLength: 80 }).filter(maxBytes)
    const ref = fc.option(fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).filter(maxBytes), { nil: null })
    const meta = fc.option(
      fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }).map((o) =>
        JSON.stringify(o)
      ).filter(maxBytes),
      { nil: undefined }
    )
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 512 }).map((p) => ({ encoding: "binary" as const, payload: p })),
      fc.jsonValue().map((v) => ({ encoding: "json" as const, payload: enc.encode(JSON.stringify(v)) }))
    )

    it("round-trips random fields and payloads", () => {
      fc.assert(
        fc.property(ref, ref, field, field, meta, payload, (joinRef, r, topic, userEvent, metaJson, p) => {
          const broadcast: Frame.UserBroadcast = { joinRef, ref: r, topic, userEvent, meta: metaJson, ...p }
          const decoded = expectSuccess(Serializer.decodeBinary(Serializer.encodeUserBroadcastPush(broadcast)))
          assert.deepStrictEqual({ ...decoded, payload: [...decoded.payload] }, {
            ...broadcast,
            payload: [...broadcast.payload]
          })
        }),
        { numRuns: 1000 }
      )
    })

    it("matches the observed bytes", () => {
      const out = Serializer.encodeUserBroadcastPush({
        joinRef: "9",
        ref: "10",
        topic: "realtime:room1",
        userEvent: "msg",
        meta: undefined,
        encoding: "json",
        payload: enc.encode(`{"hello":"world","n":1}`)
      })
      assert.deepStrictEqual([...out], [...observed])
    })

    it("refuses a field that does not fit a one-byte length", () => {
      assert.throws(
        () =>
          Serializer.encodeUserBroadcastPush({
            joinRef: null,
            ref: null,
            topic: "t".repeat(256),
            userEvent: "e",
            meta: undefined,
            encoding: "binary",
            payload: new Uint8Array(0)
          }),
        RangeError
      )
    })
  })
})

describe("Serializer.decodeText keeps a large v2 payload's JSON as sent", () => {
  const big = {
    type: "broadcast",
    event: "big",
    payload: { p: "y".repeat(Serializer.RAW_PAYLOAD_MIN), q: [1, "]", null] }
  }

  it("for a frame of RAW_PAYLOAD_MIN characters or more whose payload is an object: the same value, as written", () => {
    const topic = String.raw`realtime:big\"x]`
    const spaced = `[ "1" , "2" , ${JSON.stringify(topic)} , "broadcast" ,\n ${JSON.stringify(big, null, 1)} \n]`
    const decoded = Serializer.decodeText("2.0.0", spaced)
    assert.isTrue(Result.isSuccess(decoded))
    const message = Result.getOrThrow(decoded)
    assert.strictEqual(message.topic, topic)
    assert.strictEqual(message.payloadJson, JSON.stringify(big, null, 1))
    assert.deepStrictEqual(JSON.parse(message.payloadJson!), message.payload)
  })

  it("not for a small frame, a v1 frame, a frame with a sixth element or a payload that is not an object", () => {
    const small = Serializer.decodeText("2.0.0", JSON.stringify(["1", "2", "t", "broadcast", { a: 1 }]))
    assert.isUndefined(Result.getOrThrow(small).payloadJson)
    const v1 = Serializer.decodeText(
      "1.0.0",
      JSON.stringify({ topic: "t", event: "broadcast", payload: big, ref: "1" })
    )
    assert.isUndefined(Result.getOrThrow(v1).payloadJson)
    const six = Serializer.decodeText("2.0.0", JSON.stringify(["1", "2", "t", "broadcast", big, 1]))
    assert.isUndefined(Result.getOrThrow(six).payloadJson)
    const text = Serializer.decodeText("2.0.0", JSON.stringify(["1", "2", "t", "broadcast", "y".repeat(70_000)]))
    assert.isUndefined(Result.getOrThrow(text).payloadJson)
    const array = Serializer.decodeText("2.0.0", JSON.stringify(["1", "2", "t", "broadcast", ["y".repeat(70_000)]]))
    assert.isUndefined(Result.getOrThrow(array).payloadJson)
    const nullPayload = Serializer.decodeText("2.0.0", `["1","2","t","broadcast",null${" ".repeat(70_000)}]`)
    assert.isUndefined(Result.getOrThrow(nullPayload).payloadJson)
  })

  it("from RAW_PAYLOAD_MIN characters on, not one below", () => {
    const frameOf = (length: number) => {
      const head = `["1","2","t","broadcast",{"p":"`
      const tail = `"}]`
      return head + "y".repeat(length - head.length - tail.length) + tail
    }
    const below = Serializer.decodeText("2.0.0", frameOf(Serializer.RAW_PAYLOAD_MIN - 1))
    const at = Serializer.decodeText("2.0.0", frameOf(Serializer.RAW_PAYLOAD_MIN))
    assert.isUndefined(Result.getOrThrow(below).payloadJson)
    assert.strictEqual(Result.getOrThrow(at).payloadJson?.length, Serializer.RAW_PAYLOAD_MIN - 26)
  })

  it("not for a small payload padded to a large frame: the slice would keep the whole padded frame alive", () => {
    const payload = { type: "broadcast", event: "e", payload: {} }
    const padded = `["1","2","t","broadcast",${JSON.stringify(payload)}${" ".repeat(4_000_000)}]`
    const decoded = Result.getOrThrow(Serializer.decodeText("2.0.0", padded))
    assert.isUndefined(decoded.payloadJson)
    assert.deepStrictEqual(decoded.payload, payload)
    // Beside it, the same payload grown to the frame's size is kept as sent.
    const grown = { ...payload, payload: { p: "y".repeat(4_000_000) } }
    const kept = Result.getOrThrow(Serializer.decodeText("2.0.0", JSON.stringify(["1", "2", "t", "broadcast", grown])))
    assert.strictEqual(kept.payloadJson, JSON.stringify(grown))
  })
})

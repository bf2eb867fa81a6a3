import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { Frame, JoinConfig, ProtocolError, Serializer } from "../src/index.ts"

// Decoders face whatever a client sends: they must answer every input with a Result, never throw.
const numRuns = 2000
const versions: ReadonlyArray<Frame.Vsn> = [Frame.V1, Frame.V2]

const assertResult = (result: unknown): void => {
  assert.isTrue(Result.isResult(result))
  if (Result.isResult(result) && Result.isFailure(result))
    assert.instanceOf(result.failure, ProtocolError.ProtocolError)
}

// UTF-16 code units, lone surrogates included: what a broken client's text frame can contain.
const utf16String = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) })
const ref = fc.oneof(
  fc.constant(null),
  fc.string({ maxLength: 4 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant({})
)

// Names of Object.prototype members: a client string used as a plain object's key breaks on these.
const PROTO_NAMES = ["__proto__", "constructor", "toString", "prototype", "hasOwnProperty", "valueOf"] as const
const protoName = fc.constantFrom(...PROTO_NAMES)
const hostileKey = fc.oneof(protoName, fc.string({ maxLength: 6 }))

/** JSON object text with hostile keys, written by hand so that `__proto__` is an own key, as JSON.parse makes it. */
const hostileObject = (depth: number): fc.Arbitrary<string> =>
  fc.array(
    fc.tuple(
      hostileKey,
      depth <= 0
        ? fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v))
        : hostileObject(depth - 1)
    ),
    { maxLength: 4 }
  )
    .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`)

const texts: ReadonlyArray<readonly [string, fc.Arbitrary<string>]> = [
  ["fc.string", fc.string()],
  ["full Unicode strings", fc.string({ unit: "binary" })],
  ["UTF-16 strings with lone surrogates", utf16String],
  ["fc.json", fc.json()],
  ["JSON arrays of arbitrary values", fc.array(fc.jsonValue(), { maxLength: 8 }).map((a) => JSON.stringify(a))],
  [
    "plausible v2 frames",
    fc.tuple(ref, ref, fc.jsonValue(), fc.jsonValue(), fc.jsonValue()).map((t) => JSON.stringify(t))
  ],
  [
    "v2 frames with prototype-named topics, events and payload keys",
    fc.tuple(
      ref,
      ref,
      fc.oneof(protoName, protoName.map((n) => `realtime:${n}`)),
      fc.oneof(protoName, fc.constantFrom("phx_join", "broadcast", "presence")),
      hostileObject(2)
    )
      .map(([j, r, t, e, p]) =>
        `[${JSON.stringify(j)},${JSON.stringify(r)},${JSON.stringify(t)},${JSON.stringify(e)},${p}]`
      )
  ],
  [
    "v1 frames with prototype-named keys",
    fc.tuple(hostileObject(2), protoName).map(([p, n]) =>
      `{"topic":"realtime:${n}","event":"${n}","payload":${p},"ref":"1","${n}":1}`
    )
  ],
  [
    "plausible v1 frames",
    fc.record(
      { topic: fc.jsonValue(), event: fc.jsonValue(), payload: fc.jsonValue(), ref, join_ref: ref },
      { requiredKeys: [] }
    ).map((o) => JSON.stringify(o))
  ]
]

// Kind-3 frames built from real fields, then with lengths and the encoding byte sometimes off by a
// little, so that both the success path and every near-miss failure are reached.
const enc = new TextEncoder()
const fieldBytes = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: "binary", maxLength: 12 }).map((s) => enc.encode(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }) }
)
const metaBytes = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }).map((o) =>
    enc.encode(JSON.stringify(o))
  ),
  fc.uint8Array({ maxLength: 12 })
)
const payloadBytes = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => enc.encode(JSON.stringify(v))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }
)
const plausibleKind3 = fc
  .tuple(
    fc.array(fieldBytes, { minLength: 4, maxLength: 4 }),
    metaBytes,
    payloadBytes,
    fc.array(
      fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
      {
        minLength: 5,
        maxLength: 5
      }
    ),
    fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 1 }) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 255 })
    })
  )
  .map(([fields, meta, payload, skews, encoding]) => {
    const parts = [...fields, meta]
    const lengths = parts.map((p, i) => Math.min(255, Math.max(0, p.length + skews[i]!)))
    return Uint8Array.from([0x03, ...lengths, encoding, ...parts.flatMap((p) => [...p]), ...payload])
  })

const binaries: ReadonlyArray<readonly [string, fc.Arbitrary<Uint8Array>]> = [
  ["fc.uint8Array", fc.uint8Array({ maxLength: 300 })],
  ["byte arrays starting with 0x03", fc.uint8Array({ maxLength: 300 }).map((b) => Uint8Array.from([0x03, ...b]))],
  ["plausible kind-3 headers", plausibleKind3]
]

describe("Totality", () => {
  for (const [name, arbitrary] of texts) {
    it(`decodeText, decode and JoinConfig.parse on ${name}`, () => {
      fc.assert(
        fc.property(arbitrary, (text) => {
          assert.isArray(JoinConfig.parse(text).invalidFields)
          for (const vsn of versions) {
            assertResult(Serializer.decodeText(vsn, text))
            const inbound = Serializer.decode(vsn, text)
            assertResult(inbound)
            if (Result.isSuccess(inbound) && inbound.success._tag === "Message") {
              const config = JoinConfig.parse(inbound.success.message.payload)
              assert.isArray(config.invalidFields)
            }
          }
        }),
        { numRuns }
      )
    })
  }

  for (const [name, arbitrary] of binaries) {
    it(`decodeBinary and decode on ${name}`, () => {
      fc.assert(
        fc.property(arbitrary, (bytes) => {
          assertResult(Serializer.decodeBinary(bytes))
          for (const vsn of versions) assertResult(Serializer.decode(vsn, bytes))
        }),
        { numRuns }
      )
    })
  }

  it("the plausible kind-3 generator reaches both the success and the failure path", () => {
    const results = fc.sample(plausibleKind3, { numRuns: 2000, seed: 42 }).map((b) =>
      Result.isSuccess(Serializer.decodeBinary(b))
    )
    assert.isAbove(results.filter((ok) => ok).length, 100)
    assert.isAbove(results.filter((ok) => !ok).length, 100)
  })

  it("JoinConfig.parse on arbitrary JSON values", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (payload) => {
        const config = JoinConfig.parse(payload)
        assert.isArray(config.invalidFields)
        assert.isArray(config.postgresChanges)
      }),
      { numRuns }
    )
  })

  it("JoinConfig.parse keeps a prototype-named presence key as the key, and survives such names anywhere", () => {
    fc.assert(
      fc.property(protoName, hostileObject(2), hostileObject(1), (key, extra, presenceExtra) => {
        const text = `{"config":{"presence":{"key":${JSON.stringify(key)},"x":${presenceExtra}},"broadcast":${extra},${
          JSON.stringify(key)
        }:${extra}},${JSON.stringify(key)}:1}`
        const config = JoinConfig.parse(JSON.parse(text))
        assert.strictEqual(config.presenceKey, key)
        assert.isFalse(config.presenceEnabled)
      }),
      { numRuns }
    )
  })

  it("JoinConfig.parse on arbitrary JS values, including shapes JSON cannot produce", () => {
    const anything = fc.anything({
      withBigInt: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withDate: true
    })
    const joinLike = fc.record({
      config: fc.record({
        broadcast: anything,
        presence: fc.record({ key: anything, enabled: anything }),
        postgres_changes: anything,
        private: anything
      }),
      access_token: anything,
      user_token: anything
    }, { requiredKeys: [] })
    fc.assert(
      fc.property(fc.oneof(anything, joinLike), (payload) => {
        const config = JoinConfig.parse(payload)
        assert.isTrue(config.presenceKey === undefined || typeof config.presenceKey === "string")
        assert.isTrue(config.accessToken === undefined || typeof config.accessToken === "string")
      }),
      { numRuns }
    )
  })
})

import { assert, describe, it } from "@effect/vitest"
import { defaults, FRAME_ENVELOPE_BYTES, largestFrameBytes, limitProblems } from "../src/ConnectionConfig.ts"

describe("ConnectionConfig.limitProblems", () => {
  it("the defaults are consistent: the outbox holds two of the largest frames", () => {
    assert.deepStrictEqual(limitProblems(defaults), [])
    assert.isAtLeast(defaults.outboxLimitBytes, 2 * (defaults.maxPayloadBytes + FRAME_ENVELOPE_BYTES))
  })

  it("refuses a payload limit whose frame does not fit the outbox twice; accepts it at exactly twice", () => {
    const old = { ...defaults, outboxLimitBytes: 1_048_576 }
    const [problem] = limitProblems(old)
    assert.match(problem!, /^OUTBOX_LIMIT_BYTES=1048576 must be at least 6131072/)
    assert.deepStrictEqual(limitProblems({ ...old, outboxLimitBytes: 2 * largestFrameBytes(old) }), [])
  })

  it("counts the presence state of a full channel and a diff of two socket-sized metas", () => {
    const base = {
      ...defaults,
      maxPayloadBytes: 100_000,
      presenceMaxBytesPerSocket: 100_000,
      outboxLimitBytes: 1_000_000
    }
    assert.deepStrictEqual(limitProblems({ ...base, presenceMaxBytesPerChannel: 400_000 }), [])
    assert.lengthOf(limitProblems({ ...base, presenceMaxBytesPerChannel: 500_000 }), 1)
    assert.strictEqual(
      largestFrameBytes({ ...base, presenceMaxBytesPerChannel: 150_000 }),
      200_000 + FRAME_ENVELOPE_BYTES
    )
  })
})

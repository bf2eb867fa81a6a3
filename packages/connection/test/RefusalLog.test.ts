/** RefusalLog: at most N lines per (where, reason) per second, with the held-back count on the next line. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, References } from "effect"
import { TestClock } from "effect/testing"
import * as RefusalLog from "../src/RefusalLog.ts"

const capture = () => {
  const lines: Array<
    { readonly level: string; readonly message: unknown; readonly annotations: Record<string, unknown> }
  > = []
  const logger = Logger.make(({ logLevel, message, fiber }) => {
    lines.push({ level: logLevel, message, annotations: { ...fiber.getRef(References.CurrentLogAnnotations) } })
  })
  return { lines, layer: Logger.layer([logger]) }
}

describe("RefusalLog", () => {
  it("keeps 5 lines per key per second, reports the suppressed count, and keys are independent", () => {
    const state = new RefusalLog.RefusalLogState(5)
    const admitted = Array.from({ length: 8 }, () => state.admit("upgrade:MalformedJWT", 1_000))
    assert.deepStrictEqual(admitted, [0, 0, 0, 0, 0, undefined, undefined, undefined])
    assert.strictEqual(state.admit("join:Unauthorized", 1_000), 0)
    assert.strictEqual(state.admit("upgrade:MalformedJWT", 2_000), 3)
    assert.strictEqual(state.admit("upgrade:MalformedJWT", 2_001), 0)
  })

  it.effect("logs a signature failure as a warning with a JWT_SECRET hint, other refusals as info", () =>
    Effect.gen(function*() {
      const { lines, layer } = capture()
      const reason = { _tag: "JwtSignatureError", message: "Failed to validate JWT signature" }
      yield* RefusalLog.log("upgrade", reason).pipe(Effect.provide(layer))
      yield* RefusalLog.log("join", {
        _tag: "Unauthorized",
        message: `You do not have permissions to read from this Channel topic: ${"x".repeat(500)}`
      }).pipe(
        Effect.provide(layer)
      )
      yield* TestClock.adjust("1 second")
      assert.strictEqual(lines.length, 2)
      assert.strictEqual(lines[0]!.level, "Warn")
      assert.include(String(lines[0]!.annotations["hint"]), "JWT_SECRET")
      assert.strictEqual(lines[1]!.level, "Info")
      assert.isAtMost(String(lines[1]!.annotations["detail"]).length, 201)
    }).pipe(Effect.provideService(RefusalLog.RefusalLog, new RefusalLog.RefusalLogState(5))))

  it.effect("logLine writes one annotation-free line per refusal, rate-limited like log, with the held-back count", () =>
    Effect.gen(function*() {
      const { lines, layer } = capture()
      const reason = { _tag: "PayloadTooDeep", message: "JSON is nested more than 64 levels deep" }
      for (let i = 0; i < 3; i++) yield* RefusalLog.logLine("socket", reason).pipe(Effect.provide(layer))
      yield* TestClock.adjust("1 second")
      yield* RefusalLog.logLine("socket", reason).pipe(Effect.provide(layer))
      assert.deepStrictEqual(lines.map((l) => String(l.message)), [
        "socket refused: PayloadTooDeep: JSON is nested more than 64 levels deep",
        "socket refused: PayloadTooDeep: JSON is nested more than 64 levels deep (2 suppressed)"
      ])
      assert.deepStrictEqual(lines[0]!.annotations, {})
    }).pipe(Effect.provideService(RefusalLog.RefusalLog, new RefusalLog.RefusalLogState(1))))
})

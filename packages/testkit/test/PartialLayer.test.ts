import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit } from "effect"
import { PartialLayer, partialLayer } from "../src/index.ts"

class Broker extends Context.Service<Broker, {
  readonly publish: (topic: string, payload: string) => Effect.Effect<number>
  readonly history: (topic: string) => Effect.Effect<ReadonlyArray<string>>
  readonly size: Effect.Effect<number>
}>()("@wedsync/hub/Broker") {}

const dieMessage = <A, E>(exit: Exit.Exit<A, E>): string => {
  assert.isTrue(Exit.isFailure(exit))
  if (!Exit.isFailure(exit)) return ""
  const defect = exit.cause.reasons.find(Cause.isDieReason)
  assert.isDefined(defect, Cause.pretty(exit.cause))
  return defect === undefined ? "" : String((defect.defect as Error).message)
}

describe("PartialLayer", () => {
  it.effect("supplied methods work", () =>
    Effect.gen(function*() {
      const broker = yield* Broker
      assert.strictEqual(yield* broker.publish("room", "hi"), 2)
    }).pipe(Effect.provide(partialLayer(Broker, { publish: (_topic, payload) => Effect.succeed(payload.length) }))))

  it.effect("a missing method dies naming the service key and the method", () =>
    Effect.gen(function*() {
      const broker = yield* Broker
      const exit = yield* Effect.exit(broker.history("room"))
      assert.strictEqual(dieMessage(exit), "unimplemented @wedsync/hub/Broker.history")
    }).pipe(Effect.provide(partialLayer(Broker, {}))))

  it.effect("a missing Effect-valued member dies when yielded", () =>
    Effect.gen(function*() {
      const broker = yield* Broker
      const exit = yield* Effect.exit(broker.size)
      assert.strictEqual(dieMessage(exit), "unimplemented @wedsync/hub/Broker.size")
    }).pipe(Effect.provide(PartialLayer.partialLayer(Broker, { publish: () => Effect.succeed(0) }))))

  it("the double is not mistaken for a promise", async () => {
    const double = PartialLayer.partial(Broker, {})
    assert.isUndefined((double as unknown as { then?: unknown }).then)
    assert.strictEqual(await Promise.resolve(double), double)
  })
})

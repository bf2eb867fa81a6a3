import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Schedule } from "effect"
import type { Transaction } from "../src/ChangeEvent.ts"
import { backoff, Replication, ReplicationFeed } from "../src/Replication.ts"

describe("Replication.backoff", () => {
  it.effect("waits 200 ms after the first failure, doubling up to 5 s", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(backoff)
      const delays: Array<number> = []
      for (let i = 0; i < 8; i++) delays.push(Duration.toMillis((yield* step(0, undefined))[1]))
      assert.deepStrictEqual(delays, [200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000])
    }))
})

describe("Replication.layerMemory", () => {
  const tables = [{ schema: "public", table: "b", columns: [{ name: "id", type: "int4" }], primaryKey: ["id"] }, {
    schema: "public",
    table: "a",
    columns: [],
    primaryKey: []
  }]
  const transaction: Transaction = { lsn: "0/1", commitTimestamp: "2026-06-13T12:00:00.000Z", changes: [] }

  it.effect("answers from its tables, and streams committed transactions once run, completing a commit after its consumer", () =>
    Effect.gen(function*() {
      const replication = yield* Replication
      const feed = yield* ReplicationFeed
      assert.deepStrictEqual(yield* replication.relation("public", "b"), {
        columns: [{ name: "id", type: "int4" }],
        primaryKey: ["id"]
      })
      assert.isUndefined(yield* replication.relation("public", "c"))
      assert.deepStrictEqual(yield* replication.publishedTables("public"), ["a", "b"])
      assert.deepStrictEqual(yield* replication.status, { _tag: "Starting" })
      const gate = yield* Deferred.make<void>()
      const seen: Array<Transaction> = []
      yield* Effect.forkScoped(
        replication.run((tx) => Effect.andThen(Deferred.await(gate), Effect.sync(() => void seen.push(tx))))
      )
      yield* replication.ready
      assert.deepStrictEqual(yield* replication.status, { _tag: "Streaming" })
      const committing = yield* Effect.forkScoped(feed.commit(transaction))
      yield* Effect.yieldNow
      assert.isUndefined(committing.pollUnsafe())
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(committing)
      assert.deepStrictEqual(seen, [transaction])
    }).pipe(Effect.provide(Replication.layerMemory({ tables }))))
})

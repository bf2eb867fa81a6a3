/** `WORKERS`: its values, the refusal without `REDIS_URL` beside the accepted case, restart backoff, per-worker slots. */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { availableParallelism } from "node:os"
import { checkEnvironment, MAX_WORKERS, parseWorkers, workersConfig } from "../src/GatewayConfig.ts"
import { workerSlotName } from "../src/GatewayLayer.ts"
import { restartDelayMs } from "../src/Primary.ts"

const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

/** The problems `checkEnvironment` reports for `env` (empty when it passes); it also prints them, as at start. */
const problemsOf = (env: Record<string, string>) =>
  checkEnvironment.pipe(
    withEnv(env),
    Effect.exit,
    Effect.map((exit) => (Exit.isSuccess(exit) ? "" : String(exit.cause)))
  )

describe("WORKERS", () => {
  it("is a count from 1 to the maximum, or auto for one per core", () => {
    assert.strictEqual(parseWorkers("1", 8), 1)
    assert.strictEqual(parseWorkers("4", 8), 4)
    assert.strictEqual(parseWorkers("auto", 8), 8)
    assert.strictEqual(parseWorkers(String(MAX_WORKERS), 8), MAX_WORKERS)
    for (const bad of ["0", "-1", "2.5", "many", "", String(MAX_WORKERS + 1)]) {
      assert.isUndefined(parseWorkers(bad, 8), bad)
    }
  })

  it.effect("defaults to 1; auto follows the machine", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* workersConfig.pipe(withEnv({})), 1)
      assert.strictEqual(yield* workersConfig.pipe(withEnv({ WORKERS: "auto" })), availableParallelism())
    }))

  it.effect("more than one is refused without REDIS_URL and accepted with it; one needs no Redis", () =>
    Effect.gen(function*() {
      assert.include(yield* problemsOf({ WORKERS: "2" }), `WORKERS="2" (2 processes): needs REDIS_URL`)
      assert.strictEqual(yield* problemsOf({ WORKERS: "2", REDIS_URL: "redis://127.0.0.1:6379" }), "")
      assert.strictEqual(yield* problemsOf({ WORKERS: "1" }), "")
      assert.include(yield* problemsOf({ WORKERS: "0" }), `WORKERS="0": must be auto or an integer from 1 to 256`)
    }))

  it("restarts a worker that keeps exiting after 250 ms, doubling up to 30 s", () => {
    assert.deepStrictEqual([1, 2, 3, 4, 8, 9, 50].map(restartDelayMs), [250, 500, 1000, 2000, 30_000, 30_000, 30_000])
  })

  it("gives worker 1 the configured replication slot and every other worker its own", () => {
    assert.strictEqual(workerSlotName("wedsync_realtime", 1), "wedsync_realtime")
    assert.strictEqual(workerSlotName("wedsync_realtime", 3), "wedsync_realtime_w3")
  })
})

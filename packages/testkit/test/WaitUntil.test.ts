import { assert, describe, it } from "@effect/vitest"
import { waitUntil } from "../src/index.ts"

describe("waitUntil", () => {
  it("returns the first probed value that satisfies the condition", async () => {
    let n = 0
    assert.strictEqual(await waitUntil("n to reach 3", () => ++n, (v) => v >= 3, { intervalMs: 1 }), 3)
  })

  it("awaits asynchronous probes", async () => {
    let n = 0
    assert.strictEqual(
      await waitUntil("n to reach 2", () => Promise.resolve(++n), (v) => v === 2, { intervalMs: 1 }),
      2
    )
  })

  it("rejects after the timeout, naming the wait and the last value", async () => {
    const error = await waitUntil("the impossible", () => 7, () => false, { timeoutMs: 30, intervalMs: 5 })
      .then(() => undefined, (e: Error) => e)
    assert.instanceOf(error, Error)
    assert.include(error!.message, "waiting for the impossible; last value 7")
  })
})

import { assert, describe, it } from "@effect/vitest"
import { AdminAttempts } from "../src/AdminAttempts.ts"

describe("AdminAttempts", () => {
  const options = { maxFailures: 3, windowMs: 60_000, maxAddresses: 4 }

  it("blocks an address after its failures for the rest of its window, and only that address", () => {
    const attempts = new AdminAttempts(options)
    for (let i = 0; i < 2; i++) attempts.failed("a", 1_000 + i)
    assert.isUndefined(attempts.blockedFor("a", 2_000))
    attempts.failed("a", 2_000)
    assert.strictEqual(attempts.blockedFor("a", 2_000), 59)
    assert.strictEqual(attempts.blockedFor("a", 60_500), 1)
    assert.isUndefined(attempts.blockedFor("b", 2_000))
    // The window began at the first failure: over once it has passed, with a fresh count after.
    assert.isUndefined(attempts.blockedFor("a", 61_000))
    attempts.failed("a", 61_000)
    assert.isUndefined(attempts.blockedFor("a", 61_001))
  })

  it("holds at most maxAddresses: expired windows go first, then the oldest", () => {
    const attempts = new AdminAttempts(options)
    for (const address of ["a", "b", "c", "d"]) attempts.failed(address, 0)
    attempts.failed("e", 30_000)
    assert.strictEqual(attempts.size, 4)
    // Four live windows and a fifth address: the oldest, "a", made room; its next failures start a new window.
    for (let i = 0; i < 2; i++) attempts.failed("a", 30_001)
    assert.isUndefined(attempts.blockedFor("a", 30_002))
    attempts.failed("a", 30_001)
    assert.isDefined(attempts.blockedFor("a", 30_002))
    // At 70 s every window of the first four has expired: they make room before anything live is evicted.
    attempts.failed("f", 70_000)
    attempts.failed("g", 70_000)
    assert.isDefined(attempts.blockedFor("a", 70_001))
    assert.strictEqual(attempts.size, 4)
    assert.isUndefined(attempts.blockedFor("b", 70_001))
  })
})

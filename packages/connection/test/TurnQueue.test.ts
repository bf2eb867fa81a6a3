import { assert, describe, it } from "@effect/vitest"
import { setImmediate as nextTurn } from "node:timers/promises"
import { TurnQueue } from "../src/internal/TurnQueue.ts"

describe("TurnQueue", () => {
  it("handles at most perTurn items per event-loop turn, in arrival order, and all of them in the end", async () => {
    const handledPerTurn: Array<Array<number>> = []
    let current: Array<number> = []
    const queue = new TurnQueue<number>(3, (n) => current.push(n))
    for (let i = 0; i < 8; i++) queue.push(i)
    assert.strictEqual(queue.size, 8)
    // Nothing runs in the turn that pushed.
    assert.deepStrictEqual(current, [])
    while (queue.size > 0) {
      await nextTurn()
      handledPerTurn.push(current)
      current = []
    }
    assert.deepStrictEqual(handledPerTurn.flat(), [0, 1, 2, 3, 4, 5, 6, 7])
    assert.isTrue(handledPerTurn.every((turn) => turn.length <= 3), JSON.stringify(handledPerTurn))
    assert.isAtLeast(handledPerTurn.filter((turn) => turn.length > 0).length, 3)
  })

  it("leaves an item pushed by a handler for the next turn, even with room left in this one", async () => {
    const handled: Array<string> = []
    const queue: TurnQueue<string> = new TurnQueue(2, (item) => {
      handled.push(item)
      if (item === "a") queue.push("a-child")
    })
    queue.push("a")
    await nextTurn()
    assert.deepStrictEqual(handled, ["a"])
    await nextTurn()
    assert.deepStrictEqual(handled, ["a", "a-child"])
    queue.push("later")
    await nextTurn()
    assert.deepStrictEqual(handled.at(-1), "later")
  })

  it("gives back what waits, unhandled, on takeAll, also when a handler calls it mid-turn", async () => {
    const handled: Array<number> = []
    const queue = new TurnQueue<number>(16, (n) => handled.push(n))
    for (let i = 0; i < 5; i++) queue.push(i)
    assert.deepStrictEqual(queue.takeAll(), [0, 1, 2, 3, 4])
    await nextTurn()
    assert.deepStrictEqual(handled, [])

    let taken: Array<number> = []
    const stopping: TurnQueue<number> = new TurnQueue(4, (n) => {
      handled.push(n)
      if (n === 10) taken = stopping.takeAll()
    })
    for (let i = 10; i < 16; i++) stopping.push(i)
    await nextTurn()
    await nextTurn()
    assert.deepStrictEqual(handled, [10])
    assert.deepStrictEqual(taken, [11, 12, 13, 14, 15])
    assert.strictEqual(stopping.size, 0)
  })

  it("keeps the backlog going after a handler throws", async () => {
    const handled: Array<number> = []
    const queue = new TurnQueue<number>(2, (n) => {
      if (n === 0) throw new Error("boom")
      handled.push(n)
    })
    for (let i = 0; i < 4; i++) queue.push(i)
    const thrown = await new Promise<unknown>((resolve) => process.once("uncaughtException", resolve))
    assert.match(String(thrown), /boom/)
    while (queue.size > 0) await nextTurn()
    assert.deepStrictEqual(handled, [1, 2, 3])
  })

  it("takes a burst of 5,000 through in order", async () => {
    const handled: Array<number> = []
    const queue = new TurnQueue<number>(16, (n) => handled.push(n))
    for (let i = 0; i < 5000; i++) queue.push(i)
    while (queue.size > 0) await nextTurn()
    assert.strictEqual(handled.length, 5000)
    assert.isTrue(handled.every((n, i) => n === i))
  })
})

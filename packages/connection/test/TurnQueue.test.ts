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

  it("keeps the bound when handling an item pushes more, and handles what is pushed later", async () => {
    const handled: Array<string> = []
    let turnCount = 0
    const queue: TurnQueue<string> = new TurnQueue(2, (item) => {
      handled.push(item)
      turnCount++
      if (item === "a") queue.push("a-child")
    })
    queue.push("a")
    queue.push("b")
    queue.push("c")
    await nextTurn()
    assert.deepStrictEqual(handled, ["a", "b"])
    assert.strictEqual(turnCount, 2)
    while (queue.size > 0) await nextTurn()
    assert.deepStrictEqual(handled, ["a", "b", "c", "a-child"])
    queue.push("later")
    await nextTurn()
    assert.deepStrictEqual(handled.at(-1), "later")
  })

  it("gives back what waits, unhandled, on takeAll; a burst of 5,000 goes through in order", async () => {
    const handled: Array<number> = []
    const queue = new TurnQueue<number>(16, (n) => handled.push(n))
    for (let i = 0; i < 5; i++) queue.push(i)
    assert.deepStrictEqual(queue.takeAll(), [0, 1, 2, 3, 4])
    await nextTurn()
    assert.deepStrictEqual(handled, [])
    for (let i = 0; i < 5000; i++) queue.push(i)
    while (queue.size > 0) await nextTurn()
    assert.strictEqual(handled.length, 5000)
    assert.isTrue(handled.every((n, i) => n === i))
  })
})

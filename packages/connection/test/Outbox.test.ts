import { assert, describe, it } from "@effect/vitest"
import { WsFrame } from "@wedsync/protocol"
import { Effect } from "effect"
import { Outbox, WriteCoalescer } from "../src/Outbox.ts"
import { TestSocket } from "../src/testing/index.ts"

const frame = (text: string) => WsFrame.text(text)

/** An outbox over a `TestSocket` wire, flushed by hand. */
const setup = (limitBytes = 1_000) => {
  const socket = new TestSocket.TestSocket()
  const manual = TestSocket.manualCoalescer()
  let overflows = 0
  const outbox = new Outbox(socket.wire, manual.coalescer, limitBytes, () => overflows++)
  return { socket, manual, outbox, overflows: () => overflows }
}

const texts = (socket: TestSocket.TestSocket) => socket.frames.map((f) => (f._tag === "Text" ? f.text : "<binary>"))

describe("Outbox", () => {
  it("several enqueues in one turn become one write of their concatenation", () => {
    const { socket, manual, outbox } = setup()
    const frames = [frame("[1]"), frame("[2]"), frame("[3]")]
    for (const f of frames) assert.isTrue(outbox.enqueue(f))
    assert.strictEqual(manual.scheduled, 1, "one flush is scheduled for the whole turn")
    assert.strictEqual(socket.writes.length, 0)
    assert.strictEqual(manual.flush(), 1)
    assert.strictEqual(socket.writes.length, 1)
    assert.deepStrictEqual(Array.from(socket.writes[0]!), frames.flatMap((f) => Array.from(f)))
    assert.deepStrictEqual(texts(socket), ["[1]", "[2]", "[3]"])
  })

  it("a single frame is written as is, without a copy", () => {
    const { socket, manual, outbox } = setup()
    const only = frame("[1]")
    outbox.enqueue(only)
    manual.flush()
    assert.strictEqual(socket.writes[0], only)
  })

  it("the next turn schedules a new flush", () => {
    const { socket, manual, outbox } = setup()
    outbox.enqueue(frame("[1]"))
    manual.flush()
    outbox.enqueue(frame("[2]"))
    outbox.enqueue(frame("[3]"))
    assert.strictEqual(manual.flush(), 1)
    assert.strictEqual(socket.writes.length, 2)
    assert.deepStrictEqual(texts(socket), ["[1]", "[2]", "[3]"])
    assert.strictEqual(manual.flush(), 0, "nothing left to flush")
  })

  it("one coalescer flushes every dirty outbox of the turn in one run", () => {
    const manual = TestSocket.manualCoalescer()
    const a = new TestSocket.TestSocket()
    const b = new TestSocket.TestSocket()
    const outA = new Outbox(a.wire, manual.coalescer, 1_000, () => {})
    const outB = new Outbox(b.wire, manual.coalescer, 1_000, () => {})
    outA.enqueue(frame('["a"]'))
    outB.enqueue(frame('["b"]'))
    outA.enqueue(frame('["a2"]'))
    assert.strictEqual(manual.flush(), 1)
    assert.deepStrictEqual([a.writes.length, b.writes.length], [1, 1])
    assert.deepStrictEqual(texts(a), ['["a"]', '["a2"]'])
  })

  it("the coalescer's reused lists flush each turn's outboxes once, and only those", () => {
    const queued: Array<() => void> = []
    const reports: Array<[number, number]> = []
    const coalescer = new WriteCoalescer(
      (run) => void queued.push(run),
      (sockets, frames) => void reports.push([sockets, frames])
    )
    const manual = { flush: () => queued.splice(0).forEach((run) => run()) }
    const [a, b, c] = [new TestSocket.TestSocket(), new TestSocket.TestSocket(), new TestSocket.TestSocket()]
    const [outA, outB, outC] = [a, b, c].map((s) => new Outbox(s.wire, coalescer, 1_000, () => {}))
    outA!.enqueue(frame("[1]"))
    outB!.enqueue(frame("[2]"))
    outB!.enqueue(frame("[3]"))
    manual.flush()
    outC!.enqueue(frame("[4]"))
    manual.flush()
    outA!.enqueue(frame("[5]"))
    manual.flush()
    assert.deepStrictEqual(reports, [[2, 3], [1, 1], [1, 1]])
    assert.deepStrictEqual([texts(a), texts(b), texts(c)], [["[1]", "[5]"], ["[2]", "[3]"], ["[4]"]])
    assert.deepStrictEqual([a.writes.length, b.writes.length, c.writes.length], [2, 1, 1])
  })

  it("up to the limit is accepted; one byte over closes the outbox once and drops what was queued", () => {
    const f = frame("[1]") // 5 bytes
    const { socket, manual, outbox, overflows } = setup(10)
    assert.isTrue(outbox.enqueue(f))
    assert.isTrue(outbox.enqueue(f), "10 of 10 bytes is within the limit")
    assert.isFalse(outbox.enqueue(frame("[]")), "12 bytes is over")
    assert.strictEqual(overflows(), 1)
    assert.isTrue(outbox.isClosed)
    assert.isFalse(outbox.enqueue(f))
    assert.isFalse(outbox.enqueue(f))
    assert.strictEqual(overflows(), 1, "the overflow is reported once")
    manual.flush()
    assert.strictEqual(socket.writes.length, 0, "queued frames are dropped")
  })

  it("the limit counts the bytes the socket has not sent yet", () => {
    const { socket, manual, outbox, overflows } = setup(10)
    socket.bufferedBytes = 5
    assert.isTrue(outbox.enqueue(frame("[1]")), "5 buffered + 5 queued = 10")
    manual.flush()
    assert.strictEqual(socket.writes.length, 1)
    socket.bufferedBytes = 6
    assert.isFalse(outbox.enqueue(frame("[2]")), "6 buffered + 5 = 11")
    assert.strictEqual(overflows(), 1)
  })

  it("one frame larger than the limit is taken when nothing is queued or unsent; a backlog still overflows", () => {
    const { socket, manual, outbox, overflows } = setup(10)
    const big = frame(`["${"x".repeat(30)}"]`)
    assert.isTrue(outbox.enqueue(big), "a reader that keeps up gets the large frame")
    manual.flush()
    assert.strictEqual(socket.writes.length, 1)
    assert.strictEqual(overflows(), 0)
    socket.bufferedBytes = 0
    assert.isTrue(outbox.enqueue(big), "sent: the next one too")
    // Paused reader: the first frame is still unsent, so the next one is a backlog past the bound.
    socket.bufferedBytes = big.length
    manual.flush()
    assert.isFalse(outbox.enqueue(frame("[1]")))
    assert.strictEqual(overflows(), 1)
  })

  it("flush after close writes nothing; close drops the queue", () => {
    const { socket, manual, outbox, overflows } = setup()
    outbox.enqueue(frame("[1]"))
    outbox.close()
    assert.strictEqual(manual.flush(), 1)
    outbox.flush()
    assert.strictEqual(socket.writes.length, 0)
    assert.isFalse(outbox.enqueue(frame("[2]")))
    assert.strictEqual(overflows(), 0, "a deliberate close is not an overflow")
  })

  it.effect("the default coalescer writes on the next event-loop turn", () =>
    Effect.gen(function*() {
      const socket = new TestSocket.TestSocket()
      const outbox = new Outbox(socket.wire, new WriteCoalescer(), 1_000, () => {})
      outbox.enqueue(frame("[1]"))
      outbox.enqueue(frame("[2]"))
      assert.strictEqual(socket.writes.length, 0)
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      assert.strictEqual(socket.writes.length, 1)
      assert.deepStrictEqual(texts(socket), ["[1]", "[2]"])
    }))
})

/**
 * Joins a client sends together are opened together: every channel exists and waits for its topic's subscription
 * (`Broker.subscribed`, a Redis or upstream round trip) at the same time, not one round trip after another, and the
 * client still gets its answers in the order it sent the joins, with what it sent after them after them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Broker, Publication } from "@wedsync/hub"
import { Deferred, Effect, Layer, Queue, type Scope } from "effect"
import { TestSocket } from "../src/testing/index.ts"

type Message = Extract<TestSocket.Received, { _tag: "Message" }>

const messageOf = (received: TestSocket.Received | undefined): Message => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return received
}
const statusOf = (received: TestSocket.Received | undefined) =>
  (messageOf(received).payload as { readonly status?: unknown }).status

/**
 * A broker that reports each topic the hub joins (where a real broker starts the topic's subscription) to `asked`,
 * and whose `subscribed` answers once `live` is done.
 */
const gatedBroker = Effect.gen(function*() {
  const asked = yield* Queue.unbounded<Publication.TopicKey>()
  const live = yield* Deferred.make<void>()
  const broker = Layer.succeed(Broker.Broker, {
    publish: () => Effect.void,
    receive: () => Effect.void,
    join: (key) => Queue.offerUnsafe(asked, key),
    leave: () => {},
    settled: Effect.void,
    subscribed: () => Effect.as(Deferred.await(live), true),
    onGap: () => Effect.void,
    state: Effect.succeed("connected" as const)
  })
  return { asked, live, broker }
})

const layer = (broker: Layer.Layer<Broker.Broker>) =>
  TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, undefined, broker)

/** Runs `test` against actors whose broker is `gatedBroker`'s. */
const withGatedBroker = <A, E>(
  test: (
    gate: Effect.Success<typeof gatedBroker>
  ) => Effect.Effect<A, E, Layer.Success<ReturnType<typeof layer>> | Scope.Scope>
) => Effect.flatMap(gatedBroker, (gate) => test(gate).pipe(Effect.scoped, Effect.provide(layer(gate.broker))))

describe("joins sent together", () => {
  it.live("wait for their topics together, and are answered in the order sent, a refused one in its place", () =>
    withGatedBroker(({ asked, live }) =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const topics = Array.from({ length: 10 }, (_, i) => `realtime:room-${i}`)
        // The sixth is refused (no topic name); the nine others are accepted.
        topics[5] = "realtime:"
        const refs = topics.map((topic) => client.join(topic))
        // Every accepted channel's topic is being subscribed before any is answered: one join after the other, only
        // the first would be until the broker answered it.
        const waiting = yield* Queue.takeN(asked, 9).pipe(Effect.timeout("5 seconds"))
        assert.deepStrictEqual(
          [...waiting].sort(),
          topics.filter((t) => t !== "realtime:").map((t) => Publication.topicKey(t, false)).sort()
        )
        // Nothing is answered before the topics are.
        assert.strictEqual(client.socket.frames.length, 0)
        yield* Deferred.succeed(live, undefined)
        const replies = yield* client.next(10)
        assert.deepStrictEqual(replies.map((r) => messageOf(r).ref), refs)
        assert.deepStrictEqual(
          replies.map(statusOf),
          topics.map((t) => (t === "realtime:" ? "error" : "ok"))
        )
      })
    ))

  it.live("a leave sent right after its join is answered after the join, and closes the channel", () =>
    withGatedBroker(({ asked, live }) =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const joinRef = client.join("realtime:room")
        const leaveRef = client.nextRef()
        client.push(joinRef, leaveRef, "realtime:room", "phx_leave", {})
        yield* Queue.take(asked).pipe(Effect.timeout("5 seconds"))
        yield* Deferred.succeed(live, undefined)
        const [join, leave, close] = (yield* client.next(3)).map(messageOf)
        assert.deepStrictEqual([join?.ref, join?.event, statusOf(join)], [joinRef, "phx_reply", "ok"])
        assert.deepStrictEqual([leave?.ref, leave?.event, statusOf(leave)], [leaveRef, "phx_reply", "ok"])
        assert.deepStrictEqual([close?.joinRef, close?.event], [joinRef, "phx_close"])
      })
    ))

  it.live("a second join of the same topic replaces a channel that was answered first", () =>
    withGatedBroker(({ live }) =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        yield* Deferred.succeed(live, undefined)
        const first = client.join("realtime:room")
        const second = client.join("realtime:room")
        const [reply1, close, reply2] = (yield* client.next(3)).map(messageOf)
        assert.deepStrictEqual([reply1?.ref, statusOf(reply1)], [first, "ok"])
        assert.deepStrictEqual([close?.joinRef, close?.event], [first, "phx_close"])
        assert.deepStrictEqual([reply2?.ref, statusOf(reply2)], [second, "ok"])
      })
    ))
})

import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Result } from "effect"
import { Broker, Hub, Publication } from "../src/index.ts"
import { TestSink } from "../src/testing/index.ts"

const ROOM = "realtime:room1"
const roomKey = Publication.topicKey(ROOM, false)

const hello = Publication.json(
  ROOM,
  false,
  "broadcast",
  '{"type":"broadcast","event":"msg","payload":{"hello":"world","n":1}}'
)

const userBroadcast = (encoding: "json" | "binary", payload: Uint8Array, topic = ROOM, isPrivate = false) => {
  const publication = Publication.userBroadcast(topic, isPrivate, "msg", encoding, payload)
  if (Result.isFailure(publication)) throw new Error(publication.failure.message)
  return publication.success
}

const enc = new TextEncoder()

/** Adds `count` recording sinks of one vsn to `key` until the test's scope closes. */
const sinks = (hub: Hub.HubShape, key: Publication.TopicKey, vsn: "1.0.0" | "2.0.0", count: number) =>
  Effect.forEach(Array.from({ length: count }), () => {
    const sink = TestSink.make(vsn)
    return Effect.as(
      Effect.acquireRelease(Effect.sync(() => hub.add(key, sink)), () => Effect.sync(() => hub.remove(key, sink))),
      sink
    )
  })

/** A hub of its own, on its own node of `bus`. `fresh` keeps two hubs of one test apart. */
const nodeOf = (bus: Broker.MemoryBus) =>
  Layer.build(Layer.fresh(Hub.Hub.layer).pipe(Layer.provide(Broker.Broker.layerMemoryBus(bus)))).pipe(
    Effect.map((context) => Context.get(context, Hub.Hub))
  )

describe("Hub", () => {
  it.effect("publishLocal reaches this node's subscribers only; a watcher sees other nodes' publications and vacated topics", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const bus = new Broker.MemoryBus()
        const a = yield* nodeOf(bus)
        const b = yield* nodeOf(bus)
        const onA = TestSink.make("2.0.0")
        const onB = TestSink.make("2.0.0")
        a.add(roomKey, onA)
        b.add(roomKey, onB)
        const seen: Array<string> = []
        const vacated: Array<string> = []
        yield* b.watch({ remote: (p) => void seen.push(p.event), vacated: (key) => void vacated.push(key) })
        assert.strictEqual(a.publishLocal(hello), 1)
        assert.deepStrictEqual([onA.frames.length, onB.frames.length, seen.length], [1, 0, 0])
        // Beside: a publish reaches the other node, and its watcher.
        yield* a.publish(Publication.json(ROOM, false, "presence_diff", "{}"))
        assert.deepStrictEqual([onA.frames.length, onB.frames.length], [2, 1])
        assert.deepStrictEqual(seen, ["presence_diff"])
        b.remove(roomKey, onB)
        assert.deepStrictEqual(vacated, [roomKey])
      })
    ))

  it.effect("fans one publication out to every subscriber, once each", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const all = yield* sinks(hub, roomKey, "2.0.0", 5)
      const delivered = yield* hub.publish(hello)
      assert.strictEqual(delivered, 5)
      for (const sink of all) assert.strictEqual(sink.frames.length, 1)
      assert.strictEqual(hub.subscriberCount(roomKey), 5)
      assert.strictEqual(hub.topicCount(), 1)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  it.effect("skips `except`, the sender of a `self: false` broadcast", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const [sender, ...others] = yield* sinks(hub, roomKey, "2.0.0", 4)
      const delivered = yield* hub.publish(hello, sender)
      assert.strictEqual(delivered, 3)
      assert.strictEqual(sender!.frames.length, 0)
      for (const sink of others) assert.strictEqual(sink.frames.length, 1)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  it.effect("a topic with no subscribers delivers nothing", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      assert.strictEqual(yield* hub.publish(hello), 0)
      assert.strictEqual(hub.topicCount(), 0)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  describe("frames per serializer", () => {
    it.effect("a JSON publication is an object for v1 and an array for v2", () =>
      Effect.gen(function*() {
        const hub = yield* Hub.Hub
        const [v1] = yield* sinks(hub, roomKey, "1.0.0", 1)
        const [v2] = yield* sinks(hub, roomKey, "2.0.0", 1)
        yield* hub.publish(hello)
        const payload = { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } }
        assert.deepStrictEqual(v1!.decoded(), [{
          _tag: "Text",
          text: `{"topic":"realtime:room1","event":"broadcast","payload":${JSON.stringify(payload)},"ref":null}`,
          json: { topic: ROOM, event: "broadcast", payload, ref: null }
        }])
        const [frame] = v2!.decoded()
        assert.strictEqual(frame?._tag, "Text")
        if (frame?._tag === "Text") assert.deepStrictEqual(frame.json, [null, null, ROOM, "broadcast", payload])
      }).pipe(Effect.provide(Hub.Hub.layerMemory)))

    it.effect("a user broadcast is binary kind 4 for v2 and the JSON broadcast shape for v1", () =>
      Effect.gen(function*() {
        const hub = yield* Hub.Hub
        const [v1] = yield* sinks(hub, roomKey, "1.0.0", 1)
        const [v2] = yield* sinks(hub, roomKey, "2.0.0", 1)
        yield* hub.publish(userBroadcast("json", enc.encode('{"hello":"world","n":1}')))
        const [binary] = v2!.decoded()
        assert.strictEqual(binary?._tag, "Binary")
        if (binary?._tag === "Binary") {
          assert.strictEqual(binary.bytes[0], 4)
          assert.strictEqual(binary.broadcast.topic, ROOM)
          assert.strictEqual(binary.broadcast.userEvent, "msg")
          assert.strictEqual(binary.broadcast.meta, undefined)
          assert.strictEqual(binary.broadcast.encoding, "json")
          assert.deepStrictEqual(JSON.parse(new TextDecoder().decode(binary.broadcast.payload)), {
            hello: "world",
            n: 1
          })
        }
        const [text] = v1!.decoded()
        assert.strictEqual(text?._tag, "Text")
        if (text?._tag === "Text") {
          assert.deepStrictEqual(text.json, {
            topic: ROOM,
            event: "broadcast",
            payload: { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } },
            ref: null
          })
        }
      }).pipe(Effect.provide(Hub.Hub.layerMemory)))

    it.effect("a binary user broadcast reaches v2 sinks only", () =>
      Effect.gen(function*() {
        const hub = yield* Hub.Hub
        const v1 = yield* sinks(hub, roomKey, "1.0.0", 2)
        const [v2] = yield* sinks(hub, roomKey, "2.0.0", 1)
        const delivered = yield* hub.publish(userBroadcast("binary", new Uint8Array([1, 2, 3, 255])))
        assert.strictEqual(delivered, 1)
        for (const sink of v1) assert.strictEqual(sink.frames.length, 0)
        const [frame] = v2!.decoded()
        if (frame?._tag !== "Binary") return assert.fail("expected a binary frame")
        assert.strictEqual(frame.broadcast.encoding, "binary")
        assert.deepStrictEqual(Array.from(frame.broadcast.payload), [1, 2, 3, 255])
      }).pipe(Effect.provide(Hub.Hub.layerMemory)))

    it.effect("each frame is encoded once per publication: every sink of a vsn gets the same bytes", () =>
      Effect.gen(function*() {
        const hub = yield* Hub.Hub
        const v1 = yield* sinks(hub, roomKey, "1.0.0", 3)
        const v2 = yield* sinks(hub, roomKey, "2.0.0", 3)
        yield* hub.publish(userBroadcast("json", enc.encode('{"n":1}')))
        const v2Frame = v2[0]!.frames[0]!
        const v1Frame = v1[0]!.frames[0]!
        for (const sink of v2) assert.strictEqual(sink.frames[0], v2Frame)
        for (const sink of v1) assert.strictEqual(sink.frames[0], v1Frame)
        assert.notStrictEqual(v1Frame, v2Frame)
        // A second publication is encoded anew, not served from a stale cache.
        yield* hub.publish(userBroadcast("json", enc.encode('{"n":2}')))
        assert.notStrictEqual(v2[0]!.frames[1], v2Frame)
        for (const sink of v2) assert.strictEqual(sink.frames[1], v2[0]!.frames[1])
      }).pipe(Effect.provide(Hub.Hub.layerMemory)))
  })

  it.effect("public and private rooms of the same name are separate", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const [publicSink] = yield* sinks(hub, Publication.topicKey(ROOM, false), "2.0.0", 1)
      const [privateSink] = yield* sinks(hub, Publication.topicKey(ROOM, true), "2.0.0", 1)
      assert.strictEqual(yield* hub.publish(userBroadcast("json", enc.encode("{}"), ROOM, true)), 1)
      assert.strictEqual(privateSink!.frames.length, 1)
      assert.strictEqual(publicSink!.frames.length, 0)
      assert.strictEqual(yield* hub.publish(hello), 1)
      assert.strictEqual(publicSink!.frames.length, 1)
      assert.strictEqual(privateSink!.frames.length, 1)
      assert.strictEqual(hub.topicCount(), 2)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  it.effect("remove ends a subscription", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const [stays] = yield* sinks(hub, roomKey, "2.0.0", 1)
      const leaves = TestSink.make("2.0.0")
      hub.add(roomKey, leaves)
      assert.strictEqual(hub.subscriberCount(roomKey), 2)
      yield* hub.publish(hello)
      hub.remove(roomKey, leaves)
      assert.strictEqual(hub.subscriberCount(roomKey), 1)
      yield* hub.publish(hello)
      assert.strictEqual(leaves.frames.length, 1)
      assert.strictEqual(stays!.frames.length, 2)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  it.effect("the last subscription of a topic removes the topic", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const sink = TestSink.make("1.0.0")
      hub.add(roomKey, sink)
      assert.strictEqual(hub.topicCount(), 1)
      hub.remove(roomKey, sink)
      assert.strictEqual(hub.topicCount(), 0)
      assert.strictEqual(hub.subscriberCount(roomKey), 0)
    }).pipe(Effect.provide(Hub.Hub.layerMemory)))

  it.effect("two hubs on one bus deliver across nodes without duplicating locally", () =>
    Effect.gen(function*() {
      const bus = new Broker.MemoryBus()
      const nodeA = yield* nodeOf(bus)
      const nodeB = yield* nodeOf(bus)
      const [onA, senderOnA] = yield* sinks(nodeA, roomKey, "2.0.0", 2)
      const [onB] = yield* sinks(nodeB, roomKey, "1.0.0", 1)
      const delivered = yield* nodeA.publish(hello, senderOnA)
      assert.strictEqual(delivered, 1, "publish counts local deliveries only")
      assert.strictEqual(onA!.frames.length, 1)
      assert.strictEqual(senderOnA!.frames.length, 0)
      assert.strictEqual(onB!.frames.length, 1)
      const [frame] = onB!.decoded()
      if (frame?._tag !== "Text") return assert.fail("expected a text frame")
      assert.deepStrictEqual(frame.json, {
        topic: ROOM,
        event: "broadcast",
        payload: { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } },
        ref: null
      })
      // And back: B's publication reaches A's subscribers, including the one A excluded before.
      yield* nodeB.publish(hello)
      assert.strictEqual(onA!.frames.length, 2)
      assert.strictEqual(senderOnA!.frames.length, 1)
      assert.strictEqual(onB!.frames.length, 2)
    }))
})

// One hub for the whole block: the blocks above show isolation per test, this one shows that a
// long-lived hub keeps its rooms apart by topic.
layer(Hub.Hub.layerMemory)("Hub shared by several tests", (it) => {
  it.effect("topics do not see each other's publications", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const [a] = yield* sinks(hub, Publication.topicKey("realtime:a", false), "2.0.0", 1)
      const [b] = yield* sinks(hub, Publication.topicKey("realtime:b", false), "2.0.0", 1)
      yield* hub.publish(Publication.json("realtime:a", false, "broadcast", "{}"))
      assert.strictEqual(a!.frames.length, 1)
      assert.strictEqual(b!.frames.length, 0)
    }))

  it.effect("the previous test's subscriptions were released with its scope", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      assert.strictEqual(hub.topicCount(), 0)
    }))
})

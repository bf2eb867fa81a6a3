/**
 * The Redis broker against the real local Redis, every channel under this run's own prefix: the contract suite,
 * two hubs that each hold their own client, and the release of a topic's shard subscription. The restart case runs
 * on a throwaway Redis server of its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisClient, RedisConfig } from "@wedsync/redis"
import { Reply } from "@wedsync/protocol"
import { RedisServer, redisUrl, uniquePrefix, waitUntil } from "@wedsync/testkit"
import { Clock, Context, Effect, Layer, Metric, Redacted, Stream } from "effect"
import { Broker, Hub, HubMetrics, Publication } from "../src/index.ts"
import { BrokerSuite, TestSink } from "../src/testing/index.ts"

// One client (so one subscriber connection) per node, as in separate processes.
const clientLayer = (prefix: string) =>
  Layer.fresh(RedisClient.RedisClient.layer).pipe(
    Layer.provide(RedisConfig.RedisConfig.layer({ url: Redacted.make(redisUrl()), prefix })),
    Layer.orDie
  )

const brokerLayer = (prefix: string) => Layer.fresh(Broker.Broker.layerRedis).pipe(Layer.provide(clientLayer(prefix)))

BrokerSuite("redis", (nodes) => {
  const prefix = uniquePrefix("broker")
  return Array.from({ length: nodes }, () => brokerLayer(prefix))
})

const ROOM = "realtime:room"
const roomKey = Publication.topicKey(ROOM, false)

const nodeOf = (prefix: string) =>
  Layer.build(
    Layer.fresh(Hub.Hub.layer).pipe(
      Layer.provideMerge(Layer.fresh(Broker.Broker.layerRedis)),
      Layer.provideMerge(clientLayer(prefix))
    )
  ).pipe(
    Effect.map((context) => ({
      hub: Context.get(context, Hub.Hub),
      broker: Context.get(context, Broker.Broker),
      client: Context.get(context, RedisClient.RedisClient)
    }))
  )

/** Subscribers of a shard channel over every connection (so every process). */
const shardNumsub = (client: RedisClient.RedisClient["Service"], fullChannel: string) =>
  client.command("PUBSUB", (r) => r.pubsub("SHARDNUMSUB", fullChannel)).pipe(
    Effect.map((reply) => Number(reply[1])),
    Effect.orDie
  )

/** The `n` of every frame a sink received, in order (text frames of JSON publications). */
const numbers = (sink: TestSink.TestSink): Array<unknown> =>
  sink.decoded().map((frame) => {
    if (frame._tag !== "Text") return "binary"
    // v2 frames are `[join_ref, ref, topic, event, payload]`, v1 frames objects with a `payload`.
    type Payload = { readonly payload?: { readonly n?: number } }
    const json = frame.json as ReadonlyArray<Payload> | { readonly payload?: Payload }
    return (Array.isArray(json) ? json[4] : (json as { readonly payload?: Payload }).payload)?.payload?.n
  })

const message = (n: number) =>
  Publication.json(ROOM, false, "broadcast", JSON.stringify({ type: "broadcast", event: "n", payload: { n } }))

const framesReach = (sink: TestSink.TestSink, count: number, what: string) =>
  Effect.promise(() => waitUntil(what, () => sink.frames.length, (n) => n >= count))

describe("Broker.layerRedis", () => {
  it.live("two hubs: a publication reaches the other hub's sinks once and the publisher's own sinks once", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("broker-hubs")
        const a = yield* nodeOf(prefix)
        const b = yield* nodeOf(prefix)
        const onA = TestSink.make("2.0.0")
        const onB = TestSink.make("1.0.0")
        a.hub.add(roomKey, onA)
        b.hub.add(roomKey, onB)
        yield* a.broker.settled
        yield* b.broker.settled
        assert.strictEqual(yield* a.hub.publish(message(1)), 1)
        yield* framesReach(onB, 1, "B to receive A's publication")
        // B's publication travels after A's on the same shard channel, so once A has it, A's own echo (had it
        // not been dropped) would already have arrived.
        yield* b.hub.publish(message(2))
        yield* framesReach(onA, 2, "A to receive B's publication")
        // And once more from A: B has A's third only after any duplicate of the first two would have arrived.
        yield* a.hub.publish(message(3))
        yield* framesReach(onB, 3, "B to receive A's second publication")
        assert.deepStrictEqual(numbers(onA), [1, 2, 3])
        assert.deepStrictEqual(numbers(onB), [1, 2, 3])
        assert.strictEqual(yield* shardNumsub(a.client, a.client.key(Broker.channelOf(roomKey))), 2)
      })
    ))

  it.live("unsubscribes a topic's shard channel when its last local subscriber leaves", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("broker-release")
        const a = yield* nodeOf(prefix)
        const channel = a.client.key(Broker.channelOf(roomKey))
        const first = TestSink.make("2.0.0")
        const second = TestSink.make("2.0.0")
        a.hub.add(roomKey, first)
        a.hub.add(roomKey, second)
        yield* a.broker.settled
        assert.strictEqual(yield* shardNumsub(a.client, channel), 1)
        a.hub.remove(roomKey, first)
        yield* a.broker.settled
        assert.strictEqual(yield* shardNumsub(a.client, channel), 1, "one subscriber is left")
        a.hub.remove(roomKey, second)
        yield* a.broker.settled
        assert.strictEqual(yield* shardNumsub(a.client, channel), 0)
        // And back: a new subscriber subscribes again.
        a.hub.add(roomKey, first)
        yield* a.broker.settled
        assert.strictEqual(yield* shardNumsub(a.client, channel), 1)
      })
    ))
})

describe("Broker.layerRedis in a join storm", () => {
  it.live("topics joined while others are being subscribed are live without the failed-subscription pause", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const a = yield* nodeOf(uniquePrefix("broker-storm"))
        const keys = Array.from({ length: 20 }, (_, i) => Publication.topicKey(`realtime:storm-${i}`, false))
        const started = yield* Clock.currentTimeMillis
        for (const key of keys) {
          a.hub.add(key, TestSink.make("2.0.0"))
          // Lets the reconciler start on the topics joined so far, so the next ones arrive during its pass.
          yield* Effect.yieldNow
        }
        for (const key of keys) assert.isTrue(yield* a.hub.subscribed(key), key)
        // The pause is for a subscription Redis refused (1 s); none was refused here.
        assert.isBelow((yield* Clock.currentTimeMillis) - started, 900)
      })
    ))
})

describe("Broker.layerRedis when Redis restarts", () => {
  it.live(
    "keeps local fan-out, counts lost publications, then tells every held topic once and delivers again",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const server = yield* Effect.acquireRelease(
            Effect.promise(() => RedisServer.start()),
            (s) => Effect.promise(() => s.stop())
          )
          const prefix = uniquePrefix("broker-restart")
          const node = (name: string) =>
            Layer.build(
              Layer.fresh(Hub.Hub.layer).pipe(
                Layer.provideMerge(Layer.fresh(Broker.Broker.layerRedis)),
                Layer.provideMerge(
                  Layer.fresh(RedisClient.RedisClient.layer).pipe(
                    Layer.provide(RedisConfig.RedisConfig.layer({
                      url: Redacted.make(server.url),
                      prefix,
                      reconnectMaxDelayMs: 200,
                      commandTimeoutMs: 300
                    })),
                    Layer.orDie
                  )
                )
              )
            ).pipe(
              Effect.map((context) => ({
                name,
                hub: Context.get(context, Hub.Hub),
                broker: Context.get(context, Broker.Broker),
                redis: Context.get(context, RedisClient.RedisClient)
              }))
            )
          const a = yield* node("a")
          const b = yield* node("b")
          const otherKey = Publication.topicKey("realtime:other", true)
          const onA = TestSink.make("2.0.0")
          const onB = TestSink.make("1.0.0")
          const onBOther = TestSink.make("2.0.0")
          a.hub.add(roomKey, onA)
          b.hub.add(roomKey, onB)
          b.hub.add(otherKey, onBOther)
          yield* a.broker.settled
          yield* b.broker.settled
          assert.strictEqual(yield* b.broker.state, "connected")
          yield* a.hub.publish(message(1))
          yield* framesReach(onB, 1, "B to receive the first publication")

          yield* Effect.promise(() => server.kill())
          yield* Effect.promise(() =>
            waitUntil("B to see its subscriber down", () =>
              Effect.runPromise(b.broker.state), (s) =>
              s === "disconnected")
          )
          // Local fan-out goes on; the publication to B is lost and counted, never an error.
          const lostBefore = yield* lostToRedis
          assert.strictEqual(yield* a.hub.publish(message(2)), 1)
          assert.deepStrictEqual(numbers(onA), [1, 2])
          yield* Effect.promise(() =>
            waitUntil("the lost publication counted", () =>
              Effect.runPromise(lostToRedis), (n) => n > lostBefore)
          )

          yield* Effect.promise(() => server.restart())
          yield* Effect.promise(() =>
            waitUntil("B to report the gap", () => onB.frames.length + onBOther.frames.length, (n) => n >= 3, {
              timeoutMs: 10_000
            })
          )
          assert.strictEqual(yield* b.broker.state, "connected")
          const systemOf = (sink: TestSink.TestSink) =>
            sink.decoded().flatMap((frame) => {
              if (frame._tag !== "Text") return []
              const json = frame.json as ReadonlyArray<unknown> | {
                readonly event?: string
                readonly payload?: unknown
              }
              if (Array.isArray(json)) return json[3] === "system" ? [{ topic: json[2], payload: json[4] }] : []
              const v1 = json as { readonly topic?: string; readonly event?: string; readonly payload?: unknown }
              return v1.event === "system" ? [{ topic: v1.topic, payload: v1.payload }] : []
            })
          const expected = (channel: string) => ({
            extension: "broadcast",
            status: "error",
            message: Reply.MESSAGES_MAY_HAVE_BEEN_MISSED,
            channel
          })
          assert.deepStrictEqual(systemOf(onB), [{ topic: ROOM, payload: expected("room") }])
          assert.deepStrictEqual(systemOf(onBOther), [{ topic: "realtime:other", payload: expected("other") }])
          // A has been told too (its subscriber dropped as well); then publications flow again.
          yield* framesReach(onA, 3, "A's gap message")
          yield* a.broker.settled
          // Publishing needs A's command connection, which reconnects on its own schedule (not the subscriber's).
          yield* a.redis.statusChanges.pipe(Stream.filter((status) => status.command === "connected"), Stream.runHead)
          yield* a.hub.publish(message(3))
          yield* framesReach(onB, 3, "B to receive a publication after the restart")
          assert.deepStrictEqual(numbers(onB), [1, undefined, 3])
        })
      ),
    30_000
  )
})

const lostToRedis = Metric.value(Metric.withAttributes(HubMetrics.brokerLost, { reason: "redis" })).pipe(
  Effect.map((state) => state.count)
)

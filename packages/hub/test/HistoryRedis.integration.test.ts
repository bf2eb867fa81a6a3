/**
 * The Redis history against the real local Redis, every key under this run's own prefix: the contract suite, and
 * the keys' slots and expiry.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisClient, RedisConfig, RedisKey } from "@wedsync/redis"
import { redisUrl, uniquePrefix } from "@wedsync/testkit"
import { Context, Deferred, Duration, Effect, Fiber, Layer, Redacted } from "effect"
import { Broker, History, Hub, Publication } from "../src/index.ts"
import { HistorySuite } from "../src/testing/index.ts"

const clientLayer = (prefix: string) =>
  Layer.fresh(RedisClient.RedisClient.layer).pipe(
    Layer.provide(RedisConfig.RedisConfig.layer({ url: Redacted.make(redisUrl()), prefix })),
    Layer.orDie
  )

HistorySuite(
  "redis",
  (options) => History.History.layerRedis(options).pipe(Layer.provideMerge(clientLayer(uniquePrefix("history"))))
)

describe("History (redis) keys", () => {
  it("a topic's stream shares the hash tag of its broker channel", () => {
    const key = Publication.topicKey("realtime:wedding:{42}", true)
    assert.strictEqual(RedisKey.hashTag(History.streamOf(key)), RedisKey.hashTag(Broker.channelOf(key)))
    assert.strictEqual(RedisKey.hashTag(History.trimmedOf(key)), RedisKey.hashTag(Broker.channelOf(key)))
  })

  it.effect("an append sets the stream's expiry to the TTL", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        History.History.layerRedis({ ttl: Duration.minutes(5) }).pipe(
          Layer.provideMerge(clientLayer(uniquePrefix("history")))
        )
      )
      const history = Context.get(context, History.History)
      const client = Context.get(context, RedisClient.RedisClient)
      const publication = Publication.json("realtime:a", true, "broadcast", "{}")
      yield* history.append({ id: History.makeId(0), publication })
      const stream = client.key(History.streamOf(Publication.keyOf(publication)))
      const ttl = yield* Effect.orDie(client.command("PTTL", (r) => r.pttl(stream)))
      assert.isTrue(ttl > 4 * 60_000 && ttl <= 5 * 60_000, `PTTL ${ttl}`)
    }))
})

describe("History (redis) with the Redis broker, two processes", () => {
  /** One process: its own Redis client, broker, hub and history, on a shared prefix. */
  const processOf = (prefix: string) =>
    Layer.build(
      Layer.mergeAll(Layer.fresh(Hub.Hub.layer), Layer.fresh(History.History.layerRedis())).pipe(
        Layer.provide(Layer.fresh(Broker.Broker.layerRedis)),
        Layer.provideMerge(clientLayer(prefix))
      )
    ).pipe(
      Effect.map((context) => ({ hub: Context.get(context, Hub.Hub), history: Context.get(context, History.History) }))
    )

  const ROOM = "realtime:wedding:seam"
  const KEY = Publication.topicKey(ROOM, true)
  const numberOf = (publication: Publication.Publication): number =>
    publication.body._tag === "Json"
      ? (JSON.parse(publication.body.json) as { readonly payload: { readonly n: number } }).payload.n
      : -1

  it.effect("a reader that subscribed, then read the history, has every message published meanwhile in one or both", () =>
    Effect.gen(function*() {
      const prefix = uniquePrefix("history-seam")
      const a = yield* processOf(prefix)
      const b = yield* processOf(prefix)
      const total = 200
      const live: Array<number> = []
      const last = yield* Deferred.make<void>()
      const sink = {
        vsn: "2.0.0" as const,
        enqueue: (_frame: Uint8Array, publication?: Publication.Publication) => {
          if (publication === undefined) return
          const n = numberOf(publication)
          live.push(n)
          if (n === total) Deferred.doneUnsafe(last, Effect.void)
        }
      }
      const publishing = yield* Effect.forkChild(Effect.forEach(
        Array.from({ length: total }, (_, i) => i + 1),
        (n) =>
          History.publish(
            a.hub,
            a.history,
            Publication.json(ROOM, true, "broadcast", `{"type":"broadcast","event":"n","payload":{"n":${n}}}`)
          ),
        { discard: true }
      ))
      b.hub.add(KEY, sink)
      yield* b.hub.settled
      const replay = yield* b.history.read(KEY, 0, 1000)
      yield* Fiber.join(publishing)
      yield* Deferred.await(last)
      const replayed = replay.entries.map((e) => numberOf(e.publication))
      const seen = new Set([...replayed, ...live])
      assert.deepStrictEqual(
        Array.from({ length: total }, (_, i) => i + 1).filter((n) => !seen.has(n)),
        [],
        `replayed ${replayed.length}, live ${live.length}`
      )
      assert.deepStrictEqual(replayed, [...replayed].sort((x, y) => x - y), "the history is in publish order")
      assert.deepStrictEqual(live, [...live].sort((x, y) => x - y), "live messages are in publish order")
    }))
})

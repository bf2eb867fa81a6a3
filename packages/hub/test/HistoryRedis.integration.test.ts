/**
 * The Redis history against the real local Redis, every key under this run's own prefix: the contract suite, and
 * the keys' slots and expiry.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisClient, RedisConfig, RedisKey } from "@wedsync/redis"
import { redisUrl, uniquePrefix } from "@wedsync/testkit"
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import { Broker, History, Publication } from "../src/index.ts"
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

/**
 * The Redis store and bus against the real local Redis: the same contract suites as the memory ones, then
 * `LayeredCache` instances sharing one Redis as separate processes would (one `RedisClient` each). Every key and
 * channel of this run lives under its own prefix. The outage case runs on a private `redis-server` (testkit
 * `RedisServer`), so stopping it cuts no other test's connections. Waits are on events (status changes, received
 * invalidations), never on sleeps.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisClient, RedisConfig, RedisKey } from "@wedsync/redis"
import type { RedisError } from "@wedsync/redis"
import { redisUrl, RedisServer, uniquePrefix } from "@wedsync/testkit"
import { Clock, Context, Duration, Effect, Layer, Metric, Option, Queue, Redacted, type Scope, Stream } from "effect"
import { afterAll } from "vitest"
import {
  CacheCodec,
  CacheConfig,
  CacheKind,
  CacheMetrics,
  CacheStore,
  InvalidationBus,
  LayeredCache
} from "../src/index.ts"
import { CacheStoreSuite, InvalidationBusSuite } from "../src/testing/index.ts"

const runPrefix = uniquePrefix("cache")
let prefixes = 0
/** A prefix of this run no other test uses: a fresh, empty store and bus. */
const freshPrefix = () => `${runPrefix}${prefixes++}:`

const hmacKey = Redacted.make("redis-test-hmac-key")
// Generous, so a loaded machine cannot turn a read that must come from Redis into a loader run; the outage test sets
// its own.
const storeTimeoutMs = 1_000

const clientLayer = (prefix: string, options: Partial<RedisConfig.RedisOptions> = {}) =>
  RedisClient.RedisClient.layer.pipe(
    Layer.provide(RedisConfig.RedisConfig.layer({ url: Redacted.make(redisUrl()), prefix, ...options }))
  )

afterAll(() =>
  Effect.runPromise(
    RedisClient.RedisClient.use((client) =>
      Effect.gen(function*() {
        const keys = yield* client.command("KEYS", (r) => r.keys(`${RedisKey.literalPattern(runPrefix)}*`))
        if (keys.length > 0) yield* client.command("DEL", (r) => r.del(...keys))
      })
    ).pipe(Effect.provide(clientLayer("")))
  )
)

CacheStoreSuite("redis", () => CacheStore.CacheStore.layerRedis.pipe(Layer.provide(clientLayer(freshPrefix()))))

// Each member has its own client (its own connections), as each process would.
InvalidationBusSuite("redis", (members) => {
  const prefix = freshPrefix()
  return Array.from(
    { length: members },
    () => InvalidationBus.InvalidationBus.layerRedis.pipe(Layer.provide(clientLayer(prefix)))
  )
})

const plan = CacheKind.make({ name: "subscription", id: "plan", codec: CacheCodec.string })
const wedding = CacheKind.make({ name: "wedding", id: "info", codec: CacheCodec.string })

interface Node {
  readonly client: RedisClient.RedisClientShape
  readonly cache: LayeredCache.LayeredCacheShape
  /** Every invalidation this node's bus delivered, after the cache handled it. */
  readonly received: Queue.Queue<InvalidationBus.Invalidation>
}

/** One simulated process: its own Redis client, the Redis store and bus, a `LayeredCache` over them. */
const node = (
  prefix: string,
  options: { readonly redis?: Partial<RedisConfig.RedisOptions>; readonly storeTimeoutMs?: number } = {}
): Effect.Effect<Node, RedisError.RedisError, Scope.Scope> =>
  Effect.gen(function*() {
    const clientContext = yield* Layer.build(Layer.fresh(clientLayer(prefix, options.redis)))
    const client = Context.get(clientContext, RedisClient.RedisClient)
    const received = yield* Queue.unbounded<InvalidationBus.Invalidation>()
    const bus = InvalidationBus.makeRedis(client)
    const observed: InvalidationBus.InvalidationBusShape = {
      publish: bus.publish,
      subscribe: (handler) =>
        bus.subscribe((invalidation) => {
          handler(invalidation)
          Queue.offerUnsafe(received, invalidation)
        })
    }
    const deps = Layer.mergeAll(
      Layer.succeed(CacheStore.CacheStore, CacheStore.makeRedis(client)),
      Layer.succeed(InvalidationBus.InvalidationBus, observed),
      CacheConfig.CacheConfig.layer({ hmacKey, storeTimeoutMs: options.storeTimeoutMs ?? storeTimeoutMs })
    )
    const cacheContext = yield* Layer.build(LayeredCache.LayeredCache.layer.pipe(Layer.provide(deps)))
    const cache = Context.get(cacheContext, LayeredCache.LayeredCache)
    return { client, cache, received }
  })

/** `LayeredCache.layerRedis` on a client of its own, as a gateway would build it. */
const plainNode = (prefix: string) =>
  Effect.map(
    Layer.build(
      LayeredCache.LayeredCache.layerRedis.pipe(
        Layer.provide(
          Layer.merge(Layer.fresh(clientLayer(prefix)), CacheConfig.CacheConfig.layer({ hmacKey, storeTimeoutMs }))
        )
      )
    ),
    (context) => Context.get(context, LayeredCache.LayeredCache)
  )

/** The next invalidation `node` received, failing the test after 2 s without one. */
const nextInvalidation = (n: Node) =>
  Queue.take(n.received).pipe(
    Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.die(new Error("no invalidation arrived")) })
  )

const waitForStatus = (
  client: RedisClient.RedisClientShape,
  predicate: (status: RedisClient.Status) => boolean,
  what: string
) =>
  client.statusChanges.pipe(
    Stream.filter(predicate),
    Stream.take(1),
    Stream.runDrain,
    Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error(`status never became ${what}`)) })
  )

/** A loader that counts its runs and returns the current `truth`. */
const source = <A>(initial: A) => {
  const state = { runs: 0, truth: initial }
  const load = Effect.sync(() => {
    state.runs++
    return state.truth
  })
  return { state, load }
}

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>, attributes: Record<string, string>) =>
  Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => Number(state.count))

/** Failures of one store event, timeouts and errors together. */
const storeFailures = (event: (typeof CacheMetrics.storeEvents)[number]) =>
  Effect.zipWith(
    count(CacheMetrics.storeFailures, { event, reason: "timeout" }),
    count(CacheMetrics.storeFailures, { event, reason: "error" }),
    (timeouts, errors) => timeouts + errors
  )

describe("LayeredCache over Redis", () => {
  it.live("two instances: one reads the other's value; an invalidation on one drops the other's L1", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const a = yield* node(prefix)
      const b = yield* node(prefix)
      const { state, load } = source("v1")
      assert.strictEqual(yield* a.cache.get(wedding, "w9", load), "v1")
      assert.strictEqual(yield* b.cache.get(wedding, "w9", load), "v1")
      assert.strictEqual(state.runs, 1, "the second instance reads the first one's value from Redis")
      assert.strictEqual(b.cache.getUnsafe(wedding, "w9"), "v1")

      const remote = yield* count(CacheMetrics.invalidations, { kind: "wedding", event: "remote" })
      state.truth = "v2"
      yield* a.cache.invalidate(wedding, "w9")
      assert.strictEqual(a.cache.getUnsafe(wedding, "w9"), LayeredCache.Miss)
      const received = yield* nextInvalidation(b)
      assert.strictEqual(received.kind, "wedding")
      assert.strictEqual(b.cache.getUnsafe(wedding, "w9"), LayeredCache.Miss)
      assert.strictEqual((yield* count(CacheMetrics.invalidations, { kind: "wedding", event: "remote" })) - remote, 1)

      // The tombstone keeps the old value out; b's reload (a newer version) goes in and a reads it from Redis.
      assert.strictEqual(yield* b.cache.get(wedding, "w9", load), "v2")
      assert.strictEqual(yield* a.cache.get(wedding, "w9", load), "v2")
      assert.strictEqual(state.runs, 2)
    }))

  it.live("a value tampered with in Redis, or not written by the store, is a miss, dropped and counted", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const a = yield* node(prefix)
      assert.strictEqual(yield* a.cache.get(plan, "b", Effect.succeed("genuine")), "genuine")
      const keys = yield* a.client.command("KEYS", (r) => r.keys(`${RedisKey.literalPattern(prefix)}*`))
      assert.strictEqual(keys.length, 1)
      const key = keys[0]!
      // Hashed key under the prefix; the value is `<version>:<mac>.<body>`.
      assert.match(key, new RegExp(`^${RedisKey.literalPattern(prefix)}cache:subscription:plan:[A-Za-z0-9_-]{22}$`))
      const stored = Option.getOrThrow(Option.fromNullishOr(yield* a.client.command("GET", (r) => r.get(key))))
      const entry = Option.getOrThrow(CacheStore.parseRedisValue(stored))
      assert.match(stored, /^\d+:[A-Za-z0-9_-]{43}\.p\d+:\d+:genuine$/)
      assert.isAbove(yield* a.client.command("PTTL", (r) => r.pttl(key)), 0)

      const tampered = `${entry.version + 1}:${entry.value.replace("genuine", "attack!")}`
      yield* a.client.command("SET", (r) => r.set(key, tampered, "PX", 60_000))
      const macFailures = () => count(CacheMetrics.integrityFailures, { kind: "subscription", reason: "mac" })
      const mac = yield* macFailures()
      const b = yield* plainNode(prefix)
      assert.strictEqual(yield* b.get(plan, "b", Effect.succeed("reloaded")), "reloaded")
      assert.strictEqual((yield* macFailures()) - mac, 1)
      // Dropped: the reload replaced it, and a third instance reads that from Redis.
      const c = yield* plainNode(prefix)
      assert.strictEqual(yield* c.get(plan, "b", Effect.die("must come from Redis")), "reloaded")

      // A string in another layout (written by something else under our prefix) is foreign: the same handling.
      yield* a.client.command("SET", (r) => r.set(key, "not a cache value", "PX", 60_000))
      const d = yield* plainNode(prefix)
      assert.strictEqual(yield* d.get(plan, "b", Effect.succeed("again")), "again")
      assert.strictEqual((yield* macFailures()) - mac, 2)
      const e = yield* plainNode(prefix)
      assert.strictEqual(yield* e.get(plan, "b", Effect.die("must come from Redis")), "again")
    }))

  it.live("Redis down: reads from L1 or the loader in time, writes dropped and counted; back: used again", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => RedisServer.start()),
        (s) => Effect.promise(() => s.stop())
      )
      const prefix = freshPrefix()
      const timeoutMs = 300
      const redis = { url: Redacted.make(server.url), commandTimeoutMs: 250, reconnectMaxDelayMs: 100 }
      const a = yield* node(prefix, { redis, storeTimeoutMs: timeoutMs })
      const b = yield* node(prefix, { redis, storeTimeoutMs: timeoutMs })
      assert.strictEqual(yield* a.cache.get(plan, "cached", Effect.succeed("in L1")), "in L1")

      yield* Effect.promise(() => server.kill())
      yield* waitForStatus(a.client, (s) => s.command !== "connected" && s.subscriber !== "connected", "down")
      const reads = yield* storeFailures("read")
      const writes = yield* storeFailures("write")
      const started = yield* Clock.currentTimeMillis
      assert.strictEqual(yield* a.cache.get(plan, "cached", Effect.die("L1 must answer")), "in L1")
      const { state, load } = source("from the loader")
      assert.strictEqual(yield* a.cache.get(plan, "new", load), "from the loader")
      assert.strictEqual(state.runs, 1)
      // The read failed (or timed out) once and the write once; neither held the caller past the store timeout.
      assert.isBelow((yield* Clock.currentTimeMillis) - started, 2 * timeoutMs + 100)
      assert.strictEqual((yield* storeFailures("read")) - reads, 1)
      assert.strictEqual((yield* storeFailures("write")) - writes, 1)
      assert.strictEqual(yield* a.cache.get(plan, "new", Effect.die("L1 must answer")), "from the loader")
      yield* a.cache.invalidate(plan, "new").pipe(Effect.timeout(Duration.millis(3 * timeoutMs)))

      yield* Effect.promise(() => server.restart())
      for (const n of [a, b]) {
        yield* waitForStatus(n.client, (s) => s.command === "connected" && s.subscriber === "connected", "connected")
      }
      // Writes reach Redis again: b reads a's value without loading.
      assert.strictEqual(yield* a.cache.get(plan, "after", Effect.succeed("stored again")), "stored again")
      assert.strictEqual(yield* b.cache.get(plan, "after", Effect.die("must come from Redis")), "stored again")
      // And invalidations travel again over the resubscribed channel.
      yield* a.cache.invalidate(plan, "after")
      yield* nextInvalidation(b)
      assert.strictEqual(b.cache.getUnsafe(plan, "after"), LayeredCache.Miss)
    }))
})

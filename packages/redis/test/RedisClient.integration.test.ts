/**
 * The client against the real local Redis (every key and channel under a prefix of this run's own), and against a
 * private `redis-server` (testkit `RedisServer`) for the cases that stop, freeze and restart Redis, so no other
 * test's connections are cut. Waits are on events (status changes, confirmed subscriptions), never on sleeps.
 */
import { assert, describe, it } from "@effect/vitest"
import { redisUrl, RedisServer, uniquePrefix } from "@wedsync/testkit"
import { Clock, ConfigProvider, Duration, Effect, Exit, Layer, Metric, Option, Redacted, Scope, Stream } from "effect"
import { Redis } from "ioredis"
import { afterAll, beforeAll } from "vitest"
import { RedisClient, type Status } from "../src/RedisClient.ts"
import { RedisConfig, type RedisOptions } from "../src/RedisConfig.ts"
import * as RedisKey from "../src/RedisKey.ts"
import * as RedisMetrics from "../src/RedisMetrics.ts"

const prefix = uniquePrefix("redis")

// A plain ioredis connection without the prefix, to see what the client really stored and subscribed.
let raw: Redis
beforeAll(async () => {
  raw = new Redis(redisUrl(), { lazyConnect: true })
  raw.on("error", () => undefined)
  await raw.connect()
})
afterAll(async () => {
  const keys = await raw.keys(`${RedisKey.literalPattern(prefix)}*`)
  if (keys.length > 0) await raw.del(...keys)
  await raw.quit()
})

const numsub = (fullChannel: string) =>
  Effect.promise(() => raw.pubsub("NUMSUB", fullChannel)).pipe(Effect.map((reply) => Number(reply[1])))

const shardNumsub = (fullChannel: string) =>
  Effect.promise(() => raw.pubsub("SHARDNUMSUB", fullChannel)).pipe(Effect.map((reply) => Number(reply[1])))

const clientLayer = (options: Partial<RedisOptions> = {}) =>
  RedisClient.layer.pipe(Layer.provide(RedisConfig.layer({ url: Redacted.make(redisUrl()), prefix, ...options })))

const withClient = <A, E>(
  options: Partial<RedisOptions>,
  body: (client: RedisClient["Service"]) => Effect.Effect<A, E>
) => RedisClient.use(body).pipe(Effect.provide(clientLayer(options)))

const waitForStatus = (client: RedisClient["Service"], predicate: (status: Status) => boolean, what: string) =>
  client.statusChanges.pipe(
    Stream.filter(predicate),
    Stream.take(1),
    Stream.runDrain,
    Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error(`status never became ${what}`)) })
  )

const buildError = <E>(layer: Layer.Layer<RedisClient, E>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
    assert.isTrue(Exit.isFailure(exit))
    return yield* Effect.flip(Effect.scoped(Layer.build(layer)))
  })

describe("RedisClient", () => {
  it.live("stores, reads and deletes under the prefix", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const key = RedisKey.tagged("it", "w-1", "value")
        const other = RedisKey.tagged("it", "w-1", "other")
        assert.isTrue(yield* client.set(key, "v1"))
        assert.strictEqual(yield* Effect.promise(() => raw.get(`${prefix}it:{w-1}:value`)), "v1")
        assert.deepStrictEqual(yield* client.get(key), Option.some("v1"))
        assert.isFalse(yield* client.set(key, "v2", { onlyIfAbsent: true }))
        assert.isTrue(yield* client.set(other, Buffer.from([0, 255, 1]), { ttlMs: 60_000 }))
        const ttl = yield* Effect.promise(() => raw.pttl(client.key(other)))
        assert.isTrue(ttl > 0 && ttl <= 60_000, `pttl ${ttl}`)
        assert.deepStrictEqual(yield* client.getBuffer(other), Option.some(Buffer.from([0, 255, 1])))
        assert.deepStrictEqual(yield* client.mget([key, RedisKey.make("it", "missing")]), [
          Option.some("v1"),
          Option.none()
        ])
        assert.strictEqual(yield* client.incrBy(RedisKey.make("it", "n"), 5), 5)
        assert.isTrue(yield* client.expire(RedisKey.make("it", "n"), 10_000))
        assert.strictEqual(yield* client.del(key, other, RedisKey.make("it", "n")), 3)
        assert.deepStrictEqual(yield* client.get(key), Option.none())
        assert.strictEqual(yield* Effect.promise(() => raw.exists(`${prefix}it:{w-1}:value`)), 0)
      })))

  it.live("maps a server error to RedisCommandFailed, and reaches other commands through `command`", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const key = RedisKey.make("it", "list")
        yield* client.command("RPUSH", (r) => r.rpush(client.key(key), "a", "b"))
        const error = yield* Effect.flip(client.incrBy(key, 1))
        assert.strictEqual(error._tag, "RedisError")
        assert.strictEqual(error.reason._tag, "RedisCommandFailed")
        assert.match(error.message, /^INCRBY: WRONGTYPE/)
        assert.deepStrictEqual(yield* client.command("LRANGE", (r) => r.lrange(client.key(key), 0, -1)), ["a", "b"])
        yield* client.del(key)
      })))

  it.live("delivers published messages to a subscription and releases it when the scope closes", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const channel = RedisKey.make("events", "w-1")
        const full = client.key(channel)
        yield* Effect.scoped(
          Effect.gen(function*() {
            const first = yield* client.subscribe(channel)
            const second = yield* client.subscribe(channel)
            // Two streams share one subscription of the one subscriber connection.
            assert.strictEqual(yield* numsub(full), 1)
            assert.strictEqual(yield* client.publish(channel, "a"), 1)
            assert.strictEqual(yield* client.publish(channel, "b"), 1)
            assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(first, 2)), ["a", "b"])
            assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(second, 2)), ["a", "b"])
          })
        )
        assert.strictEqual(yield* numsub(full), 0)
        assert.strictEqual(yield* client.publish(channel, "nobody"), 0)
        assert.deepStrictEqual((yield* client.status).subscriber, "connected")
      })))

  it.live("keeps a shared channel subscribed until its last stream ends", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const channel = RedisKey.make("events", "shared")
        const outer = yield* Scope.make()
        const kept = yield* client.subscribe(channel).pipe(Scope.provide(outer))
        yield* Effect.scoped(client.subscribe(channel))
        assert.strictEqual(yield* numsub(client.key(channel)), 1)
        assert.strictEqual(yield* client.publish(channel, "still here"), 1)
        assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(kept, 1)), ["still here"])
        yield* Scope.close(outer, Exit.void)
        assert.strictEqual(yield* numsub(client.key(channel)), 0)
      })))

  it.live("delivers shard-channel messages as bytes and releases the shard subscription with the last stream", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const channel = RedisKey.make("shard", "w-1")
        const full = client.key(channel)
        const spublish = (message: Buffer) => client.command("SPUBLISH", (r) => r.spublish(full, message))
        yield* Effect.scoped(
          Effect.gen(function*() {
            const first = yield* client.ssubscribe(channel)
            const second = yield* client.ssubscribe(channel)
            assert.strictEqual(yield* shardNumsub(full), 1)
            // Not valid UTF-8: the bytes must arrive untouched.
            assert.strictEqual(yield* spublish(Buffer.from([0, 255, 128, 10])), 1)
            const got = yield* Stream.runCollect(Stream.take(first, 1))
            assert.deepStrictEqual(got.map((b) => [...b]), [[0, 255, 128, 10]])
            assert.strictEqual((yield* Stream.runCollect(Stream.take(second, 1))).length, 1)
          })
        )
        assert.strictEqual(yield* shardNumsub(full), 0)
      })))

  it.live("delivers pattern messages with the channel name without the prefix", () =>
    withClient({}, (client) =>
      Effect.scoped(
        Effect.gen(function*() {
          const messages = yield* client.psubscribe(RedisKey.pattern("inval", "user"))
          yield* client.publish(RedisKey.make("other", "x"), "ignored")
          assert.strictEqual(yield* client.publish(RedisKey.make("inval", "user", "u-1"), "drop"), 1)
          assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(messages, 1)), [
            { channel: "inval:user:u-1", message: "drop" }
          ])
        })
      )))

  it.live("measures a round trip for /ready and reports both connections", () =>
    withClient({}, (client) =>
      Effect.gen(function*() {
        const latency = yield* client.ping
        assert.isTrue(Duration.toMillis(latency) > 0 && Duration.toMillis(latency) < 1_000)
        const health = yield* client.health
        assert.isTrue(health.ok)
        assert.isDefined(health.latencyMs)
        assert.deepStrictEqual(health.status, { command: "connected", subscriber: "unused" })
        assert.match(client.endpoint, /^redis:\/\/127\.0\.0\.1:\d+\/0$/)
      })))

  it.live("refuses a malformed REDIS_URL or prefix before connecting, with a clear message", () =>
    Effect.gen(function*() {
      const error = yield* buildError(clientLayer({ url: Redacted.make("http://user:hunter2@127.0.0.1:6379") }))
      assert.strictEqual(error.reason._tag, "RedisConfigInvalid")
      assert.match(error.message, /^REDIS_URL is not a usable Redis URL: the scheme is "http"/)
      assert.notInclude(error.message, "hunter2")

      const fromEnv = RedisClient.layerConfig.pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { REDIS_URL: "redis://127.0.0.1:6379/x" } })))
      )
      const envError = yield* buildError(fromEnv)
      assert.match(String(envError), /the database "x" is not a number/)

      const prefixError = yield* buildError(clientLayer({ prefix: "app{1}:" }))
      assert.match(String(prefixError), /hash tag/)
    }))

  it.live("reads REDIS_URL and REDIS_PREFIX through layerConfig", () =>
    RedisClient.use((client) =>
      Effect.gen(function*() {
        assert.strictEqual(client.prefix, `${prefix}env:`)
        yield* client.set(RedisKey.make("k"), "1")
        assert.strictEqual(yield* Effect.promise(() => raw.get(`${prefix}env:k`)), "1")
      })
    ).pipe(
      Effect.provide(
        RedisClient.layerConfig.pipe(
          Layer.provide(
            ConfigProvider.layer(
              ConfigProvider.fromEnv({ env: { REDIS_URL: redisUrl(), REDIS_PREFIX: `${prefix}env:` } })
            )
          )
        )
      )
    ))

  it.live("fails with RedisUnavailable when nothing listens, instead of hanging", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => RedisServer.start())
      yield* Effect.promise(() => server.stop())
      const error = yield* buildError(clientLayer({ url: Redacted.make(server.url), connectTimeoutMs: 2_000 }))
      assert.strictEqual(error._tag, "RedisError")
      assert.strictEqual(error.reason._tag, "RedisUnavailable")
      assert.match(error.message, /^Connecting to redis:\/\/127\.0\.0\.1:\d+\/0 \(command\): .*ECONNREFUSED/)
    }))

  describe("when its own Redis stops and comes back", () => {
    it.live("fails commands within the timeout, then recovers and resubscribes by itself", () =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => RedisServer.start()),
          (s) => Effect.promise(() => s.stop())
        )
        const timeoutMs = 400
        const options = { url: Redacted.make(server.url), commandTimeoutMs: timeoutMs, reconnectMaxDelayMs: 100 }
        yield* withClient(options, (client) =>
          Effect.gen(function*() {
            const key = RedisKey.make("reconnect", "k")
            const channel = RedisKey.make("reconnect", "events")
            const messages = yield* client.subscribe(channel)
            yield* client.set(key, "before")

            // A crash: the sockets close, both connections go down, commands fail fast.
            yield* Effect.promise(() => server.kill())
            yield* waitForStatus(client, (s) => s.command !== "connected" && s.subscriber !== "connected", "down")
            const started = yield* Clock.currentTimeMillis
            const down = yield* Effect.flip(client.get(key))
            assert.strictEqual(down._tag, "RedisError")
            assert.strictEqual(down.reason._tag, "RedisUnavailable")
            assert.isBelow((yield* Clock.currentTimeMillis) - started, timeoutMs + 200)
            const health = yield* client.health
            assert.isFalse(health.ok)
            assert.isDefined(health.error)

            // Back on the same port: the client reconnects and resubscribes without being asked.
            yield* Effect.promise(() => server.restart())
            yield* waitForStatus(client, (s) => s.command === "connected" && s.subscriber === "connected", "connected")
            assert.deepStrictEqual(yield* client.get(key), Option.none())
            yield* client.set(key, "after")
            assert.deepStrictEqual(yield* client.get(key), Option.some("after"))
            assert.strictEqual(yield* client.publish(channel, "after restart"), 1)
            assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(messages, 1)), ["after restart"])
            const reconnects = yield* Metric.value(Metric.withAttributes(RedisMetrics.reconnects, { kind: "command" }))
            assert.isAtLeast(reconnects.count, 1)
          }).pipe(Effect.scoped))
        // Closing the layer closed both connections.
        const clients = yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const probe = new Redis(server.url, { lazyConnect: true })
            await probe.connect()
            return probe
          }),
          (probe) => Effect.promise(() => probe.quit())
        )
        const list = yield* Effect.promise(() => clients.client("LIST"))
        assert.notMatch(String(list), /name=wedsync-/)
      }).pipe(Effect.scoped))

    it.live("refuses a first subscription while Redis is down, and subscribes once it is back", () =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => RedisServer.start()),
          (s) => Effect.promise(() => s.stop())
        )
        yield* withClient(
          { url: Redacted.make(server.url), reconnectMaxDelayMs: 100 },
          (client) =>
            Effect.gen(function*() {
              yield* Effect.promise(() => server.kill())
              const error = yield* Effect.flip(client.subscribe(RedisKey.make("late")))
              assert.strictEqual(error.reason._tag, "RedisUnavailable")
              assert.match(error.message, /^Connecting to .* \(subscriber\): .*ECONNREFUSED/)
              assert.strictEqual((yield* client.status).subscriber, "unused")
              yield* Effect.promise(() => server.restart())
              yield* waitForStatus(client, (s) => s.command === "connected", "connected")
              const messages = yield* client.subscribe(RedisKey.make("late"))
              assert.strictEqual(yield* client.publish(RedisKey.make("late"), "now"), 1)
              assert.deepStrictEqual(yield* Stream.runCollect(Stream.take(messages, 1)), ["now"])
            }).pipe(Effect.scoped)
        )
      }).pipe(Effect.scoped))

    it.live("times out a command of a frozen Redis instead of hanging", () =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => RedisServer.start()),
          (s) => Effect.promise(() => s.stop())
        )
        const timeoutMs = 300
        yield* withClient({ url: Redacted.make(server.url), commandTimeoutMs: timeoutMs }, (client) =>
          Effect.gen(function*() {
            yield* Effect.promise(() =>
              server.pause()
            )
            const started = yield* Clock.currentTimeMillis
            const error = yield* Effect.flip(client.get(RedisKey.make("frozen")))
            const elapsed = (yield* Clock.currentTimeMillis) - started
            assert.strictEqual(error.reason._tag, "RedisTimeout")
            assert.match(error.message, /^GET: no answer from Redis within 300 ms/)
            assert.isAtLeast(elapsed, timeoutMs - 50)
            assert.isBelow(elapsed, timeoutMs + 300)
            yield* Effect.promise(() => server.resume())
            assert.deepStrictEqual(yield* client.get(RedisKey.make("frozen")), Option.none())
          }))
      }).pipe(Effect.scoped))
  })
})

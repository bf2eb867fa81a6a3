import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { ioredisOptions, reconnectDelay } from "../src/RedisClient.ts"
import { defaults } from "../src/RedisConfig.ts"
import * as RedisUrl from "../src/RedisUrl.ts"

const refusal = (url: string) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(RedisUrl.parse(url))
    assert.isTrue(Exit.isFailure(exit), `${url} should be refused`)
    const error = yield* Effect.flip(RedisUrl.parse(url))
    assert.strictEqual(error.reason._tag, "RedisConfigInvalid")
    return error.message
  })

describe("RedisUrl", () => {
  it.effect("reads host, port, db and credentials of a redis:// URL", () =>
    Effect.gen(function*() {
      const endpoint = yield* RedisUrl.parse("redis://app%40x:p%3Ass@cache.internal:6380/3")
      assert.strictEqual(endpoint.host, "cache.internal")
      assert.strictEqual(endpoint.port, 6380)
      assert.strictEqual(endpoint.db, 3)
      assert.strictEqual(endpoint.username, "app@x")
      assert.strictEqual(endpoint.password, "p:ss")
      assert.strictEqual(endpoint.tls, undefined)
      assert.strictEqual(endpoint.display, "redis://cache.internal:6380/3")
    }))

  it.effect("defaults to port 6379, db 0, no credentials; a password alone is allowed", () =>
    Effect.gen(function*() {
      const plain = yield* RedisUrl.parse("redis://127.0.0.1")
      assert.deepStrictEqual([plain.port, plain.db, plain.username, plain.password], [6379, 0, undefined, undefined])
      const passwordOnly = yield* RedisUrl.parse("redis://:secret@[::1]:7000")
      assert.deepStrictEqual([passwordOnly.host, passwordOnly.username, passwordOnly.password], [
        "::1",
        undefined,
        "secret"
      ])
      assert.strictEqual(passwordOnly.display, "redis://[::1]:7000/0")
    }))

  it.effect("turns rediss:// into TLS options that reach ioredis, with SNI for a host name", () =>
    Effect.gen(function*() {
      const endpoint = yield* RedisUrl.parse("rediss://default:pw@redis.example.com:6390/1")
      assert.deepStrictEqual(endpoint.tls, { servername: "redis.example.com" })
      assert.strictEqual(endpoint.display, "rediss://redis.example.com:6390/1")
      const options = ioredisOptions(endpoint, defaults, "test")
      assert.deepStrictEqual(options.tls, { servername: "redis.example.com" })
      assert.deepStrictEqual([options.host, options.port, options.db, options.username, options.password], [
        "redis.example.com",
        6390,
        1,
        "default",
        "pw"
      ])
      // SNI must not be an IP address (Node warns and servers ignore it).
      const byIp = yield* RedisUrl.parse("rediss://10.0.0.5")
      assert.deepStrictEqual(byIp.tls, {})
      assert.strictEqual(ioredisOptions(yield* RedisUrl.parse("redis://h"), defaults, "test").tls, undefined)
    }))

  it.effect("refuses malformed URLs with a message that names the problem and hides the password", () =>
    Effect.gen(function*() {
      assert.match(yield* refusal(""), /REDIS_URL is not a usable Redis URL: it is empty/)
      assert.match(yield* refusal("not a url"), /cannot be parsed as a URL.*expected redis:\/\//)
      assert.match(yield* refusal("http://127.0.0.1:6379"), /the scheme is "http"/)
      assert.match(yield* refusal("redis://127.0.0.1:6379/abc"), /the database "abc" is not a number/)
      assert.match(yield* refusal("redis://127.0.0.1:6379/0?tls=true"), /query parameters/)
      assert.match(yield* refusal("redis://127.0.0.1:99999"), /cannot be parsed/)
      const message = yield* refusal("redis://user:hunter2@host:port")
      assert.notInclude(message, "hunter2")
    }))

  it("backs off exponentially and never beyond the cap", () => {
    assert.isAtLeast(reconnectDelay(1, 50, 2_000), 50)
    assert.isAtMost(reconnectDelay(1, 50, 2_000), 55)
    assert.isAtLeast(reconnectDelay(4, 50, 2_000), 400)
    for (const attempt of [6, 10, 100, 10_000]) assert.isAtMost(reconnectDelay(attempt, 50, 2_000), 2_000)
  })
})

import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import { CacheConfig } from "../src/index.ts"

describe("CacheConfig", () => {
  it.effect("defaults follow the WS-202 spec", () =>
    Effect.sync(() => {
      const kinds = CacheConfig.defaults.kinds
      assert.strictEqual(kinds.subscription.ttlMs, 5 * 60_000)
      assert.strictEqual(kinds.user.ttlMs, 10 * 60_000)
      assert.strictEqual(kinds.wedding.ttlMs, 2 * 60_000)
      assert.strictEqual(kinds.connection.ttlMs, 30 * 60_000)
      for (const policy of Object.values(kinds)) assert.isBelow(policy.negativeTtlMs, policy.ttlMs)
    }))

  it.effect("layerConfig reads the environment, in seconds for TTLs", () =>
    Effect.gen(function*() {
      const config = yield* CacheConfig.CacheConfig
      assert.strictEqual(config.kinds.subscription.ttlMs, 60_000)
      assert.strictEqual(config.kinds.subscription.negativeTtlMs, 5_000)
      assert.strictEqual(config.kinds.wedding.staleMs, 0)
      assert.strictEqual(config.kinds.user.ttlMs, CacheConfig.defaults.kinds.user.ttlMs)
      // A negative TTL above the TTL is capped by it.
      assert.strictEqual(config.kinds.connection.negativeTtlMs, 10_000)
      assert.strictEqual(config.l1MaxEntries, 500)
      assert.strictEqual(config.storeTimeoutMs, 20)
      assert.strictEqual(Redacted.value(config.hmacKey), "k".repeat(32))
    }).pipe(
      Effect.provide(CacheConfig.CacheConfig.layerConfig),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
        env: {
          CACHE_TTL_SUBSCRIPTION: "60",
          CACHE_NEGATIVE_TTL_SUBSCRIPTION: "5",
          CACHE_STALE_WEDDING: "0",
          CACHE_TTL_CONNECTION: "10",
          CACHE_NEGATIVE_TTL_CONNECTION: "600",
          CACHE_L1_MAX_ENTRIES: "500",
          CACHE_STORE_TIMEOUT_MS: "20",
          CACHE_HMAC_KEY: "k".repeat(32)
        }
      })))
    ))

  it.effect("layer merges a partial policy per kind and field", () =>
    Effect.gen(function*() {
      const config = yield* CacheConfig.CacheConfig
      assert.strictEqual(config.kinds.user.ttlMs, 1_000)
      assert.strictEqual(config.kinds.user.negativeTtlMs, CacheConfig.defaults.kinds.user.negativeTtlMs)
      assert.deepStrictEqual(config.kinds.wedding, CacheConfig.defaults.kinds.wedding)
    }).pipe(Effect.provide(CacheConfig.CacheConfig.layer({ kinds: { user: { ttlMs: 1_000 } } }))))
})

import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import { AuthConfig } from "../src/index.ts"

const load = (env: Record<string, string>) =>
  AuthConfig.config.pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))

describe("AuthConfig.config", () => {
  it.effect("reads the secret, the JWKS URL and the comma-separated key lists", () =>
    Effect.gen(function*() {
      const config = yield* load({
        JWT_SECRET: "a-production-secret-of-at-least-32-chars",
        JWT_JWKS_URL: "https://project.supabase.co/auth/v1/.well-known/jwks.json",
        SUPABASE_PUBLISHABLE_KEYS: "sb_publishable_a, sb_publishable_b,",
        SUPABASE_SECRET_KEYS: "sb_secret_a,sb_secret_b"
      })
      assert.strictEqual(Redacted.value(config.jwtSecret), "a-production-secret-of-at-least-32-chars")
      assert.strictEqual(config.jwksUrl, "https://project.supabase.co/auth/v1/.well-known/jwks.json")
      assert.deepStrictEqual(config.publishableKeys, ["sb_publishable_a", "sb_publishable_b"])
      assert.deepStrictEqual(config.secretKeys.map(Redacted.value), ["sb_secret_a", "sb_secret_b"])
      assert.isFalse(AuthConfig.usesDevJwtSecret(config))
      // Redacted values do not leak through String() or logs.
      assert.notInclude(String(config.secretKeys[0]), "sb_secret_a")
    }))

  it.effect("defaults to the flagged dev secret, no JWKS and no keys", () =>
    Effect.gen(function*() {
      const config = yield* load({})
      assert.isTrue(AuthConfig.usesDevJwtSecret(config))
      assert.strictEqual(Redacted.value(config.jwtSecret), AuthConfig.DEV_JWT_SECRET)
      assert.strictEqual(config.jwksUrl, undefined)
      assert.deepStrictEqual(config.publishableKeys, [])
      assert.deepStrictEqual(config.secretKeys, [])
      assert.strictEqual(config.clockToleranceSeconds, 0)
    }))

  it.effect("refuses a JWT_JWKS_URL that is not a URL", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(load({ JWT_JWKS_URL: "not a url" }))
      assert.strictEqual(error._tag, "ConfigError")
    }))
})

describe("AuthConfig.layer", () => {
  it.effect("overrides the defaults with the given fields", () =>
    Effect.gen(function*() {
      const config = yield* AuthConfig.AuthConfig
      assert.deepStrictEqual(config.publishableKeys, ["sb_publishable_x"])
      assert.isTrue(AuthConfig.usesDevJwtSecret(config))
    }).pipe(Effect.provide(AuthConfig.AuthConfig.layer({ publishableKeys: ["sb_publishable_x"] }))))
})

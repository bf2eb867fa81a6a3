/**
 * Where Redis is and how patient to be with it. Built from the environment only in apps/gateway (`layerConfig`);
 * packages and tests use `layer(partial)` over `defaults`.
 */
import { Config, Context, Layer, Redacted } from "effect"

export interface RedisOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS (see `RedisUrl`). */
  readonly url: Redacted.Redacted<string>
  /**
   * Put in front of every key, channel and pattern, so several deployments (or test runs) can share one Redis.
   * May not contain `{` or `}` (it would become every key's Cluster hash tag).
   */
  readonly prefix: string
  /** A command (and a ping) with no answer after this long fails with `RedisTimeout`. */
  readonly commandTimeoutMs: number
  /** How long building the client waits for the first connection before failing with `RedisUnavailable`. */
  readonly connectTimeoutMs: number
  /** First reconnect delay; each further attempt doubles it, up to `reconnectMaxDelayMs`. */
  readonly reconnectBaseDelayMs: number
  /** Longest pause between reconnect attempts. The client never gives up. */
  readonly reconnectMaxDelayMs: number
  /** Messages queued per subscription stream; beyond it new messages are dropped and counted (at most once). */
  readonly subscriptionBufferSize: number
}

export const defaults: RedisOptions = {
  url: Redacted.make("redis://127.0.0.1:6379"),
  prefix: "wedsync:",
  commandTimeoutMs: 1_000,
  connectTimeoutMs: 5_000,
  reconnectBaseDelayMs: 50,
  reconnectMaxDelayMs: 2_000,
  subscriptionBufferSize: 10_000
}

/** `REDIS_URL` (required here: the gateway decides whether Redis is used at all) and `REDIS_PREFIX`. */
export const config: Config.Config<RedisOptions> = Config.all({
  url: Config.Redacted("REDIS_URL"),
  prefix: Config.String("REDIS_PREFIX").pipe(Config.withDefault(defaults.prefix)),
  commandTimeoutMs: Config.succeed(defaults.commandTimeoutMs),
  connectTimeoutMs: Config.succeed(defaults.connectTimeoutMs),
  reconnectBaseDelayMs: Config.succeed(defaults.reconnectBaseDelayMs),
  reconnectMaxDelayMs: Config.succeed(defaults.reconnectMaxDelayMs),
  subscriptionBufferSize: Config.succeed(defaults.subscriptionBufferSize)
})

export class RedisConfig extends Context.Service<RedisConfig, RedisOptions>()("@wedsync/redis/RedisConfig") {
  static readonly layer = (options: Partial<RedisOptions> = {}): Layer.Layer<RedisConfig> =>
    Layer.succeed(RedisConfig, { ...defaults, ...options })

  static readonly layerDefaults: Layer.Layer<RedisConfig> = RedisConfig.layer()

  static readonly layerConfig: Layer.Layer<RedisConfig, Config.ConfigError> = Layer.effect(RedisConfig, config)
}

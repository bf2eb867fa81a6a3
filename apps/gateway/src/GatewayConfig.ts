/**
 * The gateway's own settings. apps/gateway is the only reader of the environment: this module
 * and the `config` descriptors of the packages it wires.
 */
import { Config, Context, Layer } from "effect"

export interface GatewayOptions {
  readonly host: string
  readonly port: number
  /** How long SIGTERM waits for sockets to leave before closing the rest. */
  readonly drainTimeoutMs: number
}

export class GatewayConfig extends Context.Service<GatewayConfig, GatewayOptions>()("@wedsync/gateway/GatewayConfig") {
  static readonly layer = (options: Partial<GatewayOptions> = {}): Layer.Layer<GatewayConfig> =>
    Layer.succeed(GatewayConfig, { host: "127.0.0.1", port: 4000, drainTimeoutMs: 30_000, ...options })

  static readonly layerConfig: Layer.Layer<GatewayConfig, Config.ConfigError> = Layer.effect(
    GatewayConfig,
    Config.all({
      host: Config.String("HOST").pipe(Config.withDefault("127.0.0.1")),
      // Config.Port refuses 0; 0 (an ephemeral port) is useful for tests and side-by-side runs.
      port: Config.Int("PORT").pipe(Config.withDefault(4000)),
      drainTimeoutMs: Config.Int("DRAIN_TIMEOUT_MS").pipe(Config.withDefault(30_000))
    })
  )
}

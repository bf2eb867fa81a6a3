/**
 * Where the upstream Supabase Realtime is and how the pool uses it. Apps build it from the environment with
 * `layerConfig` (`SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY`, `UPSTREAM_*`); tests use `layer(options)`.
 */
import { Config, Context, Duration, Layer, Redacted } from "effect"

export interface UpstreamOptions {
  /** The project URL, `https://<ref>.supabase.co` (or any gateway speaking the protocol); the socket is `/realtime/v1`. */
  readonly url: string
  /** The service-role key: the socket's `apikey` and every join's token, so private upstream channels admit the pool. */
  readonly apiKey: Redacted.Redacted<string>
  /** Channels one upstream socket holds before the pool opens another (hosted Supabase allows 100). */
  readonly channelsPerSocket: number
  /** Upstream sockets the pool may hold at once; a subscription beyond `channelsPerSocket × maxSockets` fails. */
  readonly maxSockets: number
  /** How long a channel whose last subscriber left stays joined, so a quick re-subscribe reuses it. */
  readonly idleGraceMs: number
  /** Phoenix heartbeat interval of each upstream socket (its round-trip is the health metric). */
  readonly heartbeatIntervalMs: number
  /** A join with no answer this long after it was sent fails with `JoinTimeout`. */
  readonly joinTimeoutMs: number
  /** New upstream joins sent per second at most, over the whole pool (hosted Supabase limits joins per project). */
  readonly joinsPerSecond: number
  /** First reconnect delay of a lost socket; doubled per attempt up to `reconnectMaxMs`, each delay jittered. */
  readonly reconnectBaseMs: number
  readonly reconnectMaxMs: number
}

export const defaults = {
  channelsPerSocket: 100,
  maxSockets: 20,
  idleGraceMs: 30_000,
  heartbeatIntervalMs: 25_000,
  joinTimeoutMs: 10_000,
  joinsPerSecond: 100,
  reconnectBaseMs: 250,
  reconnectMaxMs: 10_000
} as const

// Bounds are checked where the environment is checked as a whole (apps/gateway's `checkEnvironment`).
const positive = (name: string, fallback: number) => Config.Int(name).pipe(Config.withDefault(fallback))

const millis = (name: string, fallback: number) =>
  Config.Duration(name).pipe(Config.map(Duration.toMillis), Config.withDefault(fallback))

/** `SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` (required), the `UPSTREAM_*` settings (optional). */
export const config: Config.Config<UpstreamOptions> = Config.all({
  url: Config.String("SUPABASE_URL"),
  apiKey: Config.Redacted("SUPABASE_SERVICE_ROLE_KEY"),
  channelsPerSocket: positive("UPSTREAM_CHANNELS_PER_SOCKET", defaults.channelsPerSocket),
  maxSockets: positive("UPSTREAM_MAX_SOCKETS", defaults.maxSockets),
  idleGraceMs: millis("UPSTREAM_IDLE_GRACE", defaults.idleGraceMs),
  heartbeatIntervalMs: millis("UPSTREAM_HEARTBEAT_INTERVAL", defaults.heartbeatIntervalMs),
  joinTimeoutMs: millis("UPSTREAM_JOIN_TIMEOUT", defaults.joinTimeoutMs),
  joinsPerSecond: positive("UPSTREAM_JOINS_PER_SECOND", defaults.joinsPerSecond),
  reconnectBaseMs: Config.succeed(defaults.reconnectBaseMs),
  reconnectMaxMs: Config.succeed(defaults.reconnectMaxMs)
})

export class UpstreamConfig extends Context.Service<UpstreamConfig, UpstreamOptions>()(
  "@wedsync/upstream/UpstreamConfig"
) {
  static readonly layer = (
    options: Pick<UpstreamOptions, "url" | "apiKey"> & Partial<UpstreamOptions>
  ): Layer.Layer<UpstreamConfig> => Layer.succeed(UpstreamConfig, { ...defaults, ...options })

  static readonly layerConfig: Layer.Layer<UpstreamConfig, Config.ConfigError> = Layer.effect(UpstreamConfig, config)
}

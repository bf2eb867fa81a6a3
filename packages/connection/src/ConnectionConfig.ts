/**
 * Limits and timers of client connections. Built from the environment (`layerConfig`) only in apps/gateway;
 * packages and tests use `layer(partial)` over the defaults.
 */
import { Config, Context, Layer } from "effect"

export interface ConnectionOptions {
  /** Sockets on this process; beyond it the upgrade is refused with 429. */
  readonly maxConnections: number
  /** Sockets per JWT `sub` (anonymous sockets are not counted per user). */
  readonly maxConnectionsPerUser: number
  readonly maxConnectionsPerIp: number
  /** Joined channels per socket (Supabase `max_channels_per_client`). */
  readonly maxChannelsPerConnection: number
  /**
   * Client pushes per second per socket: broadcasts, presence, access_token, leave, unknown events, heartbeats and
   * malformed frames (joins have their own limit). A push on a joined channel beyond it shuts that channel down;
   * a heartbeat beyond it gets an error reply. Presence also has its own per-channel window.
   */
  readonly maxEventsPerSecond: number
  /**
   * Frames of any kind (heartbeats, pushes, malformed frames, joins) per second per socket; breaching it closes the
   * socket with 4030. A backstop far above any client's need (realtime-js sends a heartbeat every 25 s); it is never
   * taken below `maxEventsPerSecond + maxJoinsPerSecond`, so raising those limits raises it too.
   */
  readonly maxFramesPerSecond: number
  /** `postgres_changes` bindings in one join; more are refused with `BindingLimitReached`. */
  readonly maxBindingsPerChannel: number
  /** Joins per second per socket; breaching it closes the socket, as Supabase does. */
  readonly maxJoinsPerSecond: number
  /** Largest broadcast or presence payload accepted, in bytes. */
  readonly maxPayloadBytes: number
  /**
   * Bytes a socket may have queued (outbox plus kernel send buffer backlog) before it is closed as
   * slow. Must hold two of the largest frames the server sends (`limitProblems`).
   */
  readonly outboxLimitBytes: number
  /** A socket that sends nothing (not even a heartbeat) for this long is closed. */
  readonly idleTimeoutMs: number
  /** Period of the shared sweep that checks idle sockets and token expiry (one timer for all sockets). */
  readonly sweepIntervalMs: number
  /** Delay before a failed upgrade is answered, to damp reconnect storms (Supabase: 2 s). */
  readonly connectErrorDelayMs: number
  /** Delay before a join error is answered (Supabase: 5 s). */
  readonly joinErrorDelayMs: number
  readonly presenceMaxCalls: number
  readonly presenceWindowMs: number
  /** Distinct presence keys in one channel (room); a track adding one more is refused. */
  readonly presenceMaxKeysPerChannel: number
  /** Bytes of one channel's `presence_state` (what every joiner is sent); a track past it is refused. */
  readonly presenceMaxBytesPerChannel: number
  /** Bytes of the presence metas one socket tracks over all its channels; a track past it is refused. */
  readonly presenceMaxBytesPerSocket: number
  /** Sockets closed per batch while draining, and the pause between batches. */
  readonly drainBatchSize: number
  readonly drainIntervalMs: number
  /** Inbound frames queued per socket before the socket stops being read (TCP backpressure). */
  readonly mailboxCapacity: number
}

export const defaults: ConnectionOptions = {
  maxConnections: 16_384,
  maxConnectionsPerUser: 500,
  maxConnectionsPerIp: 5_000,
  maxChannelsPerConnection: 100,
  maxEventsPerSecond: 100,
  maxFramesPerSecond: 1_000,
  maxBindingsPerChannel: 100,
  maxJoinsPerSecond: 100,
  maxPayloadBytes: 3_000_000,
  outboxLimitBytes: 8_388_608,
  idleTimeoutMs: 60_000,
  sweepIntervalMs: 1_000,
  connectErrorDelayMs: 2_000,
  joinErrorDelayMs: 5_000,
  presenceMaxCalls: 5,
  presenceWindowMs: 30_000,
  presenceMaxKeysPerChannel: 10_000,
  presenceMaxBytesPerChannel: 3_000_000,
  presenceMaxBytesPerSocket: 1_000_000,
  drainBatchSize: 1_000,
  drainIntervalMs: 200,
  mailboxCapacity: 64
}

const int = (name: string, fallback: number) => Config.Int(name).pipe(Config.withDefault(fallback))

/** The environment variables, each defaulting to `defaults`. */
export const config: Config.Config<ConnectionOptions> = Config.all({
  maxConnections: int("MAX_CONNECTIONS", defaults.maxConnections),
  maxConnectionsPerUser: int("MAX_CONNECTIONS_PER_USER", defaults.maxConnectionsPerUser),
  maxConnectionsPerIp: int("MAX_CONNECTIONS_PER_IP", defaults.maxConnectionsPerIp),
  maxChannelsPerConnection: int("MAX_CHANNELS_PER_CONNECTION", defaults.maxChannelsPerConnection),
  maxEventsPerSecond: int("MAX_EVENTS_PER_SECOND", defaults.maxEventsPerSecond),
  maxFramesPerSecond: int("MAX_FRAMES_PER_SECOND", defaults.maxFramesPerSecond),
  maxBindingsPerChannel: int("MAX_BINDINGS_PER_CHANNEL", defaults.maxBindingsPerChannel),
  maxJoinsPerSecond: int("MAX_JOINS_PER_SECOND", defaults.maxJoinsPerSecond),
  maxPayloadBytes: int("MAX_PAYLOAD_BYTES", defaults.maxPayloadBytes),
  outboxLimitBytes: int("OUTBOX_LIMIT_BYTES", defaults.outboxLimitBytes),
  idleTimeoutMs: int("IDLE_TIMEOUT_MS", defaults.idleTimeoutMs),
  sweepIntervalMs: int("SWEEP_INTERVAL_MS", defaults.sweepIntervalMs),
  connectErrorDelayMs: int("CONNECT_ERROR_BACKOFF_MS", defaults.connectErrorDelayMs),
  joinErrorDelayMs: int("CHANNEL_ERROR_BACKOFF_MS", defaults.joinErrorDelayMs),
  presenceMaxCalls: int("CLIENT_PRESENCE_MAX_CALLS", defaults.presenceMaxCalls),
  presenceWindowMs: int("CLIENT_PRESENCE_WINDOW_MS", defaults.presenceWindowMs),
  presenceMaxKeysPerChannel: int("PRESENCE_MAX_KEYS_PER_CHANNEL", defaults.presenceMaxKeysPerChannel),
  presenceMaxBytesPerChannel: int("PRESENCE_MAX_BYTES_PER_CHANNEL", defaults.presenceMaxBytesPerChannel),
  presenceMaxBytesPerSocket: int("PRESENCE_MAX_BYTES_PER_SOCKET", defaults.presenceMaxBytesPerSocket),
  drainBatchSize: int("DRAIN_BATCH_SIZE", defaults.drainBatchSize),
  drainIntervalMs: int("DRAIN_INTERVAL_MS", defaults.drainIntervalMs),
  mailboxCapacity: int("MAILBOX_CAPACITY", defaults.mailboxCapacity)
})

export class ConnectionConfig extends Context.Service<ConnectionConfig, ConnectionOptions>()(
  "@wedsync/connection/ConnectionConfig"
) {
  static readonly layer = (options: Partial<ConnectionOptions> = {}): Layer.Layer<ConnectionConfig> =>
    Layer.succeed(ConnectionConfig, { ...defaults, ...options })

  /** `config`, read through the current `ConfigProvider`. */
  static readonly layerConfig: Layer.Layer<ConnectionConfig, Config.ConfigError> = Layer.effect(
    ConnectionConfig,
    config
  )
}

/**
 * Bytes a server frame may add around its payload: the WebSocket header, the serializer envelope
 * (join ref, ref, topic, event, `{"type":"broadcast","event":…,"payload":…}`) with topics and event
 * names well inside it.
 */
export const FRAME_ENVELOPE_BYTES = 65_536

/**
 * The largest frame the server may send to one socket: a broadcast of `maxPayloadBytes`, the
 * `presence_state` of a full channel, or a `presence_diff` that replaces one tracked meta by
 * another (both at most the per-socket and payload bounds).
 */
export const largestFrameBytes = (o: ConnectionOptions): number => {
  const meta = Math.min(o.maxPayloadBytes, o.presenceMaxBytesPerSocket, o.presenceMaxBytesPerChannel)
  return Math.max(o.maxPayloadBytes, o.presenceMaxBytesPerChannel, 2 * meta) + FRAME_ENVELOPE_BYTES
}

/**
 * Why these limits are inconsistent, or nothing. A message the server accepted must never be what
 * closes its receivers as slow, so the outbox bound must hold two of the largest frames: one the
 * kernel is still sending and the next one.
 */
export const limitProblems = (o: ConnectionOptions): ReadonlyArray<string> => {
  const largest = largestFrameBytes(o)
  return o.outboxLimitBytes >= 2 * largest ? [] : [
    `OUTBOX_LIMIT_BYTES=${o.outboxLimitBytes} must be at least ${
      2 * largest
    }: twice the largest frame a socket may be sent ` +
    `(${largest} bytes: the larger of MAX_PAYLOAD_BYTES=${o.maxPayloadBytes}, PRESENCE_MAX_BYTES_PER_CHANNEL=${o.presenceMaxBytesPerChannel} ` +
    `and a presence_diff of two metas of PRESENCE_MAX_BYTES_PER_SOCKET=${o.presenceMaxBytesPerSocket}, plus ${FRAME_ENVELOPE_BYTES} for the envelope); ` +
    `otherwise one accepted message closes its receivers as slow consumers. Raise OUTBOX_LIMIT_BYTES or lower the others.`
  ]
}

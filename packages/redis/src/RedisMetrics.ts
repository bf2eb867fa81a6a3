/** Metric handles of the Redis client. Updated per connection event, per failed command and per ping, never per key. */
import { Effect, Metric } from "effect"
import * as RedisError from "./RedisError.ts"

/** The two connections a client can hold: commands, and the lazily opened subscriber. */
export const connectionKinds = ["command", "subscriber"] as const
export type ConnectionKind = (typeof connectionKinds)[number]

export const connected = Metric.gauge("wedsync_redis_connected", {
  description:
    "1 while the connection (kind = command or subscriber) is up and ready, 0 while it is down or reconnecting"
})

export const reconnects = Metric.counter("wedsync_redis_reconnects_total", {
  description: "Times a connection (kind = command or subscriber) was lost and the client started reconnecting",
  incremental: true
})

export const errors = Metric.counter("wedsync_redis_errors_total", {
  description: "Commands, subscriptions and pings that failed, by reason",
  incremental: true
})

export const pingLatency = Metric.histogram("wedsync_redis_ping_seconds", {
  description: "Round-trip time of health pings to Redis",
  boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
})

export const droppedMessages = Metric.counter("wedsync_redis_pubsub_dropped_total", {
  description: "Pub/sub messages dropped because a subscriber's buffer was full (pub/sub is at most once)",
  incremental: true
})

/** Every handle, for the metrics lint. */
export const metrics = [connected, reconnects, errors, pingLatency, droppedMessages] as const

const reasons: ReadonlyArray<string> = RedisError.RedisErrorReason.members.map((m) => m.identifier)

/** Registers every series this package can produce, at 0, so they exist from the first scrape. */
export const declareSeries: Effect.Effect<void> = Effect.suspend(() => {
  const series = [
    pingLatency,
    droppedMessages,
    ...connectionKinds.map((kind) => Metric.withAttributes(connected, { kind })),
    ...connectionKinds.map((kind) => Metric.withAttributes(reconnects, { kind })),
    ...reasons.map((reason) => Metric.withAttributes(errors, { reason }))
  ]
  return Effect.forEach(series, (metric: Metric.Metric<never, unknown>) => Metric.value(metric), { discard: true })
})

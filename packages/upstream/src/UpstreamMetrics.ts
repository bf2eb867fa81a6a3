/** Metric handles of the upstream pool. Updated per socket event, join, heartbeat and message, never per subscriber. */
import { Effect, Metric } from "effect"

export const sockets = Metric.gauge("wedsync_upstream_sockets", {
  description: "Upstream sockets held by the pool (connected or reconnecting)"
})

export const socketsConnected = Metric.gauge("wedsync_upstream_sockets_connected", {
  description: "Upstream sockets currently connected"
})

export const channels = Metric.gauge("wedsync_upstream_channels", {
  description: "Upstream channels held by the pool (referenced or within their idle grace)"
})

export const heartbeatRoundTrip = Metric.histogram("wedsync_upstream_heartbeat_seconds", {
  description: "Round-trip time of each upstream socket's Phoenix heartbeat",
  boundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
})

export const heartbeatFailures = Metric.counter("wedsync_upstream_heartbeat_failures_total", {
  description: "Upstream heartbeats answered with an error or not answered in time (reason = error, timeout)",
  incremental: true
})

export const reconnects = Metric.counter("wedsync_upstream_reconnects_total", {
  description: "Times an upstream socket was lost and the pool started reconnecting it",
  incremental: true
})

export const joins = Metric.counter("wedsync_upstream_joins_total", {
  description: "Upstream channel joins by result (ok, or the UpstreamError reason)",
  incremental: true
})

export const batches = Metric.counter("wedsync_upstream_batches_total", {
  description: "Batch subscriptions (subscribeMany, pre-warm)",
  incremental: true
})

export const batchedChannels = Metric.counter("wedsync_upstream_batched_channels_total", {
  description: "Channels asked for in batch subscriptions",
  incremental: true
})

export const rejoins = Metric.counter("wedsync_upstream_rejoins_total", {
  description: "Upstream channels joined again after their socket was lost",
  incremental: true
})

export const messagesIn = Metric.counter("wedsync_upstream_messages_in_total", {
  description: "Broadcasts, presence changes and Postgres Changes received from upstream channels",
  incremental: true
})

export const messagesDropped = Metric.counter("wedsync_upstream_messages_dropped_total", {
  description: "Upstream frames the relay could not handle (a broadcast without an event name, a payload realtime-js " +
    "fails on), dropped",
  incremental: true
})

export const messagesOut = Metric.counter("wedsync_upstream_messages_out_total", {
  description: "Broadcasts sent to upstream channels",
  incremental: true
})

export const sendFailures = Metric.counter("wedsync_upstream_send_failures_total", {
  description: "Broadcasts the upstream did not take (channel not joined, socket refused or timed out)",
  incremental: true
})

/** Every handle, for the metrics lint. */
export const metrics = [
  sockets,
  socketsConnected,
  channels,
  heartbeatRoundTrip,
  heartbeatFailures,
  reconnects,
  joins,
  batches,
  batchedChannels,
  rejoins,
  messagesIn,
  messagesDropped,
  messagesOut,
  sendFailures
] as const

const joinResults = ["ok", "JoinRefused", "JoinTimeout", "PoolExhausted"] as const

/** Registers every series this package can produce, at 0, so they exist from the first scrape. */
export const declareSeries: Effect.Effect<void> = Effect.all([
  Effect.forEach([sockets, socketsConnected, channels], (metric) => Metric.value(metric), { discard: true }),
  Metric.value(heartbeatRoundTrip),
  Effect.forEach(
    [
      reconnects,
      batches,
      batchedChannels,
      rejoins,
      messagesIn,
      messagesDropped,
      messagesOut,
      sendFailures,
      Metric.withAttributes(heartbeatFailures, { reason: "error" }),
      Metric.withAttributes(heartbeatFailures, { reason: "timeout" }),
      ...joinResults.map((result) => Metric.withAttributes(joins, { result }))
    ],
    (metric) => Metric.value(metric),
    { discard: true }
  )
], { discard: true })

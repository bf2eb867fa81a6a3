/** Metric handles of the hub. Updated from the fan-out loop with `updateUnsafe`, once per publication. */
import { Effect, Metric } from "effect"

export const publications = Metric.counter("wedsync_hub_publications_total", {
  description: "Publications fanned out on this node (local and from other nodes)",
  incremental: true
})

export const deliveries = Metric.counter("wedsync_hub_deliveries_total", {
  description: "Frames handed to subscriber outboxes",
  incremental: true
})

export const topics = Metric.gauge("wedsync_hub_topics", { description: "Topics with at least one local subscriber" })

export const subscriptions = Metric.gauge("wedsync_hub_subscriptions", { description: "Local topic subscriptions" })

export const fanoutDuration = Metric.histogram("wedsync_hub_fanout_duration_seconds", {
  description: "Time to encode a publication and enqueue it for every local subscriber",
  boundaries: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]
})

export const brokerLost = Metric.counter("wedsync_hub_broker_lost_total", {
  description:
    "Publications not sent to other nodes: reason=redis (Redis failed or refused the SPUBLISH), backlog (the send backlog was full)",
  incremental: true
})

export const brokerGaps = Metric.counter("wedsync_hub_broker_gaps_total", {
  description:
    "Times the broker's subscriptions came back after an outage and its topics' subscribers were told they may have missed messages",
  incremental: true
})

export const presenceSweptEntries = Metric.counter("wedsync_presence_swept_entries_total", {
  description: "Presence entries of other processes removed here because their process stopped its heartbeat",
  incremental: true
})

export const presenceResyncedRooms = Metric.counter("wedsync_presence_resynced_rooms_total", {
  description: "Presence rooms read again from Redis after the broker's subscriptions came back from an outage",
  incremental: true
})

export const presenceResyncChanges = Metric.counter("wedsync_presence_resync_changes_total", {
  description: "Presence joins and leaves missed during a subscription outage, found by reading the room again",
  incremental: true
})

export const historyAppendFailures = Metric.counter("wedsync_history_append_failures_total", {
  description: "Private broadcasts whose history write failed: delivered live, missing from replays",
  incremental: true
})

/** The series updated only on rare events, at 0, so that they exist from the first scrape (with the memory broker too). */
export const declareSeries: Effect.Effect<void> = Effect.forEach(
  [
    Metric.withAttributes(brokerLost, { reason: "redis" }),
    Metric.withAttributes(brokerLost, { reason: "backlog" }),
    brokerGaps,
    historyAppendFailures,
    presenceSweptEntries,
    presenceResyncedRooms,
    presenceResyncChanges
  ],
  (metric) => Metric.value(metric),
  { discard: true }
)

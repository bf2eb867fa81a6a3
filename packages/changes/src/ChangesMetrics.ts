/** Metric handles of the change source. Updated once per committed transaction, never per subscriber. */
import { Effect, Metric } from "effect"

export const transactions = Metric.counter("wedsync_changes_transactions_total", {
  description: "Committed transactions with at least one change handed to the consumer (fan-out done)",
  incremental: true
})

export const events = Metric.counter("wedsync_changes_events_total", {
  description: "Row changes (INSERT, UPDATE, DELETE, TRUNCATE per table) handed to the consumer",
  incremental: true
})

export const lag = Metric.gauge("wedsync_changes_lag_seconds", {
  description: "Time from a transaction's commit in Postgres to the end of its fan-out, for the latest transaction"
})

export const reconnects = Metric.counter("wedsync_changes_reconnects_total", {
  description: "Times the replication stream was lost (Postgres restart, network, consumer defect) and started again",
  incremental: true
})

export const deletesWithheld = Metric.counter("wedsync_changes_deletes_withheld_total", {
  description:
    "DELETEs of a scoped table that matched bindings but reached only service_role, because the old row image lacks wedding_id/supplier_id (replica identity)",
  incremental: true
})

/** Every handle, for the metrics lint. */
export const metrics = [transactions, events, lag, reconnects, deletesWithheld] as const

/** Registers every series of this package at 0, so they exist from the first scrape. */
export const declareSeries: Effect.Effect<void> = Effect.forEach(
  [transactions, events, lag, reconnects, deletesWithheld] as ReadonlyArray<Metric.Metric<never, unknown>>,
  (metric) => Metric.value(metric),
  { discard: true }
)

/**
 * Metric handles of the layered cache. Labels are bounded: `tier` (`l1`, `l2`), `kind` (the four policy names),
 * `reason` and `event` from fixed lists here; never a key, which may be derived from a token or a user.
 * The hit ratio of a kind is `sum(hits{kind}) / (sum(hits{kind}) + misses{tier="l2",kind})` in PromQL.
 */
import { Effect, Metric } from "effect"
import * as CacheKind from "./CacheKind.ts"

export const tiers = ["l1", "l2"] as const
export const evictionReasons = ["entries", "bytes", "expired"] as const
export const integrityReasons = ["mac", "decode"] as const
export const invalidationEvents = ["local", "remote"] as const
export const storeEvents = ["read", "write", "delete", "publish", "subscribe"] as const
export const storeReasons = ["timeout", "error"] as const

export const hits = Metric.counter("wedsync_cache_hits_total", {
  description: "Reads answered by a fresh entry, by tier (l1, l2) and kind",
  incremental: true
})

export const misses = Metric.counter("wedsync_cache_misses_total", {
  description: "Reads not answered by a tier, by tier (l1, l2) and kind; an l2 miss runs the loader",
  incremental: true
})

export const staleServed = Metric.counter("wedsync_cache_stale_served_total", {
  description: "Reads answered by an L1 entry past its TTL but inside its stale grace, while one load refreshes it",
  incremental: true
})

export const loadDuration = Metric.histogram("wedsync_cache_load_duration_seconds", {
  description: "Time the loader (the source of truth) took for one miss or refresh, by kind",
  boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
})

export const loadFailures = Metric.counter("wedsync_cache_load_failures_total", {
  description: "Loads that failed (nothing cached; every waiter gets the failure), by kind",
  incremental: true
})

export const evictions = Metric.counter("wedsync_cache_evictions_total", {
  description: "L1 entries removed by the entry bound, the byte bound or expiry, by reason",
  incremental: true
})

export const l1Entries = Metric.gauge("wedsync_cache_l1_entries", { description: "Entries in L1" })

export const l1Bytes = Metric.gauge("wedsync_cache_l1_bytes", { description: "Estimated bytes of the entries in L1" })

export const integrityFailures = Metric.counter("wedsync_cache_integrity_failures_total", {
  description:
    "Store values rejected and dropped: MAC mismatch (tampered or foreign) or undecodable, by kind and reason",
  incremental: true
})

export const invalidations = Metric.counter("wedsync_cache_invalidations_total", {
  description: "Invalidations made on this node (local) or received from another (remote), by kind",
  incremental: true
})

export const storeFailures = Metric.counter("wedsync_cache_store_failures_total", {
  description:
    "Store or bus operations that failed or timed out, by event (read, write, delete, publish, subscribe) and reason; the cache went on without them",
  incremental: true
})

/** Every labelled series this package can produce. */
export const series = (): ReadonlyArray<Metric.Metric<never, unknown>> => [
  l1Entries,
  l1Bytes,
  ...tiers.flatMap((tier) =>
    CacheKind.names.flatMap((kind) => [
      Metric.withAttributes(hits, { tier, kind }),
      Metric.withAttributes(misses, { tier, kind })
    ])
  ),
  ...CacheKind.names.flatMap((kind) => [
    Metric.withAttributes(staleServed, { kind }),
    Metric.withAttributes(loadDuration, { kind }),
    Metric.withAttributes(loadFailures, { kind }),
    ...integrityReasons.map((reason) => Metric.withAttributes(integrityFailures, { kind, reason })),
    ...invalidationEvents.map((event) => Metric.withAttributes(invalidations, { kind, event }))
  ]),
  ...evictionReasons.map((reason) => Metric.withAttributes(evictions, { reason })),
  ...storeEvents.flatMap((event) =>
    storeReasons.map((reason) => Metric.withAttributes(storeFailures, { event, reason }))
  )
]

/** Registers every series of this package at 0, so they exist from the first scrape. */
export const declareSeries: Effect.Effect<void> = Effect.suspend(() =>
  Effect.forEach(series(), (metric) => Metric.value(metric), { discard: true })
)

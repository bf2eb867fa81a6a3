/**
 * Prometheus text exposition of every metric in the current `MetricRegistry`.
 *
 * A thin seam over `PrometheusMetrics.format` so the gateway's `/metrics` route and the tests render the same text,
 * `# HELP` and `# TYPE` lines included. It renders; it does not serve HTTP or push anywhere.
 */
import type { Effect } from "effect"
import { PrometheusMetrics } from "effect/observability"

/** The Prometheus text format 0.0.4 content type to send with `render`'s output. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** Prometheus text of everything registered in the current registry (ends with a newline when non-empty). */
export const render: Effect.Effect<string> = PrometheusMetrics.format()

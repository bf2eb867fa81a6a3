/** Metric handles of client connections. No label carries user data. */
import { AuthError } from "@wedsync/auth"
import { Admission } from "@wedsync/scaling"
import { Effect, Metric } from "effect"
import * as ConnectionError from "./ConnectionError.ts"
import { CloseCode } from "./ErrorReply.ts"

export const open = Metric.gauge("wedsync_connection_open", { description: "Open client sockets" })

export const accepted = Metric.counter("wedsync_connection_accepted_total", {
  description: "WebSocket upgrades accepted",
  incremental: true
})

export const refused = Metric.counter("wedsync_connection_refused_total", {
  description: "WebSocket upgrades refused, by reason code",
  incremental: true
})

export const closed = Metric.counter("wedsync_connection_closed_total", {
  description: "Sockets closed by the server, by reason code",
  incremental: true
})

export const joins = Metric.counter("wedsync_connection_joins_total", {
  description: "Channel joins, by result (ok or the error code)",
  incremental: true
})

export const replays = Metric.counter("wedsync_connection_replays_total", {
  description: "Replays at join, by result: complete, incomplete (a system message said what is missing) or failed",
  incremental: true
})

export const channels = Metric.gauge("wedsync_connection_channels", { description: "Joined channels on this node" })

export const messagesIn = Metric.counter("wedsync_connection_messages_in_total", {
  description: "Frames received from clients, by kind",
  incremental: true
})

export const malformed = Metric.counter("wedsync_connection_malformed_frames_total", {
  description: "Inbound frames dropped because they could not be decoded",
  incremental: true
})

export const framesOut = Metric.counter("wedsync_connection_frames_out_total", {
  description: "WebSocket frames written to client sockets",
  incremental: true
})

export const bytesOut = Metric.counter("wedsync_connection_out_bytes_total", {
  description: "Bytes written to client sockets",
  incremental: true
})

export const writeDelay = Metric.histogram("wedsync_connection_write_delay_seconds", {
  description:
    "Delivery latency inside the node: from the first frame queued in an event-loop turn to the end of that turn's socket writes",
  boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
})

export const admissionShed = Metric.counter("wedsync_admission_shed_total", {
  description:
    "WebSocket upgrades shed with 503 and Retry-After because the process was above its safe capacity, by reason",
  incremental: true
})

/**
 * Registers every labelled series this package can produce, at 0, so dashboards and `rate()` see them from the first
 * scrape rather than from the first refusal. The label values come from the reason and close-code catalogues
 * themselves, so a new reason is declared without editing this list.
 */
export const declareSeries: Effect.Effect<void> = Effect.suspend(() => {
  const reasons = [
    ...ConnectionError.ConnectionError.fields.reason.members.map((m) => m.identifier),
    ...AuthError.AuthErrorReason.members.map((m) => m.identifier)
  ]
  const series = [
    open,
    accepted,
    channels,
    malformed,
    framesOut,
    bytesOut,
    writeDelay,
    ...Object.values(CloseCode).map((code) => Metric.withAttributes(closed, { reason: String(code) })),
    ...reasons.map((reason) => Metric.withAttributes(refused, { reason })),
    ...["ok", ...reasons].map((result) => Metric.withAttributes(joins, { result })),
    ...["broadcast", "heartbeat", "push"].map((kind) => Metric.withAttributes(messagesIn, { kind })),
    ...["complete", "incomplete", "failed"].map((result) => Metric.withAttributes(replays, { result })),
    ...Admission.SHED_REASONS.map((reason) => Metric.withAttributes(admissionShed, { reason }))
  ]
  return Effect.forEach(series, (metric: Metric.Metric<never, unknown>) => Metric.value(metric), { discard: true })
})

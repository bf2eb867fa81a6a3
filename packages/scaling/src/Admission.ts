/**
 * Whether a process takes one more socket. Above its safe capacity (connections, or a delivery or event-loop p99
 * past its guard) a new socket is shed at the upgrade with 503 and a `Retry-After`, before latency degrades for the
 * sockets already connected. The guards sit between the scaling target and `MAX_CONNECTIONS`: scaling acts first,
 * shedding protects the process until the new replicas are up, and the hard cap stays the last resort.
 *
 * `Retry-After` is spread uniformly over `[retryAfterMinSeconds, retryAfterMaxSeconds]` from the caller's random
 * number, so a flood that is shed together does not come back together. The function is pure: the caller draws the
 * number (Effect's `Random`) and owns the metrics.
 */
import type { ScalingOptions } from "./ScalingConfig.ts"

export interface CurrentLoad {
  readonly connections: number
  /** Unknown latencies do not shed: a missing reading must not turn a healthy process away. */
  readonly deliveryP99Ms?: number | undefined
  readonly eventLoopP99Ms?: number | undefined
}

/** Every reason a socket is shed for: the `reason` label values of the shed metric, declared up front. */
export const SHED_REASONS = ["connections", "delivery-latency", "event-loop-delay"] as const
export type ShedReason = (typeof SHED_REASONS)[number]

export type Admission =
  | { readonly _tag: "Admit" }
  | {
    readonly _tag: "Shed"
    readonly reason: ShedReason
    readonly retryAfterSeconds: number
    /** For logs: the value and the guard it crossed. */
    readonly detail: string
  }

export type AdmissionOptions = Pick<
  ScalingOptions,
  | "admissionMaxConnections"
  | "admissionMaxDeliveryP99Ms"
  | "admissionMaxEventLoopP99Ms"
  | "retryAfterMinSeconds"
  | "retryAfterMaxSeconds"
>

const ADMIT: Admission = { _tag: "Admit" }

/** Whole seconds in `[min, max]` from `random` in `[0, 1)`; out-of-range randoms are clamped, never trusted. */
export const retryAfter = (random: number, min: number, max: number): number => {
  const r = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1 - Number.EPSILON) : 0
  return Math.min(max, min + Math.floor(r * (max - min + 1)))
}

/** The decision for one new socket. `random` is in `[0, 1)`. */
export const decide = (load: CurrentLoad, options: AdmissionOptions, random: number): Admission => {
  const shed = (reason: ShedReason, detail: string): Admission => ({
    _tag: "Shed",
    reason,
    retryAfterSeconds: retryAfter(random, options.retryAfterMinSeconds, options.retryAfterMaxSeconds),
    detail
  })
  // The new socket would be one more: at the guard the process is full.
  if (load.connections >= options.admissionMaxConnections) {
    return shed("connections", `${load.connections} connections, safe capacity ${options.admissionMaxConnections}`)
  }
  if (load.eventLoopP99Ms !== undefined && load.eventLoopP99Ms > options.admissionMaxEventLoopP99Ms) {
    return shed(
      "event-loop-delay",
      `event-loop delay p99 ${load.eventLoopP99Ms} ms above ${options.admissionMaxEventLoopP99Ms} ms`
    )
  }
  if (load.deliveryP99Ms !== undefined && load.deliveryP99Ms > options.admissionMaxDeliveryP99Ms) {
    return shed(
      "delivery-latency",
      `delivery p99 ${load.deliveryP99Ms} ms above ${options.admissionMaxDeliveryP99Ms} ms`
    )
  }
  return ADMIT
}

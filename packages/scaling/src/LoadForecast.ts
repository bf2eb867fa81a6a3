/**
 * The connection curve the calendar predicts, and the capacity and warming it asks for ahead of time.
 *
 * One wedding's devices (`suppliers × devicesPerSupplier + guests × devicesPerGuest`) arrive linearly over the ramp
 * before its start (suppliers set up, guests arrive), stay through ceremony and reception until its end, and leave
 * linearly over the decline. A day's curve is the sum over its weddings; it is piecewise linear, so its peak over any
 * window is found exactly at the window's ends and the phase boundaries inside it.
 */
import type { Wedding } from "./Calendar.ts"
import { targetOf } from "./ReplicaPolicy.ts"
import type { ScalingOptions } from "./ScalingConfig.ts"

type ForecastOptions = Pick<
  ScalingOptions,
  "rampMs" | "declineMs" | "defaultDurationMs" | "devicesPerSupplier" | "devicesPerGuest"
>

/** A wedding's phases in epoch milliseconds and its expected devices. */
export interface Phases {
  readonly id: string
  readonly devices: number
  readonly rampStart: number
  readonly start: number
  readonly end: number
  readonly declineEnd: number
}

export const devicesOf = (wedding: Wedding, options: ForecastOptions): number =>
  wedding.suppliers * (wedding.devicesPerSupplier ?? options.devicesPerSupplier) +
  Math.ceil((wedding.guests ?? 0) * options.devicesPerGuest)

export const phasesOf = (wedding: Wedding, options: ForecastOptions): Phases => {
  const end = wedding.end ?? wedding.start + options.defaultDurationMs
  return {
    id: wedding.id,
    devices: devicesOf(wedding, options),
    rampStart: wedding.start - options.rampMs,
    start: wedding.start,
    end,
    declineEnd: end + options.declineMs
  }
}

const connectionsOf = (p: Phases, at: number): number => {
  if (at <= p.rampStart || at >= p.declineEnd) return 0
  if (at < p.start) return p.devices * (at - p.rampStart) / (p.start - p.rampStart)
  if (at <= p.end) return p.devices
  return p.devices * (p.declineEnd - at) / (p.declineEnd - p.end)
}

/** A day's forecast, built once from the calendar and asked many times. */
export interface Forecast {
  readonly phases: ReadonlyArray<Phases>
  /** Predicted connections at a time (summed over weddings). */
  readonly connectionsAt: (at: number) => number
  /** Highest predicted connections in `[from, to]`. */
  readonly peakBetween: (from: number, to: number) => number
  /**
   * Replicas for the peak of `[at, at + leadTime]` at the per-process connection target (capacity less headroom),
   * or `undefined` when no wedding is expected in that window.
   */
  readonly replicasAt: (at: number) => number | undefined
}

export const make = (
  weddings: ReadonlyArray<Wedding>,
  options: ForecastOptions & Pick<ScalingOptions, "leadTimeMs" | "capacity" | "headroom">
): Forecast => {
  const phases = weddings.map((w) => phasesOf(w, options))
  const connectionsAt = (at: number) => {
    let sum = 0
    for (const p of phases) sum += connectionsOf(p, at)
    return sum
  }
  const peakBetween = (from: number, to: number) => {
    let peak = Math.max(connectionsAt(from), connectionsAt(to))
    for (const p of phases) {
      if (p.declineEnd <= from || p.rampStart >= to) continue
      for (const edge of [p.start, p.end]) {
        if (edge > from && edge < to) peak = Math.max(peak, connectionsAt(edge))
      }
    }
    return peak
  }
  const perProcess = targetOf(options.capacity, options.headroom, "connections")
  const replicasAt = (at: number) => {
    const peak = peakBetween(at, at + options.leadTimeMs)
    return peak <= 0 ? undefined : Math.ceil(peak / perProcess)
  }
  return { phases, connectionsAt, peakBetween, replicasAt }
}

/** Points more than this make a curve too large for a dashboard or a report. */
export const MAX_CURVE_POINTS = 10_000

/** The predicted curve from `from` to `to` every `stepMs` (both ends included, at most `MAX_CURVE_POINTS`). */
export const curve = (
  forecast: Forecast,
  from: number,
  to: number,
  stepMs: number
): ReadonlyArray<{ readonly at: number; readonly connections: number }> => {
  if (!(to >= from)) return []
  const step = Math.max(stepMs, (to - from) / (MAX_CURVE_POINTS - 1), 1)
  const count = Math.min(MAX_CURVE_POINTS, Math.floor((to - from) / step) + 1)
  return Array.from({ length: count }, (_, i) => {
    const at = from + i * step
    return { at, connections: forecast.connectionsAt(at) }
  })
}

/** When to act for one wedding. */
export interface Preparation {
  readonly id: string
  readonly devices: number
  /** Run the cache warmer for this wedding (`warmBeforeRampMs` before its ramp). */
  readonly warmAt: number
  /** The forecast starts asking for its capacity (`leadTimeMs` before its ramp). */
  readonly scaleAt: number
  readonly rampStart: number
  readonly start: number
  readonly end: number
}

/** What to do before each wedding, earliest warming first. */
export const preparations = (
  forecast: Forecast,
  options: Pick<ScalingOptions, "warmBeforeRampMs" | "leadTimeMs">
): ReadonlyArray<Preparation> =>
  forecast.phases
    .map((p) => ({
      id: p.id,
      devices: p.devices,
      warmAt: p.rampStart - options.warmBeforeRampMs,
      scaleAt: p.rampStart - options.leadTimeMs,
      rampStart: p.rampStart,
      start: p.start,
      end: p.end
    }))
    .sort((a, b) => a.warmAt - b.warmAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

/**
 * The reactive replica recommendation, after the Kubernetes HPA algorithm (autoscaling/v2 with `behavior`):
 *
 * 1. per metric, `desired = ceil(replicas × average / target)`, where the target is the per-process capacity less the
 *    headroom; a ratio within `1 ± tolerance` keeps the current count;
 * 2. processes that did not report a metric count as idle when the others ask for more and as full when they ask for
 *    less, and a recommendation that this turns around is dropped (HPA's treatment of pods without metrics);
 * 3. the largest recommendation over the metrics wins; when a metric is missing altogether and the rest would scale
 *    down, nothing changes (scaling up is still allowed);
 * 4. stabilization: scale-up takes the lowest recommendation of its window, scale-down the highest of its own, so
 *    load that flaps does not flap the replicas;
 * 5. rate limits per period, counted from the replicas at the start of the period, then `minReplicas..maxReplicas`.
 *
 * `decide` is a pure function of the sample history, the time and the settings; it keeps no state between calls.
 * A caller may pass a `predict` function (the calendar forecast): each sample's recommendation is then the larger
 * of the reactive and predicted ones, and both go through the same stabilization and limits.
 */
import type { Capacity, ScalingOptions } from "./ScalingConfig.ts"

export const METRICS = ["connections", "deliveryP99Ms", "eventLoopP99Ms", "cpu", "memoryBytes"] as const
export type MetricName = (typeof METRICS)[number]

/** What one process reported; a metric it could not read is left out. */
export type ProcessLoad = { readonly [M in MetricName]?: number | undefined }

export interface LoadSample {
  /** Epoch milliseconds. */
  readonly at: number
  /** Replicas running when the sample was taken (a process that did not report still counts). */
  readonly replicas: number
  readonly processes: ReadonlyArray<ProcessLoad>
}

export type MetricOutcome =
  | {
    readonly _tag: "Measured"
    readonly metric: MetricName
    /** Average over the processes that reported it. */
    readonly average: number
    readonly target: number
    readonly ratio: number
    readonly reporting: number
    readonly replicas: number
    /** Set when the recommendation was held at the current count, and why. */
    readonly held?: "tolerance" | "missing-reversed" | undefined
  }
  | { readonly _tag: "Missing"; readonly metric: MetricName }

/** The recommendation of one sample, before stabilization and limits. */
export interface Recommendation {
  readonly at: number
  readonly replicas: number
  readonly metrics: ReadonlyArray<MetricOutcome>
  /** The metric that set `reactive`, when one did. */
  readonly driver: MetricName | undefined
  readonly reactive: number
  readonly predicted: number | undefined
  /** `max(reactive, predicted)`. */
  readonly recommended: number
  /** True when a missing metric kept a scale-down back. */
  readonly heldForMissing: boolean
}

export type Limit =
  | "scale-up-stabilization"
  | "scale-down-stabilization"
  | "scale-up-rate"
  | "scale-down-rate"
  | "min-replicas"
  | "max-replicas"

export interface Decision {
  readonly at: number
  readonly currentReplicas: number
  readonly desiredReplicas: number
  readonly direction: "up" | "down" | "hold"
  /** The latest sample's recommendation; `undefined` when there was no sample. */
  readonly latest: Recommendation | undefined
  /** What set the recommendation: a metric, the calendar, or nothing measurable. */
  readonly drivenBy: MetricName | "calendar" | "none"
  /** The rules that changed the recommendation on its way to `desiredReplicas`, in order. */
  readonly limitedBy: ReadonlyArray<Limit>
  /** One sentence for logs and the admin endpoint. */
  readonly reason: string
}

/** The per-process value the policy aims at for a metric: the capacity less the headroom. */
export const targetOf = (capacity: Capacity, headroom: number, metric: MetricName): number =>
  capacity[metric] * (1 - headroom)

/** A sample's replica count as a whole number; a broken reading counts as none. */
const replicasOf = (sample: LoadSample): number =>
  Number.isFinite(sample.replicas) && sample.replicas > 0 ? Math.floor(sample.replicas) : 0

/** The band's edge belongs to it; the epsilon keeps 880 / 800 = 1.1000000000000001 inside a 10% band. */
const within = (ratio: number, tolerance: number): boolean => Math.abs(ratio - 1) <= tolerance + 1e-9

const measure = (
  metric: MetricName,
  sample: LoadSample,
  replicas: number,
  target: number,
  tolerance: number
): MetricOutcome => {
  let sum = 0
  let reporting = 0
  for (const process of sample.processes) {
    const value = process[metric]
    if (value !== undefined && Number.isFinite(value) && value >= 0) {
      sum += value
      reporting++
    }
  }
  if (reporting === 0) return { _tag: "Missing", metric }
  const average = sum / reporting
  const ratio = average / target
  const base = { _tag: "Measured", metric, average, target, ratio, reporting } as const
  if (within(ratio, tolerance)) return { ...base, replicas, held: "tolerance" }
  const missing = replicas - reporting
  if (missing <= 0) return { ...base, replicas: Math.ceil(replicas * ratio) }
  // Processes without the metric: idle when scaling up, exactly at target when scaling down (never overshoot).
  const assumed = ratio > 1 ? 0 : target
  const adjusted = (sum + missing * assumed) / replicas / target
  const reversed = (ratio > 1) !== (adjusted > 1)
  if (reversed || within(adjusted, tolerance)) return { ...base, replicas, held: "missing-reversed" }
  return { ...base, replicas: Math.ceil(replicas * adjusted) }
}

/**
 * The recommendation for one sample, before stabilization. `predict(at)` is the calendar's replicas for that time,
 * if any.
 */
export const recommend = (
  sample: LoadSample,
  options: ScalingOptions,
  predict?: (at: number) => number | undefined
): Recommendation => {
  const replicas = Math.max(1, replicasOf(sample), sample.processes.length)
  const metrics = METRICS.map((metric) =>
    measure(metric, sample, replicas, targetOf(options.capacity, options.headroom, metric), options.tolerance)
  )
  let reactive = 0
  let driverRatio = 0
  let driver: MetricName | undefined
  let anyMissing = false
  for (const outcome of metrics) {
    if (outcome._tag === "Missing") anyMissing = true
    // Ties go to the fuller metric, so the reason names what is closest to its limit.
    else if (outcome.replicas > reactive || (outcome.replicas === reactive && outcome.ratio > driverRatio)) {
      reactive = outcome.replicas
      driverRatio = outcome.ratio
      driver = outcome.metric
    }
  }
  if (driver === undefined) reactive = replicas
  const heldForMissing = anyMissing && driver !== undefined && reactive < replicas
  if (heldForMissing) reactive = replicas
  const raw = predict?.(sample.at)
  // A forecast that is not a number (a bad calendar entry upstream) must not poison the decision.
  const predicted = raw !== undefined && Number.isFinite(raw) ? Math.max(0, Math.ceil(raw)) : undefined
  return {
    at: sample.at,
    replicas,
    metrics,
    driver,
    reactive,
    predicted,
    recommended: predicted === undefined ? reactive : Math.max(reactive, predicted),
    heldForMissing
  }
}

/**
 * Replicas at the start of the period: the fewest the samples show from the last one before the period to now for
 * scale-up, the most for scale-down. A sample shows the replicas before its own decision took effect, so a step is
 * counted against the period that follows the first sample showing it: slower than HPA's event log by up to one
 * sample interval, never faster.
 */
const periodBase = (
  samples: ReadonlyArray<LoadSample>,
  now: number,
  periodMs: number,
  current: number,
  pick: (a: number, b: number) => number
): number => {
  let base = current
  let before: LoadSample | undefined
  for (const sample of samples) {
    if (sample.at > now) continue
    if (sample.at >= now - periodMs) base = pick(base, replicasOf(sample))
    else if (before === undefined || sample.at > before.at) before = sample
  }
  return before === undefined ? base : pick(base, replicasOf(before))
}

const describe = (r: Recommendation | undefined, metric: MetricName | "calendar" | "none"): string => {
  if (r === undefined) return "no load samples"
  if (metric === "calendar") return `calendar predicts ${r.predicted} replicas`
  if (metric === "none") return "no metric measured"
  const outcome = r.metrics.find((m) => m.metric === metric)
  if (outcome === undefined || outcome._tag === "Missing") return `${metric} missing`
  return `${metric} ${round(outcome.average)} per process against target ${round(outcome.target)} (ratio ${
    round(outcome.ratio)
  })`
}

const round = (n: number): number => Math.round(n * 100) / 100

/**
 * How far back `decide` looks: the longer stabilization window, or the longer rate period plus the one sample
 * before it. A caller keeps the samples `retain` returns and nothing older, so the history stays bounded.
 */
export const retain = (
  samples: ReadonlyArray<LoadSample>,
  now: number,
  options: ScalingOptions
): ReadonlyArray<LoadSample> => {
  const window = Math.max(options.scaleUpStabilizationMs, options.scaleDownStabilizationMs)
  const period = Math.max(options.scaleUpPeriodMs, options.scaleDownPeriodMs)
  let lastBeforePeriod: LoadSample | undefined
  for (const sample of samples) {
    if (sample.at < now - period && (lastBeforePeriod === undefined || sample.at > lastBeforePeriod.at)) {
      lastBeforePeriod = sample
    }
  }
  return samples.filter((sample) =>
    sample.at > now - window || sample.at >= now - period || sample === lastBeforePeriod
  )
}

/**
 * The replicas to run now. `samples` may be in any order and may hold samples older than every window (they are
 * ignored); the newest sample at or before `now` gives the current replicas.
 */
export const decide = (
  samples: ReadonlyArray<LoadSample>,
  now: number,
  options: ScalingOptions,
  predict?: (at: number) => number | undefined
): Decision => {
  let latestSample: LoadSample | undefined
  for (const sample of samples) {
    if (sample.at <= now && (latestSample === undefined || sample.at > latestSample.at)) latestSample = sample
  }
  const clamp = (n: number) => Math.min(options.maxReplicas, Math.max(options.minReplicas, n))
  if (latestSample === undefined) {
    const current = options.minReplicas
    return {
      at: now,
      currentReplicas: current,
      desiredReplicas: current,
      direction: "hold",
      latest: undefined,
      drivenBy: "none",
      limitedBy: [],
      reason: "hold: no load samples yet"
    }
  }
  const latest = recommend(latestSample, options, predict)
  const current = latest.replicas
  const limitedBy: Array<Limit> = []

  // Stabilization over every sample in each window, the latest included.
  let upFloor = latest.recommended
  let downCeiling = latest.recommended
  const upCutoff = now - options.scaleUpStabilizationMs
  const downCutoff = now - options.scaleDownStabilizationMs
  for (const sample of samples) {
    if (sample === latestSample || sample.at > now) continue
    const inUp = sample.at > upCutoff
    const inDown = sample.at > downCutoff
    if (!inUp && !inDown) continue
    const r = recommend(sample, options, predict).recommended
    if (inUp) upFloor = Math.min(upFloor, r)
    if (inDown) downCeiling = Math.max(downCeiling, r)
  }
  let desired = current
  if (desired < upFloor) desired = upFloor
  if (desired > downCeiling) desired = downCeiling
  if (latest.recommended > current && desired < latest.recommended) limitedBy.push("scale-up-stabilization")
  if (latest.recommended < current && desired > latest.recommended) limitedBy.push("scale-down-stabilization")

  if (desired > current) {
    const base = periodBase(samples, now, options.scaleUpPeriodMs, current, Math.min)
    const limit = Math.max(
      Math.ceil(base * (1 + options.scaleUpMaxPercent / 100)),
      base + options.scaleUpMaxReplicas
    )
    if (desired > limit) {
      desired = Math.max(current, limit)
      limitedBy.push("scale-up-rate")
    }
  } else if (desired < current) {
    const base = periodBase(samples, now, options.scaleDownPeriodMs, current, Math.max)
    const limit = Math.ceil(base * (1 - options.scaleDownMaxPercent / 100))
    if (desired < limit) {
      desired = Math.min(current, limit)
      limitedBy.push("scale-down-rate")
    }
  }
  const clamped = clamp(desired)
  if (clamped > desired) limitedBy.push("min-replicas")
  if (clamped < desired) limitedBy.push("max-replicas")
  desired = clamped

  const drivenBy: MetricName | "calendar" | "none" = latest.predicted !== undefined &&
      latest.predicted > latest.reactive
    ? "calendar"
    : latest.driver ?? "none"
  const direction = desired > current ? "up" : desired < current ? "down" : "hold"
  const notes: Array<string> = []
  const tolerated = latest.metrics.filter((m) => m._tag === "Measured" && m.held === "tolerance")
  if (drivenBy !== "calendar" && tolerated.length > 0 && latest.reactive === current && direction === "hold") {
    notes.push(`within the ${options.tolerance * 100}% tolerance band`)
  }
  if (latest.heldForMissing) notes.push("scale-down skipped: a metric is missing")
  const missing = latest.metrics.filter((m) => m._tag === "Missing").map((m) => m.metric)
  if (missing.length > 0) notes.push(`missing: ${missing.join(", ")}`)
  if (limitedBy.length > 0) notes.push(`held back by ${limitedBy.join(", ")}`)
  const change = direction === "hold" ? `hold at ${current}` : `${direction} ${current} → ${desired}`
  const reason = `${change}: ${describe(latest, drivenBy)}; recommended ${latest.recommended}${
    notes.length > 0 ? `; ${notes.join("; ")}` : ""
  }`
  return { at: now, currentReplicas: current, desiredReplicas: desired, direction, latest, drivenBy, limitedBy, reason }
}

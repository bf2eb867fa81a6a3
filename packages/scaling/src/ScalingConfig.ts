/**
 * Settings of the scaling policy: per-process capacity, the HPA-style behaviour (tolerance, stabilization windows,
 * rate limits), the calendar model, admission guards and wedding-season mode. Built from the environment
 * (`layerConfig`) only in apps/gateway; packages and tests use `layer(partial)` over the defaults.
 *
 * Durations are held in milliseconds so the policy stays plain arithmetic; the environment gives them as Effect
 * durations (`5 minutes`).
 */
import { Config, Context, Duration, Layer, Option } from "effect"

export const SEASON_MODES = ["on", "off", "auto"] as const
export type SeasonModeSetting = (typeof SEASON_MODES)[number]

/**
 * What one process can carry before it counts as full. The policy keeps `headroom` of each free, so it aims at
 * `capacity × (1 − headroom)` per process.
 */
export interface Capacity {
  readonly connections: number
  readonly deliveryP99Ms: number
  readonly eventLoopP99Ms: number
  /** Fraction of one core (a process uses one). */
  readonly cpu: number
  readonly memoryBytes: number
}

export interface ScalingOptions {
  readonly minReplicas: number
  readonly maxReplicas: number
  readonly capacity: Capacity
  /** Fraction of capacity kept free (WS-202's 20% buffer). */
  readonly headroom: number
  /** A usage ratio within `1 ± tolerance` of the target changes nothing (HPA's default 0.1). */
  readonly tolerance: number
  /** Scale-up takes the lowest recommendation of this window (HPA default 0: react at once). */
  readonly scaleUpStabilizationMs: number
  /** Scale-down takes the highest recommendation of this window (HPA default 5 minutes), so flapping load holds. */
  readonly scaleDownStabilizationMs: number
  /** Per `scaleUpPeriodMs`, add at most the larger of this percentage and `scaleUpMaxReplicas` (HPA's defaults). */
  readonly scaleUpMaxPercent: number
  readonly scaleUpMaxReplicas: number
  readonly scaleUpPeriodMs: number
  /** Per `scaleDownPeriodMs`, remove at most this percentage. */
  readonly scaleDownMaxPercent: number
  readonly scaleDownPeriodMs: number
  /** Capacity for the predicted connections is asked for this long before they arrive. */
  readonly leadTimeMs: number
  /** The calendar (`WEDDING_CALENDAR_FILE`); `undefined` leaves only the reactive policy. */
  readonly calendarFile: string | undefined
  /** A calendar from `WEDDING_CALENDAR_SQL` is read again this often (a file is read once, at start). */
  readonly calendarRefreshMs: number
  /** Devices arrive over this long before a wedding's start. */
  readonly rampMs: number
  /** After a wedding's end, devices leave over this long. */
  readonly declineMs: number
  /** A wedding without an `end` lasts this long (ceremony and reception). */
  readonly defaultDurationMs: number
  readonly devicesPerSupplier: number
  /** Devices per guest (guests who open the app; fractional). */
  readonly devicesPerGuest: number
  /** The cache warmer runs this long before a wedding's ramp begins. */
  readonly warmBeforeRampMs: number
  /** Above this many sockets a process sheds new ones (between the scaling target and `MAX_CONNECTIONS`). */
  readonly admissionMaxConnections: number
  readonly admissionMaxDeliveryP99Ms: number
  readonly admissionMaxEventLoopP99Ms: number
  /** Bounds of the jittered `Retry-After` of a shed socket, in whole seconds. */
  readonly retryAfterMinSeconds: number
  readonly retryAfterMaxSeconds: number
  readonly seasonMode: SeasonModeSetting
  /** `auto`: weddings are counted over this window ahead. */
  readonly seasonLookaheadMs: number
  /** `auto`: season is on when the window holds at least this many weddings. */
  readonly seasonWeddingThreshold: number
}

export const defaults: ScalingOptions = {
  minReplicas: 1,
  maxReplicas: 10,
  capacity: {
    connections: 10_000,
    deliveryP99Ms: 50,
    eventLoopP99Ms: 50,
    cpu: 0.9,
    memoryBytes: 1_610_612_736
  },
  headroom: 0.2,
  tolerance: 0.1,
  scaleUpStabilizationMs: 0,
  scaleDownStabilizationMs: 300_000,
  scaleUpMaxPercent: 100,
  scaleUpMaxReplicas: 4,
  scaleUpPeriodMs: 15_000,
  scaleDownMaxPercent: 50,
  scaleDownPeriodMs: 60_000,
  leadTimeMs: 1_800_000,
  calendarFile: undefined,
  calendarRefreshMs: 900_000,
  rampMs: 7_200_000,
  declineMs: 3_600_000,
  defaultDurationMs: 28_800_000,
  devicesPerSupplier: 3,
  devicesPerGuest: 0.5,
  warmBeforeRampMs: 900_000,
  admissionMaxConnections: 12_000,
  admissionMaxDeliveryP99Ms: 100,
  admissionMaxEventLoopP99Ms: 100,
  retryAfterMinSeconds: 5,
  retryAfterMaxSeconds: 30,
  seasonMode: "auto",
  seasonLookaheadMs: 604_800_000,
  seasonWeddingThreshold: 10
}

const int = (name: string, fallback: number) => Config.Int(name).pipe(Config.withDefault(fallback))
const num = (name: string, fallback: number) => Config.Number(name).pipe(Config.withDefault(fallback))
const millis = (name: string, fallback: number) =>
  Config.Duration(name).pipe(Config.map(Duration.toMillis), Config.withDefault(fallback))

/** The environment variables, each defaulting to `defaults`. */
export const config: Config.Config<ScalingOptions> = Config.all({
  minReplicas: int("SCALE_MIN_REPLICAS", defaults.minReplicas),
  maxReplicas: int("SCALE_MAX_REPLICAS", defaults.maxReplicas),
  capacity: Config.all({
    connections: int("SCALE_TARGET_CONNECTIONS", defaults.capacity.connections),
    deliveryP99Ms: num("SCALE_TARGET_DELIVERY_P99_MS", defaults.capacity.deliveryP99Ms),
    eventLoopP99Ms: num("SCALE_TARGET_EVENT_LOOP_P99_MS", defaults.capacity.eventLoopP99Ms),
    cpu: num("SCALE_TARGET_CPU", defaults.capacity.cpu),
    memoryBytes: int("SCALE_TARGET_MEMORY_BYTES", defaults.capacity.memoryBytes)
  }),
  headroom: num("SCALE_HEADROOM", defaults.headroom),
  tolerance: num("SCALE_TOLERANCE", defaults.tolerance),
  scaleUpStabilizationMs: millis("SCALE_UP_STABILIZATION", defaults.scaleUpStabilizationMs),
  scaleDownStabilizationMs: millis("SCALE_DOWN_STABILIZATION", defaults.scaleDownStabilizationMs),
  scaleUpMaxPercent: num("SCALE_UP_MAX_PERCENT", defaults.scaleUpMaxPercent),
  scaleUpMaxReplicas: int("SCALE_UP_MAX_REPLICAS", defaults.scaleUpMaxReplicas),
  scaleUpPeriodMs: millis("SCALE_UP_PERIOD", defaults.scaleUpPeriodMs),
  scaleDownMaxPercent: num("SCALE_DOWN_MAX_PERCENT", defaults.scaleDownMaxPercent),
  scaleDownPeriodMs: millis("SCALE_DOWN_PERIOD", defaults.scaleDownPeriodMs),
  leadTimeMs: millis("SCALE_LEAD_TIME", defaults.leadTimeMs),
  calendarFile: Config.String("WEDDING_CALENDAR_FILE").pipe(Config.option, Config.map(Option.getOrUndefined)),
  calendarRefreshMs: millis("SCALE_CALENDAR_REFRESH", defaults.calendarRefreshMs),
  rampMs: millis("CALENDAR_RAMP", defaults.rampMs),
  declineMs: millis("CALENDAR_DECLINE", defaults.declineMs),
  defaultDurationMs: millis("CALENDAR_DEFAULT_DURATION", defaults.defaultDurationMs),
  devicesPerSupplier: num("CALENDAR_DEVICES_PER_SUPPLIER", defaults.devicesPerSupplier),
  devicesPerGuest: num("CALENDAR_DEVICES_PER_GUEST", defaults.devicesPerGuest),
  warmBeforeRampMs: millis("WARM_BEFORE_RAMP", defaults.warmBeforeRampMs),
  admissionMaxConnections: int("ADMISSION_MAX_CONNECTIONS", defaults.admissionMaxConnections),
  admissionMaxDeliveryP99Ms: num("ADMISSION_MAX_DELIVERY_P99_MS", defaults.admissionMaxDeliveryP99Ms),
  admissionMaxEventLoopP99Ms: num("ADMISSION_MAX_EVENT_LOOP_P99_MS", defaults.admissionMaxEventLoopP99Ms),
  retryAfterMinSeconds: int("ADMISSION_RETRY_AFTER_MIN_S", defaults.retryAfterMinSeconds),
  retryAfterMaxSeconds: int("ADMISSION_RETRY_AFTER_MAX_S", defaults.retryAfterMaxSeconds),
  seasonMode: Config.Literals(SEASON_MODES, "SEASON_MODE").pipe(Config.withDefault(defaults.seasonMode)),
  seasonLookaheadMs: millis("SEASON_LOOKAHEAD", defaults.seasonLookaheadMs),
  seasonWeddingThreshold: int("SEASON_WEDDING_THRESHOLD", defaults.seasonWeddingThreshold)
})

/**
 * Why these settings cannot work together, or nothing. Each message names the variables so an operator can fix them
 * in one go.
 */
export const problems = (o: ScalingOptions): ReadonlyArray<string> => {
  const out: Array<string> = []
  const positive = (name: string, value: number) => {
    if (!(Number.isFinite(value) && value > 0)) out.push(`${name}=${value} must be a number above 0`)
  }
  const fraction = (name: string, value: number) => {
    if (!(value >= 0 && value < 1)) out.push(`${name}=${value} must be at least 0 and below 1`)
  }
  if (!(Number.isInteger(o.minReplicas) && o.minReplicas >= 1)) {
    out.push(`SCALE_MIN_REPLICAS=${o.minReplicas} must be an integer of at least 1`)
  }
  if (!(o.maxReplicas >= o.minReplicas)) {
    out.push(`SCALE_MAX_REPLICAS=${o.maxReplicas} must be at least SCALE_MIN_REPLICAS=${o.minReplicas}`)
  }
  positive("SCALE_TARGET_CONNECTIONS", o.capacity.connections)
  positive("SCALE_TARGET_DELIVERY_P99_MS", o.capacity.deliveryP99Ms)
  positive("SCALE_TARGET_EVENT_LOOP_P99_MS", o.capacity.eventLoopP99Ms)
  positive("SCALE_TARGET_CPU", o.capacity.cpu)
  positive("SCALE_TARGET_MEMORY_BYTES", o.capacity.memoryBytes)
  fraction("SCALE_HEADROOM", o.headroom)
  fraction("SCALE_TOLERANCE", o.tolerance)
  positive("SCALE_UP_MAX_PERCENT", o.scaleUpMaxPercent)
  if (!(o.scaleDownMaxPercent > 0 && o.scaleDownMaxPercent <= 100)) {
    out.push(`SCALE_DOWN_MAX_PERCENT=${o.scaleDownMaxPercent} must be above 0 and at most 100`)
  }
  positive("SCALE_UP_PERIOD", o.scaleUpPeriodMs)
  positive("SCALE_DOWN_PERIOD", o.scaleDownPeriodMs)
  if (o.devicesPerSupplier < 0) out.push(`CALENDAR_DEVICES_PER_SUPPLIER=${o.devicesPerSupplier} must be at least 0`)
  if (o.devicesPerGuest < 0) out.push(`CALENDAR_DEVICES_PER_GUEST=${o.devicesPerGuest} must be at least 0`)
  positive("CALENDAR_RAMP", o.rampMs)
  positive("SCALE_CALENDAR_REFRESH", o.calendarRefreshMs)
  positive("CALENDAR_DECLINE", o.declineMs)
  positive("CALENDAR_DEFAULT_DURATION", o.defaultDurationMs)
  positive("ADMISSION_MAX_CONNECTIONS", o.admissionMaxConnections)
  positive("ADMISSION_MAX_DELIVERY_P99_MS", o.admissionMaxDeliveryP99Ms)
  positive("ADMISSION_MAX_EVENT_LOOP_P99_MS", o.admissionMaxEventLoopP99Ms)
  if (!(Number.isInteger(o.retryAfterMinSeconds) && o.retryAfterMinSeconds >= 1)) {
    out.push(`ADMISSION_RETRY_AFTER_MIN_S=${o.retryAfterMinSeconds} must be an integer of at least 1`)
  }
  if (!(Number.isInteger(o.retryAfterMaxSeconds) && o.retryAfterMaxSeconds >= o.retryAfterMinSeconds)) {
    out.push(
      `ADMISSION_RETRY_AFTER_MAX_S=${o.retryAfterMaxSeconds} must be an integer of at least ADMISSION_RETRY_AFTER_MIN_S=${o.retryAfterMinSeconds}`
    )
  }
  if (!(Number.isInteger(o.seasonWeddingThreshold) && o.seasonWeddingThreshold >= 1)) {
    out.push(`SEASON_WEDDING_THRESHOLD=${o.seasonWeddingThreshold} must be an integer of at least 1`)
  }
  return out
}

export class ScalingConfig extends Context.Service<ScalingConfig, ScalingOptions>()(
  "@wedsync/scaling/ScalingConfig"
) {
  static readonly layer = (options: Partial<ScalingOptions> = {}): Layer.Layer<ScalingConfig> =>
    Layer.succeed(ScalingConfig, { ...defaults, ...options })

  /** `config`, read through the current `ConfigProvider`. */
  static readonly layerConfig: Layer.Layer<ScalingConfig, Config.ConfigError> = Layer.effect(ScalingConfig, config)
}

/**
 * Wedding-season mode (`SEASON_MODE=on|off|auto`). `auto` reads the calendar: the season is on when the next
 * `SEASON_LOOKAHEAD` holds at least `SEASON_WEDDING_THRESHOLD` weddings, or when it is May to September (UTC) and the
 * window holds any wedding at all. In season the gateway trades memory for readiness: idle sockets are cleaned up
 * sooner, the caches hold more, capacity is asked for and warming runs earlier. `overrides` only computes the new
 * values; whoever owns the settings applies them.
 */
import type { Wedding } from "./Calendar.ts"
import type { ScalingOptions, SeasonModeSetting } from "./ScalingConfig.ts"

export interface Season {
  readonly active: boolean
  readonly reason: string
}

/** Months (0-based, UTC) when most weddings happen. */
const SEASON_MONTHS: ReadonlySet<number> = new Set([4, 5, 6, 7, 8])

export const resolve = (
  setting: SeasonModeSetting,
  weddings: ReadonlyArray<Wedding>,
  now: number,
  options: Pick<ScalingOptions, "seasonLookaheadMs" | "seasonWeddingThreshold">
): Season => {
  if (setting === "on") return { active: true, reason: "SEASON_MODE=on" }
  if (setting === "off") return { active: false, reason: "SEASON_MODE=off" }
  const until = now + options.seasonLookaheadMs
  let upcoming = 0
  for (const w of weddings) if (w.start >= now && w.start <= until) upcoming++
  const days = Math.round(options.seasonLookaheadMs / 86_400_000 * 10) / 10
  if (upcoming >= options.seasonWeddingThreshold) {
    return {
      active: true,
      reason: `${upcoming} weddings in the next ${days} days (threshold ${options.seasonWeddingThreshold})`
    }
  }
  if (upcoming > 0 && SEASON_MONTHS.has(new Date(now).getUTCMonth())) {
    return { active: true, reason: `May-September with ${upcoming} wedding(s) in the next ${days} days` }
  }
  return {
    active: false,
    reason: `${upcoming} weddings in the next ${days} days (threshold ${options.seasonWeddingThreshold})`
  }
}

/** The settings season mode changes, as they are outside the season. */
export interface SeasonSettings {
  /** `IDLE_TIMEOUT_MS`. */
  readonly idleTimeoutMs: number
  /** `CACHE_L1_MAX_ENTRIES`, `CACHE_L1_MAX_BYTES`. */
  readonly cacheL1MaxEntries: number
  readonly cacheL1MaxBytes: number
  /** `SCALE_LEAD_TIME`, `WARM_BEFORE_RAMP`. */
  readonly leadTimeMs: number
  readonly warmBeforeRampMs: number
}

/**
 * A socket is never declared idle in less than this: realtime-js sends a heartbeat every 25 s, so a shorter timeout
 * would close healthy clients.
 */
export const MIN_SEASON_IDLE_TIMEOUT_MS = 30_000
const IDLE_FACTOR = 0.75
const CACHE_FACTOR = 2
const EARLIER_FACTOR = 2

/** The values to use in season; nothing outside it. Idle cleanup only ever gets tighter, the rest only larger. */
export const overrides = (season: Season, base: SeasonSettings): Partial<SeasonSettings> =>
  season.active
    ? {
      idleTimeoutMs: Math.min(
        base.idleTimeoutMs,
        Math.max(MIN_SEASON_IDLE_TIMEOUT_MS, base.idleTimeoutMs * IDLE_FACTOR)
      ),
      cacheL1MaxEntries: base.cacheL1MaxEntries * CACHE_FACTOR,
      cacheL1MaxBytes: base.cacheL1MaxBytes * CACHE_FACTOR,
      leadTimeMs: base.leadTimeMs * EARLIER_FACTOR,
      warmBeforeRampMs: base.warmBeforeRampMs * EARLIER_FACTOR
    }
    : {}

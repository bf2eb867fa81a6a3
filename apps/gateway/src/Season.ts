/**
 * Wedding-season mode applied through configuration (`SEASON_MODE=on|off|auto`, issue 10).
 *
 * At start the season is resolved once (`auto` reads the calendar for the next `SEASON_LOOKAHEAD`) and its overrides
 * (`SeasonMode.overrides`: idle cleanup tighter, L1 cache larger, pre-scaling and warming earlier) replace the
 * configured values in `ConnectionConfig`, `CacheConfig` and `ScalingConfig` before any service reads them, so every
 * part of the process sees one consistent set. A season that turns on or off while the process runs is reported by
 * `ScalingController` (`/admin/scaling`, a log line) and applied at the next start: a rollout, or the daily restart a
 * deployment does anyway. Changing cache capacities and idle timeouts under live sockets would buy little (the season
 * turns over once a year) for a class of mid-flight states nobody tests.
 */
import { CacheConfig } from "@wedsync/cache"
import { ConnectionConfig } from "@wedsync/connection"
import { ScalingConfig, SeasonMode } from "@wedsync/scaling"
import { Clock, Context, Effect, Layer } from "effect"
import * as WeddingCalendar from "./WeddingCalendar.ts"

export interface AppliedSeason {
  readonly setting: ScalingConfig.SeasonModeSetting
  readonly active: boolean
  readonly reason: string
  /** The values in effect (the season's where it is active). */
  readonly settings: SeasonMode.SeasonSettings
  /** The configured values, before the season. */
  readonly configured: SeasonMode.SeasonSettings
}

export class Season extends Context.Service<Season, AppliedSeason>()("@wedsync/gateway/Season") {}

const settingsOf = (
  connection: ConnectionConfig.ConnectionOptions,
  cache: CacheConfig.CacheOptions,
  scaling: ScalingConfig.ScalingOptions
): SeasonMode.SeasonSettings => ({
  idleTimeoutMs: connection.idleTimeoutMs,
  cacheL1MaxEntries: cache.l1MaxEntries,
  cacheL1MaxBytes: cache.l1MaxBytes,
  leadTimeMs: scaling.leadTimeMs,
  warmBeforeRampMs: scaling.warmBeforeRampMs
})

/** `on`/`off` need no calendar; `auto` reads it, and an unreadable one leaves the season off with the reason. */
const resolveAtStart = (calendar: WeddingCalendar.Source | undefined) =>
  Effect.gen(function*() {
    const scaling = yield* ScalingConfig.ScalingConfig
    const configured = settingsOf(yield* ConnectionConfig.ConnectionConfig, yield* CacheConfig.CacheConfig, scaling)
    const now = yield* Clock.currentTimeMillis
    const weddings = scaling.seasonMode !== "auto" || calendar === undefined
      ? { weddings: [], error: undefined }
      : yield* WeddingCalendar.read(calendar, now, now + scaling.seasonLookaheadMs).pipe(
        Effect.map((loaded) => ({ weddings: loaded.weddings, error: undefined })),
        Effect.catch((error) => Effect.succeed({ weddings: [], error: error.message }))
      )
    const season = SeasonMode.resolve(scaling.seasonMode, weddings.weddings, now, scaling)
    const reason = weddings.error === undefined
      ? season.reason
      : `${season.reason}; the calendar could not be read: ${weddings.error}`
    const applied: AppliedSeason = {
      setting: scaling.seasonMode,
      active: season.active,
      reason,
      settings: { ...configured, ...SeasonMode.overrides(season, configured) },
      configured
    }
    yield* Effect.logInfo(
      `wedding-season mode ${season.active ? "on" : "off"} (SEASON_MODE=${scaling.seasonMode}): ${reason}`
    )
    return applied
  })

/**
 * The three configurations with the season applied, and the `Season` itself, from the configured layers.
 * `calendar` is read only for `SEASON_MODE=auto`.
 */
export const layers = <E1, E2, E3>(
  configured: {
    readonly connection: Layer.Layer<ConnectionConfig.ConnectionConfig, E1>
    readonly cache: Layer.Layer<CacheConfig.CacheConfig, E2>
    readonly scaling: Layer.Layer<ScalingConfig.ScalingConfig, E3>
  },
  calendar: WeddingCalendar.Source | undefined
) => {
  const season = Layer.effect(Season, resolveAtStart(calendar)).pipe(
    Layer.provide(Layer.mergeAll(configured.connection, configured.cache, configured.scaling))
  )
  const withSeason = <A, E>(configured: Layer.Layer<A, E>) => Layer.merge(configured, season)
  return {
    season,
    connection: Layer.effect(
      ConnectionConfig.ConnectionConfig,
      Effect.gen(function*() {
        const { settings } = yield* Season
        return { ...(yield* ConnectionConfig.ConnectionConfig), idleTimeoutMs: settings.idleTimeoutMs }
      })
    ).pipe(Layer.provide(withSeason(configured.connection))),
    cache: Layer.effect(
      CacheConfig.CacheConfig,
      Effect.gen(function*() {
        const { settings } = yield* Season
        return {
          ...(yield* CacheConfig.CacheConfig),
          l1MaxEntries: settings.cacheL1MaxEntries,
          l1MaxBytes: settings.cacheL1MaxBytes
        }
      })
    ).pipe(Layer.provide(withSeason(configured.cache))),
    scaling: Layer.effect(
      ScalingConfig.ScalingConfig,
      Effect.gen(function*() {
        const { settings } = yield* Season
        return {
          ...(yield* ScalingConfig.ScalingConfig),
          leadTimeMs: settings.leadTimeMs,
          warmBeforeRampMs: settings.warmBeforeRampMs
        }
      })
    ).pipe(Layer.provide(withSeason(configured.scaling)))
  }
}

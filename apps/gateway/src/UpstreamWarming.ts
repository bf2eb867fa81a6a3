/**
 * Pre-warming of the upstream in upstream mode with a wedding calendar (`WEDDING_CALENDAR_FILE`, or
 * `WEDDING_CALENDAR_SQL` over `DATABASE_URL`; see WeddingCalendar.ts): from `WARM_BEFORE_RAMP` before a wedding's
 * devices start arriving until the last of them left, its private `wedding:<id>` channel is held joined on the pool, so
 * the phones of a busy Saturday find their upstream channels (and the sockets carrying them) already open instead of
 * all asking for them at once. The spec is the one `UpstreamBroker` subscribes for a local join of that channel, so the
 * join reuses the warmed channel.
 *
 * Every minute the wanted set is held in a fresh scope before the previous one is closed, so a channel still wanted
 * never drops to no reference (and is never left and joined again); a wedding past its window is released (after
 * the pool's idle grace, when no local client holds it). The query is read again each time; a failed read keeps the
 * last weddings.
 */
import { type Calendar, LoadForecast, ScalingConfig } from "@wedsync/scaling"
import { UpstreamPool } from "@wedsync/upstream"
import { Clock, Effect, Exit, Layer, Result, Schedule, Scope } from "effect"
import * as WeddingCalendar from "./WeddingCalendar.ts"

const INTERVAL_MS = 60_000
const DAY_MS = 86_400_000

/** The weddings whose channels should be warm at `now`: from their warming time until their devices are gone. */
export const warmWeddings = (
  weddings: ReadonlyArray<Calendar.Wedding>,
  options: ScalingConfig.ScalingOptions,
  now: number
): ReadonlyArray<string> =>
  LoadForecast.make(weddings, options).phases
    .filter((p) => p.rampStart - options.warmBeforeRampMs <= now && now < p.declineEnd)
    .map((p) => p.id)

export const layer = (
  source: WeddingCalendar.Source
): Layer.Layer<never, Calendar.CalendarError, UpstreamPool.UpstreamPool | ScalingConfig.ScalingConfig> =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const config = yield* ScalingConfig.ScalingConfig
      const pool = yield* UpstreamPool.UpstreamPool
      const layerScope = yield* Effect.scope
      // A wedding in its window started at most a ramp, a warm-up and a day's length ago, and starts within as much.
      const read = Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => WeddingCalendar.read(source, now - DAY_MS, now + DAY_MS)
      )
      // The file was checked at start (`checkEnvironment`): a failure to read it is the operator's to see.
      let weddings = source._tag === "File" ? (yield* read).weddings : []
      let held: Scope.Closeable | undefined

      const warm = Effect.gen(function*() {
        if (source._tag === "Sql") {
          const loaded = yield* Effect.result(read)
          if (Result.isSuccess(loaded)) weddings = loaded.success.weddings
          else yield* Effect.logWarning(`upstream pre-warm: calendar not read: ${loaded.failure.message}`)
        }
        const now = yield* Clock.currentTimeMillis
        const ids = warmWeddings(weddings, config, now)
        const next = yield* Scope.fork(layerScope)
        const result = yield* pool.prewarm({
          sockets: 0,
          channels: ids.map((id) => ({ topic: `wedding:${id}`, isPrivate: true, presence: true }))
        }).pipe(Scope.provide(next))
        const previous = held
        held = next
        if (previous !== undefined) yield* Scope.close(previous, Exit.void)
        const refused = result.items.filter((item) => Result.isFailure(item.result)).length
        if (ids.length > 0 || refused > 0) {
          yield* Effect.logInfo("upstream pre-warm", { weddings: ids.length, sockets: result.bySocket.size, refused })
        }
      })

      yield* Effect.forkScoped(Effect.repeat(warm, Schedule.spaced(INTERVAL_MS)))
    })
  )

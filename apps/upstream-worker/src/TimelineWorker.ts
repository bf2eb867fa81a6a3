/**
 * A server-side worker of the monorepo on the upstream pool: it listens to the timeline table's Postgres Changes and
 * publishes each change as a `timeline_update` broadcast on its wedding's private channel (`wedding:<id>`), where the
 * couple's and suppliers' phones listen. It shows how an app depends on `@wedsync/upstream`: one `UpstreamPool` layer
 * from the environment, `prewarm` for the weddings ahead, `changes` for the table, subscriptions for the channels it
 * publishes on (reference-counted by the pool and released after the idle grace).
 */
import { type UpstreamError, UpstreamPool } from "@wedsync/upstream"
import { Context, Effect, Layer, Result, Scope } from "effect"
import { WorkerConfig } from "./WorkerConfig.ts"

/** The broadcast a phone receives for one timeline change. */
export interface TimelineUpdate {
  readonly action: "INSERT" | "UPDATE" | "DELETE"
  readonly item: Readonly<Record<string, unknown>>
}

interface RawChange {
  readonly type: "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE"
  readonly record?: Readonly<Record<string, unknown>>
  readonly old_record?: Readonly<Record<string, unknown>>
}

export interface TimelineWorkerShape {
  /** Updates published so far (for health checks and tests). */
  readonly published: Effect.Effect<number>
}

/** Fails when the upstream refuses the table's changes (the worker has nothing to do without them). */
export const make: Effect.Effect<
  TimelineWorkerShape,
  UpstreamError.UpstreamError,
  UpstreamPool.UpstreamPool | WorkerConfig | Scope.Scope
> = Effect.gen(function*() {
  const pool = yield* UpstreamPool.UpstreamPool
  const options = yield* WorkerConfig
  const scope = yield* Effect.scope
  const runFork = Effect.runForkWith(yield* Effect.context<never>())
  let published = 0

  const channelOf = (weddingId: string): UpstreamPool.ChannelSpec => ({
    topic: `wedding:${weddingId}`,
    isPrivate: true
  })

  // The weddings of the day, joined before their guests arrive: the first update of each goes out at once.
  const warmed = yield* pool.prewarm({ sockets: 1, channels: options.weddings.map(channelOf) })
  for (const item of warmed.items) {
    if (Result.isFailure(item.result)) {
      yield* Effect.logWarning("wedding channel not pre-warmed", {
        topic: item.request.topic,
        reason: item.result.failure.message
      })
    }
  }

  /** Publishes on the wedding's channel, joining it for the moment if it was not warmed (the pool keeps it idle). */
  const publish = (weddingId: string, update: TimelineUpdate) =>
    Effect.scoped(
      Effect.gen(function*() {
        const channel = yield* pool.subscribe(channelOf(weddingId), { onMessage: () => {} })
        yield* channel.send("timeline_update", update)
        published++
      })
    ).pipe(
      Effect.catch((error) => Effect.logWarning("timeline update not published", { weddingId, reason: error.message }))
    )

  yield* pool.changes({ schema: options.schema, table: options.table, event: "*" }, {
    onMessage: (message) => {
      if (message._tag !== "PostgresChange") return
      const change = message.data as RawChange
      if (change.type === "TRUNCATE") return
      const item = (change.type === "DELETE" ? change.old_record : change.record) ?? {}
      const weddingId = item["wedding_id"]
      if (typeof weddingId !== "string") return
      runFork(Effect.forkIn(publish(weddingId, { action: change.type, item }), scope))
    },
    onSignal: (signal) => {
      runFork(
        Effect.logWarning(`upstream ${signal._tag === "Interrupted" ? "lost" : "back"}`, { signal: signal._tag })
      )
    }
  })
  yield* Effect.logInfo("timeline worker ready", { table: `${options.schema}.${options.table}` })
  return { published: Effect.sync(() => published) }
})

export class TimelineWorker extends Context.Service<TimelineWorker, TimelineWorkerShape>()(
  "@wedsync/upstream-worker/TimelineWorker"
) {
  static readonly layer: Layer.Layer<
    TimelineWorker,
    UpstreamError.UpstreamError,
    UpstreamPool.UpstreamPool | WorkerConfig
  > = Layer.effect(
    TimelineWorker,
    make
  )
}

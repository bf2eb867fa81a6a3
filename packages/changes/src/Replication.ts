/**
 * One logical-replication stream (`pgoutput`) for the whole process.
 *
 * On start it makes sure the publication and a permanent logical slot exist (`Catalog`). `run` streams
 * committed transactions to one consumer strictly in commit order and reports a transaction's commit LSN to
 * Postgres only after the consumer finished with it (`ReplicationStream`), so a restarted gateway resumes
 * from the slot: nothing committed is lost and nothing acknowledged is delivered again. A transaction whose
 * consumer did not finish (crash, interruption, defect) is delivered again, so delivery across a restart is
 * at-least-once for that one transaction. A dropped connection (Postgres restart, network) is retried with
 * exponential backoff capped at 5 s (`backoff`), from the last confirmed position, never from a position
 * merely received.
 *
 * Values are typed the way Supabase sends them (see `PgValue`). It is not a change history: a consumer that
 * is not running misses nothing only because the slot waits.
 *
 * `layerMemory` is the same service without Postgres: a fixed catalog, and transactions a test commits
 * through `ReplicationFeed`.
 */
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Metric,
  Option,
  Queue,
  Schedule,
  Schema,
  type Scope
} from "effect"
import { CacheCodec, CacheKind, LayeredCache } from "@wedsync/cache"
import type { Column, Transaction } from "./ChangeEvent.ts"
import { Catalog, type CatalogShape, type IdentityGap, type Relation, sqlState } from "./Catalog.ts"
import { ChangesConfig } from "./ChangesConfig.ts"
import { ChangesError } from "./ChangesError.ts"
import * as ChangesMetrics from "./ChangesMetrics.ts"
import * as Lsn from "./Lsn.ts"
import * as ReplicationStream from "./ReplicationStream.ts"

export type { IdentityGap, Relation } from "./Catalog.ts"

/**
 * Where the stream is: `Waiting` out the start delay (the slot was free when it began), `Starting` a
 * connection, `Streaming` (delivering), or `Down` with the reason (Postgres away, the slot held by another
 * process, a broken stream); `Down` retries by itself.
 */
export type Status =
  | { readonly _tag: "Waiting" }
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Streaming" }
  | { readonly _tag: "Down"; readonly reason: string }

export interface ReplicationShape {
  /** The publication the stream reads (for messages). */
  readonly publication: string
  /**
   * Streams committed transactions to `consume`, one at a time in commit order, acknowledging each after
   * `consume` returned; reconnects forever on failure (a defect in `consume` included: that transaction
   * comes again). Runs until interrupted. Gotcha: one `run` per process, a second one dies.
   */
  readonly run: (
    consume: (transaction: Transaction) => Effect.Effect<void>
  ) => Effect.Effect<never, ChangesError, Scope.Scope>
  /** The table's columns and primary key when it exists and is in the publication, else undefined. */
  readonly relation: (schema: string, table: string) => Effect.Effect<Relation | undefined, ChangesError>
  /** Names of the published tables of `schema` (for whole-schema bindings). */
  readonly publishedTables: (schema: string) => Effect.Effect<ReadonlyArray<string>, ChangesError>
  /** Published scoped tables whose replica identity lacks their scope column; logged as warnings at start. */
  readonly identityGaps: Effect.Effect<ReadonlyArray<IdentityGap>, ChangesError>
  /** Completes while the stream is established; waits during a start delay or a reconnect. */
  readonly ready: Effect.Effect<void>
  /** The stream's state now, for readiness checks. */
  readonly status: Effect.Effect<Status>
}

/** Delays between failed stream attempts: 200 ms, doubling, capped at 5 s. */
export const backoff: Schedule.Schedule<Duration.Duration> = Schedule.min([
  Schedule.exponential("200 millis"),
  Schedule.spaced("5 seconds")
])

// The same failure every few seconds (a slot held for hours) is logged once a minute, with a count.
const logEveryMs = 60_000

const heldBy = (slot: string, detail: string) =>
  `replication slot ${slot} is held by another process (${detail}); is another gateway using the same REPLICATION_SLOT?`

/**
 * A table's published columns and key, as a binding's plan reads them: cached as subscription state, so a reconnect
 * storm asks the catalog once per table (and per unknown table, for the negative TTL), not three queries per join.
 */
const Plan = Schema.NullOr(Schema.Struct({
  columns: Schema.Array(Schema.Struct({ name: Schema.String, type: Schema.String })),
  primaryKey: Schema.Array(Schema.String)
}))
export const relationPlans = CacheKind.make({ name: "subscription", id: "relation", codec: CacheCodec.schema(Plan) })
const planKey = (schema: string, table: string) => JSON.stringify([schema, table])

/**
 * The catalog, with relation lookups through the `LayeredCache` when one is present, and each relation the stream
 * announces again (DDL) dropped from it on every process.
 */
const cachedCatalog = (catalog: CatalogShape, cache: LayeredCache.LayeredCacheShape): CatalogShape => ({
  ...catalog,
  relation: (schema, table) =>
    Effect.map(
      cache.get(relationPlans, planKey(schema, table), Effect.map(catalog.relation(schema, table), (r) => r ?? null)),
      (plan) => plan ?? undefined
    ),
  relationChanged: (relation) =>
    Effect.andThen(
      catalog.relationChanged(relation),
      cache.invalidate(relationPlans, planKey(relation.schema, relation.name))
    )
})

export const make = Effect.gen(function*() {
  const config = yield* ChangesConfig
  const cache = yield* Effect.serviceOption(LayeredCache.LayeredCache)
  const rawCatalog = yield* Catalog
  const catalog = Option.isSome(cache) ? cachedCatalog(rawCatalog, cache.value) : rawCatalog
  yield* catalog.ensurePublication
  yield* catalog.ensureSlot
  for (const gap of yield* catalog.identityGaps) {
    yield* Effect.logWarning(
      `Table ${gap.schema}.${gap.table} has ${gap.column}, but its replica identity does not include it: its DELETEs reach ` +
        `only service_role (counted in wedsync_changes_deletes_withheld_total) and a row moved to another ` +
        `${gap.column === "wedding_id" ? "wedding" : "supplier"} cannot be announced to the old one. Fix: ${gap.fix}`
    )
  }

  let status: Status = { _tag: "Starting" }
  // Replaced by a pending one whenever the stream is lost, so `ready` means "delivering now".
  let established = Deferred.makeUnsafe<void>()
  const ready = Effect.suspend(() => Deferred.await(established))
  const position: ReplicationStream.Position = { resumeFrom: Lsn.zero }

  /** Why a stream attempt failed, in words an operator can act on. */
  const describeFailure = (cause: Cause.Cause<ChangesError>): string => {
    if (Cause.hasDies(cause)) return `the consumer failed: ${Cause.pretty(cause)}`
    const error = Cause.squash(cause)
    const inner = error instanceof ChangesError ? error.reason.cause : undefined
    // 55006 object_in_use: another walsender streams this slot (a second gateway with the same REPLICATION_SLOT).
    if (sqlState(inner) === "55006")
      return heldBy(config.slotName, inner instanceof Error ? inner.message : "object in use")
    return error instanceof Error ? error.message : String(error)
  }

  let lastLog: { readonly key: string; readonly at: number; suppressed: number } | undefined
  const logFailure = (reason: string, delay: number) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const key = reason.replace(/\d+/g, "#")
      if (lastLog !== undefined && lastLog.key === key && now - lastLog.at < logEveryMs) {
        lastLog.suppressed++
        return
      }
      const repeats = lastLog !== undefined && lastLog.key === key && lastLog.suppressed > 0
        ? ` (${lastLog.suppressed} more times since the last report)`
        : ""
      lastLog = { key, at: now, suppressed: 0 }
      yield* Effect.logWarning(
        `Replication stream of slot ${config.slotName} stopped (${reason}); reconnecting in ${delay} ms${repeats}`
      )
    })

  // Counted, reported and logged when the delay is known, before the wait.
  const announcedBackoff = backoff.pipe(
    Schedule.setInputType<string>(),
    Schedule.tap(({ duration, input: reason }) =>
      Effect.gen(function*() {
        yield* Metric.update(ChangesMetrics.reconnects, 1)
        status = { _tag: "Down", reason }
        yield* logFailure(reason, Duration.toMillis(duration))
      })
    )
  )

  let running = false
  const run: ReplicationShape["run"] = (consume) =>
    Effect.gen(function*() {
      if (running) return yield* Effect.die(new Error("Replication.run is already running in this process"))
      running = true
      yield* Effect.addFinalizer(() => Effect.sync(() => void (running = false)))
      // Only on start, not on reconnects: gives a restarted gateway's clients time to rejoin.
      if (config.startDelayMs > 0) {
        const pid = yield* Effect.orElseSucceed(catalog.slotHolder, () => undefined)
        status = pid === undefined
          ? { _tag: "Waiting" }
          : { _tag: "Down", reason: heldBy(config.slotName, `PID ${pid}`) }
        yield* Effect.sleep(config.startDelayMs)
        if (status._tag === "Waiting") status = { _tag: "Starting" }
      }
      // Driven by hand rather than by `Effect.retry`: a stream that got going earns a fresh backoff.
      let wait = yield* Schedule.toStepWithMetadata(announcedBackoff)
      while (true) {
        let started = false
        const exit = yield* Effect.exit(Effect.scoped(ReplicationStream.attempt({
          config,
          catalog,
          position,
          consume,
          onStart: () => {
            started = true
            status = { _tag: "Streaming" }
            Deferred.doneUnsafe(established, Exit.void)
          }
        })))
        if (Exit.isSuccess(exit)) continue
        if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
        if (Deferred.isDoneUnsafe(established)) established = Deferred.makeUnsafe<void>()
        if (started) wait = yield* Schedule.toStepWithMetadata(announcedBackoff)
        // The backoff never ends, so its step never reports `Done`.
        yield* Effect.orDie(wait(describeFailure(exit.cause)))
      }
    })

  return {
    publication: config.publicationName,
    run,
    relation: catalog.relation,
    publishedTables: catalog.publishedTables,
    identityGaps: catalog.identityGaps,
    ready,
    status: Effect.sync(() => status)
  } satisfies ReplicationShape
})

/** A published table of `Replication.layerMemory`. */
export interface MemoryTable {
  readonly schema: string
  readonly table: string
  readonly columns: ReadonlyArray<Column>
  readonly primaryKey: ReadonlyArray<string>
}

/** The feeding end of `Replication.layerMemory`. */
export class ReplicationFeed extends Context.Service<ReplicationFeed, {
  /** Hands a transaction to the consumer of `run`; completes once the consumer finished with it (acknowledged). */
  readonly commit: (transaction: Transaction) => Effect.Effect<void>
}>()("@wedsync/changes/ReplicationFeed") {}

/** `Replication` over a fixed catalog and a queue of transactions, for tests of its consumers. */
export const makeMemory = (options: { readonly publication?: string; readonly tables: ReadonlyArray<MemoryTable> }) =>
  Effect.gen(function*() {
    const publication = options.publication ?? "memory"
    const pending = yield* Queue.unbounded<
      { readonly transaction: Transaction; readonly done: Deferred.Deferred<void> }
    >()
    const established = Deferred.makeUnsafe<void>()
    let status: Status = { _tag: "Starting" }
    const find = (schema: string, table: string) => options.tables.find((t) => t.schema === schema && t.table === table)
    const replication: ReplicationShape = {
      publication,
      run: (consume) =>
        Effect.gen(function*() {
          status = { _tag: "Streaming" }
          Deferred.doneUnsafe(established, Exit.void)
          while (true) {
            const { done, transaction } = yield* Queue.take(pending)
            yield* consume(transaction)
            yield* Deferred.succeed(done, undefined)
          }
        }),
      relation: (schema, table) => {
        const found = find(schema, table)
        return Effect.succeed(
          found === undefined ? undefined : { columns: found.columns, primaryKey: found.primaryKey }
        )
      },
      publishedTables: (schema) =>
        Effect.succeed(options.tables.filter((t) => t.schema === schema).map((t) => t.table).sort()),
      identityGaps: Effect.succeed([]),
      ready: Deferred.await(established),
      status: Effect.sync(() => status)
    }
    const commit = (transaction: Transaction) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<void>()
        yield* Queue.offer(pending, { transaction, done })
        yield* Deferred.await(done)
      })
    return Context.make(Replication, replication).pipe(Context.add(ReplicationFeed, ReplicationFeed.of({ commit })))
  })

export class Replication extends Context.Service<Replication, ReplicationShape>()("@wedsync/changes/Replication") {
  static readonly layer: Layer.Layer<Replication, ChangesError, ChangesConfig> = Layer.effect(Replication, make).pipe(
    Layer.provide(Catalog.layer)
  )

  /** No Postgres: `tables` are the publication, and transactions come from `ReplicationFeed.commit`. */
  static readonly layerMemory = (
    options: { readonly publication?: string; readonly tables: ReadonlyArray<MemoryTable> }
  ): Layer.Layer<Replication | ReplicationFeed> => Layer.effectContext(makeMemory(options))
}

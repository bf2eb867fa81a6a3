/**
 * One attempt at the pgoutput stream: from the slot's confirmed position (or further, see `Position`) it
 * assembles committed transactions, hands each to the consumer in commit order, and reports a commit's end
 * to Postgres (a standby status update) only after the consumer finished with it. Keepalives that arrive
 * with nothing in flight are confirmed too, so quiet tables do not pin WAL. The attempt fails when the
 * connection, the decoder or the consumer fails; `Replication` retries it.
 */
import { Cause, Clock, Effect, Metric, Queue, Redacted, Schedule, type Scope } from "effect"
import { LogicalReplicationService, type Pgoutput, PgoutputPlugin } from "pg-logical-replication"
import type { Action, ChangeEvent, Transaction } from "./ChangeEvent.ts"
import type { CatalogShape, Decoder } from "./Catalog.ts"
import type { ChangesOptions } from "./ChangesConfig.ts"
import { type ChangesError, replicationFailed } from "./ChangesError.ts"
import * as ChangesMetrics from "./ChangesMetrics.ts"
import * as Lsn from "./Lsn.ts"
import * as PgValue from "./PgValue.ts"

/**
 * The furthest position this process confirmed, kept across attempts. Postgres 15 keeps a slot's confirmed
 * position in memory and may not write it at shutdown (fixed in 17), so after a Postgres restart the slot can
 * be behind what was acknowledged; starting the stream here instead skips those transactions on the server.
 */
export interface Position {
  resumeFrom: Lsn.Lsn
}

/**
 * pgoutput that leaves every value in Postgres' text form (pg's global type parsers would turn
 * timestamps into Dates and int8 into strings) and reports each message as it arrives off the socket,
 * before the flow-control queue, which is what tells a keepalive that nothing is still in flight.
 */
class TextPgoutputPlugin extends PgoutputPlugin {
  readonly #onArrival: () => void
  readonly #onError: (cause: unknown) => void
  constructor(options: Pgoutput.Options, onArrival: () => void, onError: (cause: unknown) => void) {
    super(options)
    this.#onArrival = onArrival
    this.#onError = onError
  }
  override parse(buffer: Buffer): Pgoutput.Message {
    this.#onArrival()
    let message: Pgoutput.Message
    // This runs inside pg's socket handler, where a throw would take the process down: fail the stream instead.
    try {
      message = super.parse(buffer)
    } catch (cause) {
      this.#onError(cause)
      return { tag: "origin", originLsn: null, originName: "" }
    }
    // The decoder keeps this relation object and reads later tuples with these parsers.
    if (message.tag === "relation") { for (const column of message.columns) column.parser = PgValue.keepText }
    return message
  }
}

// Text forms the value rule relies on, whatever the server's defaults are.
const sessionOptions = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres"

const inboxCapacity = 1_024

const toRecord = (decoder: Decoder, tuple: PgValue.Tuple | null, fallback: PgValue.Tuple | null) =>
  PgValue.toRecord(decoder.columns, decoder.converts, tuple, fallback)

interface Inbound {
  readonly lsn: string
  readonly message: Pgoutput.Message
}

/** One stream from the confirmed position; fails when the connection or the consumer fails. */
export const attempt = (options: {
  readonly config: ChangesOptions
  readonly catalog: CatalogShape
  readonly position: Position
  readonly consume: (transaction: Transaction) => Effect.Effect<void>
  /** Called once Postgres started streaming. */
  readonly onStart: () => void
}): Effect.Effect<never, ChangesError, Scope.Scope> =>
  Effect.gen(function*() {
    const { catalog, config, consume, position } = options
    yield* catalog.ensurePublication
    // The position Postgres last heard from us: commits consumed, or keepalives seen with nothing in flight.
    position.resumeFrom = Lsn.max(position.resumeFrom, Lsn.parse(yield* catalog.ensureSlot))
    let confirmed = position.resumeFrom
    const confirm = (lsn: Lsn.Lsn) => {
      if (lsn <= confirmed) return false
      confirmed = lsn
      position.resumeFrom = Lsn.max(position.resumeFrom, lsn)
      return true
    }
    const context = yield* Effect.context<never>()
    const inbox = yield* Queue.bounded<Inbound, ChangesError>(inboxCapacity)
    yield* Effect.addFinalizer(() => Queue.shutdown(inbox))
    const fail = (error: ChangesError) => void Queue.failCauseUnsafe(inbox, Cause.fail(error))

    let arrived = 0
    let processed = 0
    let inTransaction = false
    const plugin = new TextPgoutputPlugin(
      { protoVersion: 1, publicationNames: [config.publicationName] },
      () => void arrived++,
      (cause) => fail(replicationFailed("Could not decode a pgoutput message", cause))
    )
    const service = new LogicalReplicationService(
      { connectionString: Redacted.value(config.databaseUrl), options: sessionOptions },
      // Never acknowledge on a timer: the library would report the last position received, not consumed.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } }
    )
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        service.removeAllListeners()
        // The library may still report a late failure after stop; an unheard "error" event would throw.
        service.on("error", () => undefined)
        return Effect.ignore(Effect.tryPromise(() => service.stop()))
      })
    )
    // The library reports `lsn + 1` as flushed. Postgres skips, on restart, every transaction whose commit
    // record starts before the reported position, and the next commit record may start right at this one's
    // end: report exactly the end.
    const report = (lsn: Lsn.Lsn): Effect.Effect<void, ChangesError> =>
      lsn === Lsn.zero ? Effect.void : Effect.tryPromise({
        try: () => service.acknowledge(Lsn.format(Lsn.add(lsn, -1))),
        catch: (cause) => replicationFailed(`Could not acknowledge ${Lsn.format(lsn)}`, cause)
      })
    // The status update of a keepalive or of the timer: best effort, the next one says the same or more.
    const reportConfirmed = Effect.suspend(() => Effect.ignore(report(confirmed)))

    // The library awaits this handler, and the offer waits while the inbox is full: that is the backpressure.
    // Never rejects: once the attempt ended, what still arrives is dropped.
    service.on("data", (lsn: string, message: Pgoutput.Message) =>
      Effect.runPromiseWith(context)(Effect.asVoid(Effect.exit(Queue.offer(inbox, { lsn, message })))))
    service.on("heartbeat", (lsn: string, _timestamp: number, shouldRespond: boolean) => {
      // With everything received consumed, the keepalive's position is safe to confirm: it lets Postgres
      // recycle WAL of other tables' writes while our tables are quiet.
      const idle = arrived === processed && !inTransaction
      if ((idle && confirm(Lsn.parse(lsn))) || shouldRespond)
        Effect.runForkWith(context)(reportConfirmed)
    })
    service.on("start", options.onStart)
    service.on("error", (cause: Error) =>
      fail(replicationFailed("Replication stream failed", cause)))
    yield* Effect.forkScoped(
      Effect.tryPromise({
        try: () =>
          service.subscribe(plugin, config.slotName, Lsn.format(confirmed)),
        catch: (cause) => replicationFailed("Replication stream failed", cause)
      }).pipe(
        Effect.andThen(Effect.fail(replicationFailed("Replication stream ended", "the server closed it"))),
        Effect.catch((error) => Effect.sync(() => fail(error)))
      )
    )
    yield* Effect.forkScoped(reportConfirmed.pipe(Effect.repeat(Schedule.spaced(config.statusIntervalMs ?? 10_000))))

    let changes: Array<ChangeEvent> = []
    let commitMillis = 0
    let commitTimestamp = ""
    const add = (
      rel: Pgoutput.MessageRelation,
      decoder: Decoder,
      action: Action,
      record: Record<string, unknown> | undefined,
      oldRecord: Record<string, unknown> | undefined
    ) =>
      void changes.push({
        schema: rel.schema,
        table: rel.name,
        action,
        commitTimestamp,
        columns: decoder.columns,
        primaryKey: decoder.primaryKey,
        record,
        oldRecord,
        ...(decoder.scopeHidden ? { scopeHidden: true } : {})
      })

    while (true) {
      const { lsn, message } = yield* Queue.take(inbox)
      switch (message.tag) {
        case "begin":
          inTransaction = true
          changes = []
          commitMillis = Number(message.commitTime.valueOf() / 1000n)
          commitTimestamp = new Date(commitMillis).toISOString()
          break
        case "relation":
          // Sent again after ALTER TABLE: columns, types or key may have changed.
          yield* catalog.relationChanged(message)
          break
        case "insert": {
          const decoder = yield* catalog.decoder(message.relation)
          add(message.relation, decoder, "INSERT", toRecord(decoder, message.new, null), undefined)
          break
        }
        case "update": {
          const decoder = yield* catalog.decoder(message.relation)
          const before = message.old ?? message.key
          add(
            message.relation,
            decoder,
            "UPDATE",
            toRecord(decoder, message.new, before),
            toRecord(decoder, before, null)
          )
          break
        }
        case "delete": {
          const decoder = yield* catalog.decoder(message.relation)
          add(message.relation, decoder, "DELETE", undefined, toRecord(decoder, message.old ?? message.key, null))
          break
        }
        case "truncate":
          for (const rel of message.relations) add(rel, yield* catalog.decoder(rel), "TRUNCATE", undefined, undefined)
          break
        case "commit": {
          const end = Lsn.parse(message.commitEndLsn ?? lsn)
          const transaction: Transaction = { lsn: Lsn.format(end), commitTimestamp, changes }
          // Interruptible while the consumer works (that transaction then comes again), but a finished
          // fan-out is always acknowledged, so a graceful shutdown delivers nothing twice.
          yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function*() {
              if (transaction.changes.length > 0) {
                yield* restore(consume(transaction))
                const now = yield* Clock.currentTimeMillis
                yield* Metric.update(ChangesMetrics.transactions, 1)
                yield* Metric.update(ChangesMetrics.events, transaction.changes.length)
                yield* Metric.update(ChangesMetrics.lag, Math.max(0, now - commitMillis) / 1000)
              }
              yield* report(end)
              confirm(end)
            })
          )
          changes = []
          inTransaction = false
          break
        }
        default:
          break
      }
      processed++
    }
  })

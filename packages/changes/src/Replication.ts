/**
 * One logical-replication stream (`pgoutput`) for the whole process.
 *
 * On start it makes sure the publication and a permanent logical slot exist. `run` streams
 * committed transactions to one consumer in commit order and acknowledges a transaction's LSN only
 * after the consumer finished with it, so a restarted gateway resumes from the slot with nothing
 * committed lost and nothing acknowledged delivered again. A dropped connection (Postgres restart,
 * network) is retried with backoff from a fresh stream, which starts at the slot's confirmed
 * position, never at a position merely received.
 */
import { Context, Deferred, Effect, Exit, Layer, Redacted, Schedule, type Scope } from "effect"
import pg from "pg"
import { LogicalReplicationService, type Pgoutput, PgoutputPlugin } from "pg-logical-replication"
import type { ChangeEvent, Column, Transaction } from "./ChangeEvent.ts"
import { ChangesConfig } from "./ChangesConfig.ts"
import { type ChangesError, unavailable } from "./ChangesError.ts"

export interface Relation {
  readonly columns: ReadonlyArray<Column>
  readonly primaryKey: ReadonlyArray<string>
}

export interface ReplicationShape {
  /** Streams to `consume` until the scope closes, reconnecting on failure; acknowledges after each consume. */
  readonly run: (consume: (transaction: Transaction) => Effect.Effect<void>) => Effect.Effect<never, never, Scope.Scope>
  /** The table's columns and primary key when it is in the publication, else undefined. */
  readonly relation: (schema: string, table: string) => Effect.Effect<Relation | undefined, ChangesError>
  /** Completes once the stream is established (and stays complete). */
  readonly ready: Effect.Effect<void>
}

const quote = (identifier: string) => `"${identifier.replaceAll("\"", "\"\"")}"`

const qualified = (name: string) => name.split(".").map(quote).join(".")

/** Values as Supabase sends them (it casts to jsonb): numbers, booleans, parsed JSON, strings. */
const jsonValue = (type: string, value: unknown): unknown => {
  if (value === null || value === undefined) return null
  if (Array.isArray(value)) return value.map((item) => jsonValue(type.startsWith("_") ? type.slice(1) : type, item))
  if (value instanceof Date) {
    if (type === "date") {
      const pad = (n: number) => String(n).padStart(2, "0")
      return `${value.getFullYear()}-${pad(value.getMonth() + 1)}-${pad(value.getDate())}`
    }
    return value.toISOString()
  }
  if ((type === "int8" || type === "numeric") && typeof value === "string") {
    const n = Number(value)
    return type === "int8" ? (Number.isSafeInteger(n) ? n : value) : String(n) === value ? n : value
  }
  return value
}

export const make = Effect.gen(function*() {
  const config = yield* ChangesConfig
  const url = Redacted.value(config.databaseUrl)
  // A pool, not one client: it replaces connections that a Postgres restart killed.
  const admin = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const pool = new pg.Pool({ connectionString: url, max: 2 })
        pool.on("error", () => undefined)
        await pool.query("select 1")
        return pool
      },
      catch: (cause) => unavailable("Realtime was unable to connect to the project database", cause)
    }),
    (pool) => Effect.promise(() => pool.end().catch(() => undefined))
  )
  const query = <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) =>
    Effect.tryPromise({
      try: () => admin.query<R>(text, [...values]),
      catch: (cause) => unavailable("Postgres query failed", cause)
    })

  const publication = yield* query(`select 1 from pg_publication where pubname = $1`, [config.publicationName])
  if (publication.rowCount === 0) {
    const target = config.tables === "all" ? "all tables" : `table ${config.tables.map(qualified).join(", ")}`
    yield* query(`create publication ${quote(config.publicationName)} for ${target}`)
  }
  const slot = yield* query(`select 1 from pg_replication_slots where slot_name = $1`, [config.slotName])
  if (slot.rowCount === 0) {
    yield* query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [config.slotName])
  }

  const typeNames = new Map<number, string>()
  const primaryKeys = new Map<number, ReadonlyArray<string>>()
  /** The primary key of a relation (its replica identity may be FULL, i.e. every column). */
  const resolvePrimaryKey = async (rel: Pgoutput.MessageRelation) => {
    if (primaryKeys.has(rel.relationOid)) return
    const result = await admin.query<{ name: string }>(
      `select a.attname as name from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
       where i.indrelid = $1::oid and i.indisprimary`,
      [rel.relationOid]
    )
    primaryKeys.set(rel.relationOid, result.rows.length > 0 ? result.rows.map((r) => r.name) : rel.keyColumns)
  }
  const primaryKeyOf = (rel: Pgoutput.MessageRelation) => primaryKeys.get(rel.relationOid) ?? rel.keyColumns
  const resolveTypes = async (oids: ReadonlyArray<number>) => {
    const missing = oids.filter((oid) => !typeNames.has(oid))
    if (missing.length === 0) return
    const result = await admin.query<{ oid: number; typname: string }>(
      `select oid::int as oid, typname from pg_type where oid = any($1::oid[])`,
      [missing]
    )
    for (const row of result.rows) typeNames.set(row.oid, row.typname)
  }

  const relation: ReplicationShape["relation"] = (schema, table) =>
    Effect.gen(function*() {
      const published = yield* query(
        `select 1 from pg_publication_tables where pubname = $1 and schemaname = $2 and tablename = $3`,
        [config.publicationName, schema, table]
      )
      if (published.rowCount === 0) return undefined
      const columns = yield* query<{ name: string; type: string }>(
        `select a.attname as name, t.typname as type from pg_attribute a join pg_type t on t.oid = a.atttypid
         where a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass and a.attnum > 0 and not a.attisdropped
         order by a.attnum`,
        [schema, table]
      )
      const keys = yield* query<{ name: string }>(
        `select a.attname as name from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
         where i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass and i.indisprimary`,
        [schema, table]
      )
      return { columns: columns.rows, primaryKey: keys.rows.map((r) => r.name) }
    })

  const ready = yield* Deferred.make<void>()

  const toEvent = (
    message: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete,
    commitTimestamp: string
  ): ChangeEvent => {
    const rel = message.relation
    const columns = rel.columns.map((c) => ({ name: c.name, type: typeNames.get(c.typeOid) ?? c.typeName ?? "unknown" }))
    const typeOf = new Map(columns.map((c) => [c.name, c.type]))
    const convert = (row: Record<string, unknown> | null | undefined) => {
      if (row === null || row === undefined) return undefined
      const out: Record<string, unknown> = {}
      for (const [name, value] of Object.entries(row)) {
        if (value !== undefined) out[name] = jsonValue(typeOf.get(name) ?? "unknown", value)
      }
      return out
    }
    const action = message.tag === "insert" ? "INSERT" : message.tag === "update" ? "UPDATE" : "DELETE"
    const old = message.tag === "insert" ? undefined : convert(message.old ?? message.key)
    return {
      schema: rel.schema,
      table: rel.name,
      action,
      commitTimestamp,
      columns,
      primaryKey: primaryKeyOf(rel),
      record: message.tag === "delete" ? undefined : convert(message.new),
      oldRecord: old
    }
  }

  /** One stream from the slot's confirmed position; fails when the connection ends. */
  const streamOnce = (consume: (transaction: Transaction) => Effect.Effect<void>, runPromise: <A>(effect: Effect.Effect<A>) => Promise<A>) =>
    Effect.callback<never, ChangesError>((resume) => {
      const service = new LogicalReplicationService(
        { connectionString: url },
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } }
      )
      const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [config.publicationName] })
      let changes: Array<ChangeEvent> = []
      let commitTimestamp = ""
      // Keepalives that ask for a reply get the last position actually acknowledged, never the last
      // received one; without replies the walsender drops the stream after wal_sender_timeout and
      // holds a Postgres shutdown for as long.
      let acknowledged = "0/0"
      service.on("heartbeat", (_lsn: string, _timestamp: number, shouldRespond: boolean) => {
        if (shouldRespond) void service.acknowledge(acknowledged).catch(() => undefined)
      })
      service.on("start", () => {
        Deferred.doneUnsafe(ready, Exit.void)
      })
      service.on("data", async (_lsn: string, message: Pgoutput.Message) => {
        switch (message.tag) {
          case "begin":
            changes = []
            commitTimestamp = new Date(Number(message.commitTime.valueOf() / 1000n)).toISOString()
            return
          case "insert":
          case "update":
          case "delete":
            await resolveTypes(message.relation.columns.map((c) => c.typeOid))
            await resolvePrimaryKey(message.relation)
            changes.push(toEvent(message, commitTimestamp))
            return
          case "truncate":
            for (const rel of message.relations) {
              changes.push({
                schema: rel.schema,
                table: rel.name,
                action: "TRUNCATE",
                commitTimestamp,
                columns: [],
                primaryKey: primaryKeyOf(rel),
                record: undefined,
                oldRecord: undefined
              })
            }
            return
          case "commit": {
            const lsn = message.commitEndLsn ?? _lsn
            await runPromise(consume({ lsn, commitTimestamp, changes }))
            changes = []
            await service.acknowledge(lsn)
            acknowledged = lsn
            return
          }
          default:
            return
        }
      })
      service.on("error", (cause: Error) => resume(Effect.fail(unavailable("Replication stream failed", cause))))
      service.subscribe(plugin, config.slotName).then(
        () => resume(Effect.fail(unavailable("Replication stream ended", "closed"))),
        (cause: unknown) => resume(Effect.fail(unavailable("Replication stream failed", cause)))
      )
      return Effect.promise(() => service.stop().then(() => undefined, () => undefined))
    })

  const run: ReplicationShape["run"] = (consume) =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const runPromise = <A>(effect: Effect.Effect<A>) => Effect.runPromiseWith(context)(effect)
      // Only on start, not on reconnects: gives a restarted gateway's clients time to rejoin.
      if (config.startDelayMs > 0) yield* Effect.sleep(config.startDelayMs)
      return yield* streamOnce(consume, runPromise).pipe(
        Effect.tapError((error) => Effect.logWarning(`replication: ${error.message}; reconnecting`)),
        Effect.retry(Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("5 seconds")])),
        Effect.orDie
      )
    })

  return { run, relation, ready: Deferred.await(ready) } satisfies ReplicationShape
})

export class Replication extends Context.Service<Replication, ReplicationShape>()("@wedsync/changes/Replication") {
  static readonly layer: Layer.Layer<Replication, ChangesError, ChangesConfig> = Layer.effect(Replication, make)
}

/**
 * One logical-replication stream (`pgoutput`) for the whole process.
 *
 * On start it makes sure the publication and a permanent logical slot exist. `run` streams committed
 * transactions to one consumer strictly in commit order and reports a transaction's commit LSN to Postgres
 * only after the consumer finished with it, so a restarted gateway resumes from the slot: nothing committed
 * is lost and nothing acknowledged is delivered again. A transaction whose consumer did not finish (crash,
 * interruption, defect) is delivered again, so delivery across a restart is at-least-once for that one
 * transaction. A dropped connection (Postgres restart, network) is retried with exponential backoff capped
 * at 5 s, from the last confirmed position, never from a position merely received.
 *
 * Values are converted from Postgres' text form the way Supabase sends them (it casts rows to jsonb):
 * integers, floats and numerics become numbers (int8/numeric beyond 2^53 stay strings), bool a boolean,
 * json/jsonb parsed JSON, arrays JSON arrays of their element rule, SQL NULL null, and everything else,
 * timestamps included, the text Postgres prints in a UTC/ISO session ("2026-01-01 12:00:00.123+00").
 * It is not a change history: a consumer that is not running misses nothing only because the slot waits.
 */
import { Cause, Clock, Context, Deferred, Effect, Exit, Layer, Metric, Queue, Redacted, Schedule, type Scope } from "effect"
import pg from "pg"
import { LogicalReplicationService, type Pgoutput, PgoutputPlugin } from "pg-logical-replication"
import type { Action, ChangeEvent, Column, Transaction } from "./ChangeEvent.ts"
import { ChangesConfig } from "./ChangesConfig.ts"
import { ChangesError, publicationMissing, replicationFailed, unavailable } from "./ChangesError.ts"
import * as ChangesMetrics from "./ChangesMetrics.ts"

/** A published table as the catalog describes it, for join-time validation. */
export interface Relation {
  readonly columns: ReadonlyArray<Column>
  readonly primaryKey: ReadonlyArray<string>
}

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

/**
 * A published table with `wedding_id` (or `supplier_id`) whose replica identity does not carry that column:
 * its DELETE images (and the old image of an UPDATE that moves a row) lack the scope, so such deletes reach
 * only `service_role`.
 */
export interface IdentityGap {
  readonly schema: string
  readonly table: string
  readonly column: string
  /** SQL that closes the gap: `REPLICA IDENTITY FULL`, or a unique index with the scope column as identity. */
  readonly fix: string
}

export interface ReplicationShape {
  /** The publication the stream reads (for messages). */
  readonly publication: string
  /**
   * Streams committed transactions to `consume`, one at a time in commit order, acknowledging each after
   * `consume` returned; reconnects forever on failure (a defect in `consume` included: that transaction
   * comes again). Runs until interrupted. Gotcha: one `run` per process, a second one dies.
   */
  readonly run: (consume: (transaction: Transaction) => Effect.Effect<void>) => Effect.Effect<never, ChangesError, Scope.Scope>
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

// ---------------------------------------------------------------------------------------------------------------------
// LSNs

const lsnValue = (lsn: string): bigint => {
  const [high = "0", low = "0"] = lsn.split("/")
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}

const lsnText = (value: bigint): string =>
  `${(value >> 32n).toString(16)}/${(value & 0xffffffffn).toString(16)}`.toUpperCase()

/** Postgres' spelling ("0/16B3748"); the decoder pads each half to eight digits. */
export const formatLsn = (lsn: string): string => lsnText(lsnValue(lsn))

// ---------------------------------------------------------------------------------------------------------------------
// Values

type Convert = (text: string) => unknown

const keepText: Convert = (text) => text

const integer: Convert = (text) => {
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : text
}

const decimal: Convert = (text) => {
  const n = Number(text)
  return Number.isFinite(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER ? n : text
}

// NaN and ±Infinity have no JSON number.
const float: Convert = (text) => {
  const n = Number(text)
  return Number.isFinite(n) ? n : text
}

// A Map: type names come from the catalog, and a type may be named `constructor` or `__proto__`.
const scalars: ReadonlyMap<string, Convert> = new Map<string, Convert>([
  ["int2", integer],
  ["int4", integer],
  ["int8", integer],
  ["oid", integer],
  ["float4", float],
  ["float8", float],
  ["numeric", decimal],
  ["bool", (text) => text === "t"],
  ["json", (text) => JSON.parse(text)],
  ["jsonb", (text) => JSON.parse(text)]
])

/**
 * Parses array_out's text form: `{1,2}`, `{{a,b},{c,NULL}}`, `[0:1]={x,y}`, elements quoted with `"` and
 * backslash escapes when they contain delimiters, braces, quotes, spaces or spell NULL.
 */
export const parseArray = (text: string, delimiter: string, element: Convert): unknown => {
  let i = text.startsWith("[") ? text.indexOf("=") + 1 : 0
  const parse = (): Array<unknown> => {
    const out: Array<unknown> = []
    i++ // "{"
    if (text.charAt(i) === "}") {
      i++
      return out
    }
    while (i < text.length) {
      const c = text.charAt(i)
      if (c === "{") {
        out.push(parse())
      } else if (c === "\"") {
        let value = ""
        i++
        while (i < text.length && text.charAt(i) !== "\"") {
          if (text.charAt(i) === "\\") i++
          value += text.charAt(i)
          i++
        }
        i++
        out.push(element(value))
      } else {
        let end = i
        while (end < text.length && text.charAt(end) !== delimiter && text.charAt(end) !== "}") end++
        const raw = text.slice(i, end)
        i = end
        // array_out quotes the string "NULL", so an unquoted NULL is SQL null.
        out.push(raw.toUpperCase() === "NULL" ? null : element(raw))
      }
      if (text.charAt(i) === delimiter) {
        i++
      } else {
        i++ // "}"
        return out
      }
    }
    return out
  }
  return parse()
}

interface TypeInfo {
  readonly name: string
  readonly category: string
  /** Element type of an array type, else 0. */
  readonly elem: number
  /** Base type of a domain, else 0. */
  readonly base: number
  readonly delimiter: string
}

/** What a tuple decodes with: the relation's columns, a converter per column, and its key. */
interface Decoder {
  readonly columns: ReadonlyArray<Column>
  readonly converts: ReadonlyArray<Convert>
  readonly primaryKey: ReadonlyArray<string>
  readonly scopeHidden: boolean
}

type Tuple = Readonly<Record<string, unknown>>

const toRecord = (decoder: Decoder, tuple: Tuple | null, fallback: Tuple | null): Record<string, unknown> | undefined => {
  if (tuple === null) return undefined
  // Null prototype: column names are the database's strings, and `__proto__` is a valid column name.
  const out: Record<string, unknown> = Object.create(null)
  for (let i = 0; i < decoder.columns.length; i++) {
    const name = decoder.columns[i]!.name
    // An unchanged TOASTed value is absent from the new image; the old image (FULL identity, or the key) has it.
    let raw = tuple[name]
    if (raw === undefined && fallback !== null) raw = fallback[name]
    if (raw === undefined) continue
    out[name] = raw === null ? null : typeof raw === "string" ? decoder.converts[i]!(raw) : raw
  }
  return out
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
    if (message.tag === "relation") for (const column of message.columns) column.parser = keepText
    return message
  }
}

// Text forms the value rule relies on, whatever the server's defaults are.
const sessionOptions = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres"

const quote = (identifier: string) => `"${identifier.replaceAll("\"", "\"\"")}"`

const qualified = (name: string) => name.split(".").map(quote).join(".")

const sqlState = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

const isDuplicate = (error: ChangesError) => sqlState(error.reason.cause) === "42710"

/** `REPLICA IDENTITY FULL`, or (scope column NOT NULL) a unique index on (primary key, scope column) as identity. */
const identityFix = (schema: string, table: string, column: string, primaryKey: ReadonlyArray<string> | null): string => {
  const target = `${quote(schema)}.${quote(table)}`
  const full = `ALTER TABLE ${target} REPLICA IDENTITY FULL;`
  if (primaryKey === null || primaryKey.length === 0) return full
  const index = `${table}_${column}_identity`.slice(0, 63)
  const columns = [...primaryKey, column].map(quote).join(", ")
  return `${full} Or, with ${column} NOT NULL: CREATE UNIQUE INDEX ${quote(index)} ON ${target} (${columns}); ` +
    `ALTER TABLE ${target} REPLICA IDENTITY USING INDEX ${quote(index)};`
}

const maxBackoffMs = 5_000
const inboxCapacity = 1_024

interface Inbound {
  readonly lsn: string
  readonly message: Pgoutput.Message
}

export const make = Effect.gen(function*() {
  const config = yield* ChangesConfig
  const url = Redacted.value(config.databaseUrl)
  const statusInterval = config.statusIntervalMs ?? 10_000
  // A pool, not one client: it replaces connections that a Postgres restart killed.
  const admin = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => {
        const pool = new pg.Pool({ connectionString: url, max: 2 })
        pool.on("error", () => undefined)
        return pool.query("select 1").then(() => pool, (cause: unknown) => pool.end().then(() => Promise.reject(cause)))
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

  const ensurePublication = Effect.gen(function*() {
    const found = yield* query(`select 1 from pg_publication where pubname = $1`, [config.publicationName])
    if (found.rowCount !== 0) return
    const target = config.tables === "all" ? "all tables" : `table ${config.tables.map(qualified).join(", ")}`
    yield* Effect.tryPromise({
      try: () => admin.query(`create publication ${quote(config.publicationName)} for ${target}`),
      catch: (cause) => publicationMissing(config.publicationName, cause)
    }).pipe(Effect.catchIf(isDuplicate, () => Effect.void))
    yield* Effect.logInfo(`Created publication ${config.publicationName} for ${target}`)
  })

  /** Creates the slot when missing; returns its confirmed position, where a new stream starts. */
  const ensureSlot = Effect.gen(function*() {
    const lookup = query<{ plugin: string | null; database: string | null; current: string; confirmed: string | null }>(
      `select plugin, database, current_database() as current, confirmed_flush_lsn::text as confirmed
       from pg_replication_slots where slot_name = $1`,
      [config.slotName]
    )
    let found = (yield* lookup).rows[0]
    if (found === undefined) {
      yield* Effect.tryPromise({
        try: () => admin.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [config.slotName]),
        catch: (cause) => replicationFailed(`Could not create replication slot ${config.slotName}`, cause)
      }).pipe(Effect.catchIf(isDuplicate, () => Effect.void))
      yield* Effect.logInfo(`Created replication slot ${config.slotName}`)
      found = (yield* lookup).rows[0]
    }
    if (found === undefined || found.plugin !== "pgoutput" || found.database !== found.current) {
      return yield* Effect.fail(replicationFailed(
        `Replication slot ${config.slotName} is not a pgoutput slot of database ${found?.current ?? "?"}`,
        found === undefined ? "dropped while starting" : `plugin ${found.plugin}, database ${found.database}`
      ))
    }
    return found.confirmed ?? "0/0"
  })

  yield* ensurePublication
  yield* ensureSlot

  // Type names and converters, resolved once per OID.
  const types = new Map<number, TypeInfo>()
  const converters = new Map<number, Convert>()
  const loadTypes = (oids: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      let missing = [...new Set(oids)].filter((oid) => !types.has(oid))
      while (missing.length > 0) {
        const result = yield* query<{ oid: number; name: string; category: string; elem: number; base: number; delimiter: string }>(
          `select oid, typname as name, typcategory as category, typelem as elem, typbasetype as base, typdelim as delimiter
           from pg_type where oid = any($1::oid[])`,
          [missing]
        )
        for (const row of result.rows) types.set(Number(row.oid), { ...row, elem: Number(row.elem), base: Number(row.base) })
        for (const oid of missing) if (!types.has(oid)) types.set(oid, { name: "unknown", category: "X", elem: 0, base: 0, delimiter: "," })
        const referenced = result.rows.flatMap((row) => [Number(row.elem), Number(row.base)])
        missing = [...new Set(referenced)].filter((oid) => oid !== 0 && !types.has(oid))
      }
    })
  const converterOf = (oid: number): Convert => {
    const cached = converters.get(oid)
    if (cached !== undefined) return cached
    const info = types.get(oid)
    let convert: Convert = keepText
    if (info !== undefined && info.base !== 0) {
      convert = converterOf(info.base)
    } else if (info !== undefined && info.category === "A" && info.elem !== 0) {
      const element = converterOf(info.elem)
      const delimiter = types.get(info.elem)?.delimiter ?? ","
      // int2vector and oidvector print space-separated lists without braces: keep those as text.
      convert = (text) => text.startsWith("{") || text.startsWith("[") ? parseArray(text, delimiter, element) : text
    } else if (info !== undefined) {
      convert = scalars.get(info.name) ?? keepText
    }
    converters.set(oid, convert)
    return convert
  }

  const primaryKeyQuery = `
    select a.attname as name
    from (select indrelid, indkey from pg_index where indrelid = $1::oid and (indisprimary or indisreplident)
          order by indisprimary desc limit 1) i
    cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, position)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
    order by k.position`

  const decoders = new Map<number, Decoder>()
  const decoderOf = (rel: Pgoutput.MessageRelation) =>
    Effect.gen(function*() {
      const oid = rel.relationOid >>> 0
      const known = decoders.get(oid)
      if (known !== undefined) return known
      const typeOids = rel.columns.map((c) => c.typeOid >>> 0)
      yield* loadTypes(typeOids)
      const keys = yield* query<{ name: string }>(primaryKeyQuery, [oid])
      // With FULL identity every column is flagged as key; without a primary key that says nothing.
      const fallback = rel.replicaIdentity === "full" ? [] : rel.keyColumns
      // The table's scope column (wedding_id, else supplier_id), published or not.
      const scope = yield* query<{ name: string }>(
        `select attname::text as name from pg_attribute
         where attrelid = $1::oid and attname in ('wedding_id', 'supplier_id') and attnum > 0 and not attisdropped
         order by attname = 'wedding_id' desc limit 1`,
        [oid]
      )
      const scopeColumn = scope.rows[0]?.name
      const scopeHidden = scopeColumn !== undefined && !rel.columns.some((c) => c.name === scopeColumn)
      if (scopeHidden) {
        yield* Effect.logWarning(
          `Table ${rel.schema}.${rel.name} has ${scopeColumn}, but publication ${config.publicationName} leaves it out of ` +
            `its column list: its rows reach only service_role. Publish the column to let members see them.`
        )
      }
      const decoder: Decoder = {
        columns: rel.columns.map((c, i) => ({ name: c.name, type: types.get(typeOids[i]!)?.name ?? "unknown" })),
        converts: typeOids.map(converterOf),
        primaryKey: keys.rows.length > 0 ? keys.rows.map((r) => r.name) : fallback,
        scopeHidden
      }
      decoders.set(oid, decoder)
      return decoder
    })

  const relation: ReplicationShape["relation"] = (schema, table) =>
    Effect.gen(function*() {
      const published = yield* query<{ oid: number; attnames: Array<string> | null }>(
        `select (quote_ident(schemaname) || '.' || quote_ident(tablename))::regclass::oid as oid, attnames::text[] as attnames
         from pg_publication_tables where pubname = $1 and schemaname = $2 and tablename = $3`,
        [config.publicationName, schema, table]
      )
      const row = published.rows[0]
      if (row === undefined) return undefined
      const columns = yield* query<{ name: string; type: string }>(
        `select a.attname as name, t.typname as type from pg_attribute a join pg_type t on t.oid = a.atttypid
         where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
         order by a.attnum`,
        [row.oid]
      )
      const keys = yield* query<{ name: string }>(primaryKeyQuery, [row.oid])
      const listed = row.attnames === null ? undefined : new Set(row.attnames)
      return {
        columns: columns.rows.filter((c) => listed === undefined || listed.has(c.name)),
        primaryKey: keys.rows.map((r) => r.name)
      }
    })

  const publishedTables: ReplicationShape["publishedTables"] = (schema) =>
    Effect.map(
      query<{ table: string }>(
        `select tablename as table from pg_publication_tables where pubname = $1 and schemaname = $2 order by 1`,
        [config.publicationName, schema]
      ),
      (result) => result.rows.map((row) => row.table)
    )

  const identityGaps: ReplicationShape["identityGaps"] = Effect.map(
    query<{ schema: string; table: string; column: string; primary_key: Array<string> | null }>(
      `select pt.schemaname as schema, pt.tablename as table, s.attname as column,
         (select array_agg(a.attname::text order by k.ord) from pg_index i
            cross join lateral unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
            join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
          where i.indrelid = c.oid and i.indisprimary) as primary_key
       from pg_publication_tables pt
       join pg_namespace n on n.nspname = pt.schemaname
       join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
       cross join lateral (
         select a.attname::text as attname, a.attnum from pg_attribute a
         where a.attrelid = c.oid and a.attname in ('wedding_id', 'supplier_id') and a.attnum > 0 and not a.attisdropped
         order by a.attname = 'wedding_id' desc limit 1) s
       where pt.pubname = $1 and c.relreplident <> 'f'
         and not exists (
           select 1 from pg_index i where i.indrelid = c.oid
             and ((c.relreplident = 'd' and i.indisprimary) or (c.relreplident = 'i' and i.indisreplident))
             and s.attnum = any(i.indkey::int2[]))
       order by 1, 2`,
      [config.publicationName]
    ),
    (result) => result.rows.map((row) => ({ ...row, fix: identityFix(row.schema, row.table, row.column, row.primary_key) }))
  )

  for (const gap of yield* identityGaps) {
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

  // The furthest position this process confirmed. Postgres 15 keeps a slot's confirmed position in memory
  // and may not write it at shutdown (fixed in 17), so after a Postgres restart the slot can be behind what
  // was acknowledged; starting the stream here instead skips those transactions on the server.
  let resumeFrom = 0n

  /** One stream from the confirmed position; fails when the connection or the consumer fails. */
  const streamOnce = (consume: (transaction: Transaction) => Effect.Effect<void>, onStart: () => void) =>
    Effect.gen(function*() {
      yield* ensurePublication
      // The position Postgres last heard from us: commits consumed, or keepalives seen with nothing in flight.
      const slotPosition = yield* ensureSlot
      if (lsnValue(slotPosition) > resumeFrom) resumeFrom = lsnValue(slotPosition)
      let confirmed = lsnText(resumeFrom)
      const confirm = (lsn: string) => {
        const value = lsnValue(lsn)
        if (value <= lsnValue(confirmed)) return false
        confirmed = lsn
        if (value > resumeFrom) resumeFrom = value
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
        { connectionString: url, options: sessionOptions },
        // Never acknowledge on a timer: the library would report the last position received, not consumed.
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } }
      )
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => {
          service.removeAllListeners()
          // The library may still report a late failure after stop; an unheard "error" event would throw.
          service.on("error", () => undefined)
          return service.stop().then(() => undefined, () => undefined)
        })
      )
      // The library reports `lsn + 1` as flushed. Postgres skips, on restart, every transaction whose commit
      // record starts before the reported position, and the next commit record may start right at this one's
      // end: report exactly the end.
      const report = (lsn: string) => {
        const value = lsnValue(lsn)
        if (value === 0n) return Promise.resolve()
        return service.acknowledge(lsnText(value - 1n)).then(() => undefined)
      }

      service.on("data", (lsn: string, message: Pgoutput.Message) =>
        Effect.runPromiseWith(context)(Queue.offer(inbox, { lsn, message })).then(() => undefined, () => undefined))
      service.on("heartbeat", (lsn: string, _timestamp: number, shouldRespond: boolean) => {
        // With everything received consumed, the keepalive's position is safe to confirm: it lets Postgres
        // recycle WAL of other tables' writes while our tables are quiet.
        const idle = arrived === processed && !inTransaction
        if (idle && confirm(lsn)) {
          report(confirmed).catch(() => undefined)
        } else if (shouldRespond) {
          report(confirmed).catch(() => undefined)
        }
      })
      service.on("start", () => {
        status = { _tag: "Streaming" }
        onStart()
        Deferred.doneUnsafe(established, Exit.void)
      })
      service.on("error", (cause: Error) => fail(replicationFailed("Replication stream failed", cause)))
      service.subscribe(plugin, config.slotName, confirmed).then(
        () => fail(replicationFailed("Replication stream ended", "the server closed it")),
        (cause: unknown) => fail(replicationFailed("Replication stream failed", cause))
      )
      yield* Effect.forkScoped(
        Effect.promise(() => report(confirmed).catch(() => undefined)).pipe(Effect.repeat(Schedule.spaced(statusInterval)))
      )

      let changes: Array<ChangeEvent> = []
      let commitMillis = 0
      let commitTimestamp = ""
      const push = (rel: Pgoutput.MessageRelation, action: Action, record: Tuple | undefined, oldRecord: Tuple | undefined) =>
        Effect.map(decoderOf(rel), (decoder) => {
          changes.push({
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
            decoders.delete(message.relationOid >>> 0)
            break
          case "insert": {
            const decoder = yield* decoderOf(message.relation)
            yield* push(message.relation, "INSERT", toRecord(decoder, message.new, null), undefined)
            break
          }
          case "update": {
            const decoder = yield* decoderOf(message.relation)
            const before = message.old ?? message.key
            yield* push(message.relation, "UPDATE", toRecord(decoder, message.new, before), toRecord(decoder, before, null))
            break
          }
          case "delete": {
            const decoder = yield* decoderOf(message.relation)
            yield* push(message.relation, "DELETE", undefined, toRecord(decoder, message.old ?? message.key, null))
            break
          }
          case "truncate":
            for (const rel of message.relations) yield* push(rel, "TRUNCATE", undefined, undefined)
            break
          case "commit": {
            const end = formatLsn(message.commitEndLsn ?? lsn)
            const transaction: Transaction = { lsn: end, commitTimestamp, changes }
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
                yield* Effect.tryPromise({
                  try: () => report(end),
                  catch: (cause) => replicationFailed(`Could not acknowledge ${end}`, cause)
                })
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

  /** Why a stream attempt failed, in words an operator can act on. */
  const describeFailure = (cause: Cause.Cause<ChangesError>): string => {
    if (Cause.hasDies(cause)) return `the consumer failed: ${Cause.pretty(cause)}`
    const error = Cause.squash(cause)
    const inner = error instanceof ChangesError ? error.reason.cause : undefined
    // 55006 object_in_use: another walsender streams this slot (a second gateway with the same REPLICATION_SLOT).
    if (sqlState(inner) === "55006") {
      return `replication slot ${config.slotName} is held by another process (${
        inner instanceof Error ? inner.message : "object in use"
      }); is another gateway using the same REPLICATION_SLOT?`
    }
    return error instanceof Error ? error.message : String(error)
  }

  /** The slot's holder, when another process streams it. */
  const holder = Effect.map(
    query<{ pid: number | null }>(`select active_pid as pid from pg_replication_slots where slot_name = $1 and active`, [
      config.slotName
    ]),
    (result) => result.rows[0]?.pid ?? undefined
  )

  // The same failure every few seconds (a slot held for hours) is logged once a minute, with a count.
  const logEveryMs = 60_000
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

  let running = false
  const run: ReplicationShape["run"] = (consume) =>
    Effect.gen(function*() {
      if (running) return yield* Effect.die(new Error("Replication.run is already running in this process"))
      running = true
      yield* Effect.addFinalizer(() => Effect.sync(() => void (running = false)))
      // Only on start, not on reconnects: gives a restarted gateway's clients time to rejoin.
      if (config.startDelayMs > 0) {
        const pid = yield* Effect.orElseSucceed(holder, () => undefined)
        status = pid === undefined
          ? { _tag: "Waiting" }
          : { _tag: "Down", reason: `replication slot ${config.slotName} is held by another process (PID ${pid}); is another gateway using the same REPLICATION_SLOT?` }
        yield* Effect.sleep(config.startDelayMs)
        if (status._tag === "Waiting") status = { _tag: "Starting" }
      }
      let failures = 0
      while (true) {
        let started = false
        const exit = yield* Effect.exit(Effect.scoped(streamOnce(consume, () => void (started = true))))
        if (Exit.isSuccess(exit)) continue
        if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
        if (Deferred.isDoneUnsafe(established)) established = Deferred.makeUnsafe<void>()
        // A stream that got going earns a fresh backoff; one that keeps failing backs off to the cap.
        if (started) failures = 0
        const delay = Math.min(maxBackoffMs, 200 * 2 ** failures)
        failures++
        yield* Metric.update(ChangesMetrics.reconnects, 1)
        const reason = describeFailure(exit.cause)
        status = { _tag: "Down", reason }
        yield* logFailure(reason, delay)
        yield* Effect.sleep(delay)
      }
    })

  return {
    publication: config.publicationName,
    run,
    relation,
    publishedTables,
    identityGaps,
    ready,
    status: Effect.sync(() => status)
  } satisfies ReplicationShape
})

export class Replication extends Context.Service<Replication, ReplicationShape>()("@wedsync/changes/Replication") {
  static readonly layer: Layer.Layer<Replication, ChangesError, ChangesConfig> = Layer.effect(Replication, make)
}

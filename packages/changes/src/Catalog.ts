/**
 * What the stream needs from Postgres' catalog, and the DDL it runs: the publication (created when missing),
 * the permanent logical slot (created when missing, checked to be a `pgoutput` slot of this database, never
 * dropped), the published tables and their columns and keys, the replica identities that hide a row's scope,
 * and the types and keys a pgoutput relation decodes with.
 *
 * Every query runs on a small pool of its own, not on the replication connection: a pool replaces the
 * connections a Postgres restart killed.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import pg from "pg"
import type { Pgoutput } from "pg-logical-replication"
import type { Column } from "./ChangeEvent.ts"
import { ChangesConfig } from "./ChangesConfig.ts"
import { type ChangesError, publicationMissing, replicationFailed, unavailable } from "./ChangesError.ts"
import * as PgValue from "./PgValue.ts"

/** A published table as the catalog describes it, for join-time validation. */
export interface Relation {
  readonly columns: ReadonlyArray<Column>
  readonly primaryKey: ReadonlyArray<string>
}

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

/** What the tuples of one relation decode with: its columns, a converter per column, and its key. */
export interface Decoder {
  readonly columns: ReadonlyArray<Column>
  readonly converts: ReadonlyArray<PgValue.Convert>
  readonly primaryKey: ReadonlyArray<string>
  /** The table has a scope column that the publication's column list leaves out. */
  readonly scopeHidden: boolean
}

export interface CatalogShape {
  /** Creates the publication when missing (for `ChangesConfig.tables`); an existing one is left alone. */
  readonly ensurePublication: Effect.Effect<void, ChangesError>
  /** Creates the slot when missing and checks it; returns its confirmed position, where a new stream starts. */
  readonly ensureSlot: Effect.Effect<string, ChangesError>
  /** The PID of the process streaming the slot now, if any. */
  readonly slotHolder: Effect.Effect<number | undefined, ChangesError>
  /** The table's columns and primary key when it exists and is in the publication, else undefined. */
  readonly relation: (schema: string, table: string) => Effect.Effect<Relation | undefined, ChangesError>
  /** Names of the published tables of `schema`. */
  readonly publishedTables: (schema: string) => Effect.Effect<ReadonlyArray<string>, ChangesError>
  /** Published scoped tables whose replica identity lacks their scope column. */
  readonly identityGaps: Effect.Effect<ReadonlyArray<IdentityGap>, ChangesError>
  /** The decoder of a relation the stream announced, built once and kept until `forget`. */
  readonly decoder: (relation: Pgoutput.MessageRelation) => Effect.Effect<Decoder, ChangesError>
  /**
   * Postgres announced a relation again (after ALTER TABLE): drops its decoder, and whatever was cached about it
   * (`Replication` adds the cached plans of the table to this).
   */
  readonly relationChanged: (relation: Pgoutput.MessageRelation) => Effect.Effect<void>
}

const quote = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`

const qualified = (name: string) => name.split(".").map(quote).join(".")

/** The SQLSTATE of a pg error, if `cause` is one. */
export const sqlState = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

// 42710 duplicate_object: another process created it between our check and our create.
const isDuplicate = (error: ChangesError) => sqlState(error.reason.cause) === "42710"

/** `REPLICA IDENTITY FULL`, or (scope column NOT NULL) a unique index on (primary key, scope column) as identity. */
const identityFix = (
  schema: string,
  table: string,
  column: string,
  primaryKey: ReadonlyArray<string> | null
): string => {
  const target = `${quote(schema)}.${quote(table)}`
  const full = `ALTER TABLE ${target} REPLICA IDENTITY FULL;`
  if (primaryKey === null || primaryKey.length === 0) return full
  const index = `${table}_${column}_identity`.slice(0, 63)
  const columns = [...primaryKey, column].map(quote).join(", ")
  return `${full} Or, with ${column} NOT NULL: CREATE UNIQUE INDEX ${quote(index)} ON ${target} (${columns}); ` +
    `ALTER TABLE ${target} REPLICA IDENTITY USING INDEX ${quote(index)};`
}

const primaryKeyQuery = `
    select a.attname as name
    from (select indrelid, indkey from pg_index where indrelid = $1::oid and (indisprimary or indisreplident)
          order by indisprimary desc limit 1) i
    cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, position)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
    order by k.position`

export const make = Effect.gen(function*() {
  const config = yield* ChangesConfig
  const admin = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new pg.Pool({ connectionString: Redacted.value(config.databaseUrl), max: 2 })
      pool.on("error", () => undefined)
      return pool
    }),
    (pool) => Effect.ignore(Effect.tryPromise(() => pool.end()))
  )
  yield* Effect.tryPromise({
    try: () => admin.query("select 1"),
    catch: (cause) => unavailable("Realtime was unable to connect to the project database", cause)
  })
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

  const slotHolder = Effect.map(
    query<{ pid: number | null }>(
      `select active_pid as pid from pg_replication_slots where slot_name = $1 and active`,
      [
        config.slotName
      ]
    ),
    (result) => result.rows[0]?.pid ?? undefined
  )

  const relation: CatalogShape["relation"] = (schema, table) =>
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

  const publishedTables: CatalogShape["publishedTables"] = (schema) =>
    Effect.map(
      query<{ table: string }>(
        `select tablename as table from pg_publication_tables where pubname = $1 and schemaname = $2 order by 1`,
        [config.publicationName, schema]
      ),
      (result) => result.rows.map((row) => row.table)
    )

  const identityGaps: CatalogShape["identityGaps"] = Effect.map(
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
    (result) =>
      result.rows.map((row) => ({ ...row, fix: identityFix(row.schema, row.table, row.column, row.primary_key) }))
  )

  // Kept for the process: OIDs of types do not change under a running stream.
  const types = new PgValue.Types()
  const loadTypes = (oids: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      let missing = types.missing(oids)
      while (missing.length > 0) {
        const result = yield* query<
          { oid: number; name: string; category: string; elem: number; base: number; delimiter: string }
        >(
          `select oid, typname as name, typcategory as category, typelem as elem, typbasetype as base, typdelim as delimiter
           from pg_type where oid = any($1::oid[])`,
          [missing]
        )
        for (const row of result.rows)
          types.add(Number(row.oid), { ...row, elem: Number(row.elem), base: Number(row.base) })
        for (const oid of missing)
          if (!types.has(oid))
            types.add(oid, PgValue.unknownType)
        missing = types.missing(result.rows.flatMap((row) => [Number(row.elem), Number(row.base)]))
      }
    })

  const decoders = new Map<number, Decoder>()
  const decoder: CatalogShape["decoder"] = (rel) =>
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
      const built: Decoder = {
        columns: rel.columns.map((c, i) => ({ name: c.name, type: types.name(typeOids[i]!) })),
        converts: typeOids.map((typeOid) => types.converter(typeOid)),
        primaryKey: keys.rows.length > 0 ? keys.rows.map((r) => r.name) : fallback,
        scopeHidden
      }
      decoders.set(oid, built)
      return built
    })

  return {
    ensurePublication,
    ensureSlot,
    slotHolder,
    relation,
    publishedTables,
    identityGaps,
    decoder,
    relationChanged: (relation) => Effect.sync(() => void decoders.delete(relation.relationOid >>> 0))
  } satisfies CatalogShape
})

export class Catalog extends Context.Service<Catalog, CatalogShape>()("@wedsync/changes/Catalog") {
  static readonly layer: Layer.Layer<Catalog, ChangesError, ChangesConfig> = Layer.effect(Catalog, make)
}

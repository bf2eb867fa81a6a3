/**
 * Wedding-season warming: before a wedding starts, put into the layered cache what its devices will ask for when they
 * all connect at once, so the reconnect storms of the day hit a warm cache instead of Postgres.
 *
 * `WEDDING_CALENDAR_SQL` is the operator's query for the weddings of a time window: it gets the window's start and
 * end as `$1` and `$2` (timestamptz) and returns at least `wedding_id` and `starts_at`, optionally `supplier_ids` (an
 * array) and `expected_devices`. For the weddings starting within `WARM_AHEAD` the warmer
 * - seeds the membership decisions of every member of those weddings and suppliers (one query on `MEMBERSHIP_TABLE`
 *   for all of them, not one per user), as `Memberships.isMember` would have cached them, and
 * - loads the table plans of every published table (`Replication.relation`, which reads through the cache).
 * It runs at start and then every `WARM_INTERVAL`, and on demand (`POST /admin/cache/warm`). A failed run is logged and
 * does not stop the gateway: warming only saves work. Decisions are seeded only as "member": a removal is followed by
 * the replication stream as always, so a warmed decision is revoked like any other.
 */
import { Memberships } from "@wedsync/auth"
import { LayeredCache } from "@wedsync/cache"
import { Clock, Context, Duration, Effect, Layer, Redacted, Schedule } from "effect"
import pg from "pg"
import { ChangesConfig } from "./ChangesConfig.ts"
import { type ChangesError, unavailable } from "./ChangesError.ts"
import type { TableName } from "./MembershipTable.ts"
import { Replication } from "./Replication.ts"

export interface WarmerOptions {
  /** The calendar query; `undefined` turns warming off. */
  readonly calendarSql: string | undefined
  /** Weddings starting within this much time from now are warmed. */
  readonly ahead: Duration.Duration
  /** Time between scheduled runs. */
  readonly interval: Duration.Duration
  /** `MEMBERSHIP_TABLE`, when memberships come from a table. */
  readonly membershipTable: TableName | undefined
}

/** What one run did. */
export interface WarmReport {
  readonly weddings: number
  readonly suppliers: number
  /** Membership decisions seeded. */
  readonly decisions: number
  /** Table plans loaded (or found fresh). */
  readonly plans: number
  readonly durationMs: number
}

export interface Service {
  /** False without `WEDDING_CALENDAR_SQL`: `warm` then does nothing. */
  readonly enabled: boolean
  readonly warm: Effect.Effect<WarmReport, ChangesError>
}

/** Seeds and plan loads in flight at once: enough to finish thousands in seconds, few enough to leave room for joins. */
const CONCURRENCY = 16

const quote = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`

const EMPTY: WarmReport = { weddings: 0, suppliers: 0, decisions: 0, plans: 0, durationMs: 0 }

export const make = (options: WarmerOptions) =>
  Effect.gen(function*() {
    const calendarSql = options.calendarSql
    if (calendarSql === undefined) return { enabled: false, warm: Effect.succeed(EMPTY) } satisfies Service
    const config = yield* ChangesConfig
    const cache = yield* LayeredCache.LayeredCache
    const replication = yield* Replication
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = new pg.Pool({ connectionString: Redacted.value(config.databaseUrl), max: 2 })
        p.on("error", () => undefined)
        return p
      }),
      (p) => Effect.promise(() => p.end())
    )
    const query = <R extends pg.QueryResultRow>(what: string, text: string, values: ReadonlyArray<unknown> = []) =>
      Effect.tryPromise({
        try: () => pool.query<R>(text, [...values]),
        catch: (cause) => unavailable(what, cause)
      })

    /** The members of the given weddings and suppliers, as grants, from one query per scope column the table has. */
    const membersOf = (table: TableName, weddings: ReadonlyArray<string>, suppliers: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const columns = new Set(
          (yield* query<{ name: string }>(
            "reading the membership table's columns",
            `select column_name as name from information_schema.columns where table_schema = $1 and table_name = $2`,
            [table.schema, table.table]
          )).rows.map((row) => row.name)
        )
        const grants: Array<Memberships.Grant> = []
        const from = `${quote(table.schema)}.${quote(table.table)}`
        for (
          const [scope, column, ids] of [["wedding", "wedding_id", weddings], [
            "supplier",
            "supplier_id",
            suppliers
          ]] as const
        ) {
          if (ids.length === 0 || !columns.has(column)) continue
          // Compared as text: the ids come from the calendar as text, whatever the column's type.
          const { rows } = yield* query<{ user_id: string; id: string }>(
            `reading the members of ${ids.length} ${scope}s`,
            `select user_id::text as user_id, ${column}::text as id from ${from} where ${column}::text = any($1::text[])`,
            [ids]
          )
          for (const row of rows) grants.push({ userId: row.user_id, scope, id: row.id })
        }
        return grants
      })

    const warm: Effect.Effect<WarmReport, ChangesError> = Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const until = started + Duration.toMillis(options.ahead)
      const { rows } = yield* query<{ wedding_id: unknown; supplier_ids?: unknown }>(
        "running WEDDING_CALENDAR_SQL",
        calendarSql,
        [new Date(started), new Date(until)]
      )
      const weddings = new Set<string>()
      const suppliers = new Set<string>()
      for (const row of rows) {
        if (row.wedding_id !== null && row.wedding_id !== undefined) weddings.add(String(row.wedding_id))
        if (Array.isArray(row.supplier_ids)) { for (const id of row.supplier_ids) suppliers.add(String(id)) }
      }
      yield* Effect.logInfo(
        `cache warming: ${weddings.size} weddings and ${suppliers.size} suppliers in the next ${
          Duration.format(options.ahead)
        }`
      )
      const grants = options.membershipTable === undefined
        ? []
        : yield* membersOf(options.membershipTable, [...weddings], [...suppliers])
      // Seeded as `isMember` caches them: through `get`, whose loader is the answer the bulk query already gave.
      const member = Effect.succeed(true)
      yield* Effect.forEach(grants, (grant) => cache.get(Memberships.kind, Memberships.keyOf(grant), member), {
        concurrency: CONCURRENCY,
        discard: true
      })
      const tables = (yield* query<{ schema: string; table: string }>(
        "listing the published tables",
        `select schemaname as schema, tablename as table from pg_publication_tables where pubname = $1`,
        [replication.publication]
      )).rows
      yield* Effect.forEach(tables, (t) => replication.relation(t.schema, t.table), {
        concurrency: CONCURRENCY,
        discard: true
      })
      const report: WarmReport = {
        weddings: weddings.size,
        suppliers: suppliers.size,
        decisions: grants.length,
        plans: tables.length,
        durationMs: (yield* Clock.currentTimeMillis) - started
      }
      yield* Effect.logInfo(
        `cache warmed: ${report.decisions} membership decisions, ${report.plans} table plans in ${report.durationMs} ms`
      )
      return report
    })

    // At start and on every interval; a failed run is logged, the next one tries again.
    yield* Effect.forkScoped(
      warm.pipe(
        Effect.catch((error) => Effect.logWarning(`cache warming failed: ${error.message}`)),
        Effect.repeat(Schedule.spaced(options.interval))
      )
    )
    return { enabled: true, warm } satisfies Service
  })

export class Warmer extends Context.Service<Warmer, Service>()("@wedsync/changes/Warmer") {
  static readonly layer = (
    options: WarmerOptions
  ): Layer.Layer<Warmer, never, ChangesConfig | LayeredCache.LayeredCache | Replication> =>
    Layer.effect(Warmer, make(options))

  /** No calendar or no database: nothing is warmed. */
  static readonly layerNoop: Layer.Layer<Warmer> = Layer.succeed(Warmer, {
    enabled: false,
    warm: Effect.succeed(EMPTY)
  })
}

/**
 * The Postgres membership table (`MEMBERSHIP_TABLE`) as the `MembershipSource` of `Memberships`: one decision is one
 * query, `select 1 from <table> where user_id = $1 and wedding_id = $2 limit 1` (or `supplier_id`), on a small pool of
 * its own. It needs an index that starts with those two columns, e.g.
 * `create index on public.wedding_members (user_id, wedding_id)` (and one on `(user_id, supplier_id)`), or the
 * primary key `(user_id, wedding_id)`.
 *
 * At start it checks that the table exists with a `user_id` column and a `wedding_id` and/or `supplier_id` column
 * (a decision about a scope the table lacks is "no" without a query). It warns when the table is not in the
 * publication, and when its replica identity does not let deletes carry `user_id` and the scope columns
 * (`REPLICA IDENTITY FULL`, or an identity index over them): in both cases deletes cannot revoke at once. Following
 * the table's changes is `PostgresChanges`' job (`membershipTable`).
 */
import { Memberships } from "@wedsync/auth"
import { Effect, Layer, Redacted } from "effect"
import pg from "pg"
import { sqlState } from "./Catalog.ts"
import { ChangesConfig } from "./ChangesConfig.ts"
import { type ChangesError, unavailable } from "./ChangesError.ts"

/** A table name, `schema.table` or `table` (schema `public`). */
export interface TableName {
  readonly schema: string
  readonly table: string
}

/** `public.wedding_members` → `{ schema: "public", table: "wedding_members" }`; `undefined` when not a name. */
export const parse = (name: string): TableName | undefined => {
  const parts = name.trim().split(".")
  if (parts.length > 2 || parts.some((part) => !/^[A-Za-z_][A-Za-z0-9_$]*$/.test(part))) return undefined
  return parts.length === 1 ? { schema: "public", table: parts[0]! } : { schema: parts[0]!, table: parts[1]! }
}

const quote = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`

// 22P02 invalid_text_representation, 22003 numeric_value_out_of_range: an id that cannot be in a column of that type
// (a topic `wedding:abc` against a uuid or bigint column) is simply not a member.
const notAnId = (cause: unknown) => {
  const state = sqlState(cause)
  return state === "22P02" || state === "22003"
}

const lookupFailed = (cause: unknown) =>
  new Memberships.MembershipError({
    reason: new Memberships.MembershipUnavailable({
      message: `membership query failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      cause
    })
  })

export const make = (name: TableName) =>
  Effect.gen(function*() {
    const config = yield* ChangesConfig
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new pg.Pool({ connectionString: Redacted.value(config.databaseUrl), max: 4 })
        pool.on("error", () => undefined)
        return pool
      }),
      (pool) => Effect.ignore(Effect.tryPromise(() => pool.end()))
    )
    const target = `${quote(name.schema)}.${quote(name.table)}`
    const described = yield* Effect.tryPromise({
      try: () =>
        pool.query<{ columns: Array<string> | null; identity: string }>(
          `select c.relreplident as identity,
                  (select array_agg(a.attname::text) from pg_attribute a
                   where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = $1 and c.relname = $2`,
          [name.schema, name.table]
        ),
      catch: (cause): ChangesError => unavailable(`MEMBERSHIP_TABLE ${target} could not be read`, cause)
    })
    const row = described.rows[0]
    const columns = new Set(row?.columns ?? [])
    if (row === undefined || !columns.has("user_id") || (!columns.has("wedding_id") && !columns.has("supplier_id"))) {
      return yield* Effect.fail(
        unavailable(
          `MEMBERSHIP_TABLE ${target}`,
          new Error("needs a table with a user_id column and a wedding_id and/or supplier_id column")
        )
      )
    }
    if (row.identity !== "f") {
      yield* Effect.logWarning(
        `MEMBERSHIP_TABLE ${target} has REPLICA IDENTITY ${row.identity === "i" ? "USING INDEX" : "DEFAULT"}: ` +
          `unless that identity includes user_id and wedding_id/supplier_id, its deletes cannot revoke at once. ` +
          `Run: ALTER TABLE ${target} REPLICA IDENTITY FULL;`
      )
    }
    // A publication the gateway creates later covers the table when it is FOR ALL TABLES or lists it.
    const published = yield* Effect.tryPromise({
      try: () =>
        pool.query<{ exists: boolean; listed: boolean }>(
          `select exists (select 1 from pg_publication where pubname = $1) as exists,
                  exists (select 1 from pg_publication_tables
                          where pubname = $1 and schemaname = $2 and tablename = $3) as listed`,
          [config.publicationName, name.schema, name.table]
        ),
      catch: (cause): ChangesError => unavailable(`MEMBERSHIP_TABLE ${target} could not be read`, cause)
    })
    const publication = published.rows[0]
    const missing = publication?.exists === true
      ? publication.listed !== true
      : config.tables !== "all" && !config.tables.includes(`${name.schema}.${name.table}`)
    if (missing) {
      yield* Effect.logWarning(
        `MEMBERSHIP_TABLE ${target} is not in publication ${config.publicationName}: ` +
          `inserts and deletes of memberships are not seen, so grants and revocations wait for the cache TTL`
      )
    }
    const queries = {
      wedding: columns.has("wedding_id")
        ? `select 1 from ${target} where user_id = $1 and wedding_id = $2 limit 1`
        : undefined,
      supplier: columns.has("supplier_id")
        ? `select 1 from ${target} where user_id = $1 and supplier_id = $2 limit 1`
        : undefined
    }
    return Memberships.MembershipSource.of({
      lookup: (grant) => {
        const text = queries[grant.scope]
        if (text === undefined) return Effect.succeed(false)
        return Effect.tryPromise({
          try: () => pool.query(text, [grant.userId, grant.id]),
          catch: (cause) => cause
        }).pipe(
          Effect.map((result) => result.rows.length > 0),
          Effect.catch((cause) => notAnId(cause) ? Effect.succeed(false) : Effect.fail(lookupFailed(cause)))
        )
      }
    })
  })

/** The membership table `name` as the source of `Memberships`; fails to build when the table does not fit. */
export const layer = (name: TableName): Layer.Layer<Memberships.MembershipSource, ChangesError, ChangesConfig> =>
  Layer.effect(Memberships.MembershipSource, make(name))

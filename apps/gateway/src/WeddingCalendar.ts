/**
 * Where the wedding calendar comes from: `WEDDING_CALENDAR_FILE` (JSON, `Calendar.parse`) or, with `DATABASE_URL`,
 * the operator's `WEDDING_CALENDAR_SQL` (the query the cache warmer runs, `Calendar.fromRows`). The file is read by
 * `checkEnvironment` too, so a bad file stops the start with the other configuration problems (exit 78); the query
 * reads live data, so a failure there is logged and retried, never fatal. With both set the file drives scaling (it
 * is the operator's explicit plan) and the query keeps warming the cache.
 */
import { Calendar } from "@wedsync/scaling"
import { Effect, Redacted } from "effect"
import { readFile } from "node:fs/promises"
import pg from "pg"

export type Source =
  | { readonly _tag: "File"; readonly path: string }
  | { readonly _tag: "Sql"; readonly databaseUrl: Redacted.Redacted; readonly sql: string }

/** The source named in messages and in `/admin/scaling`: never the query's text or the database's credentials. */
export const describe = (source: Source): string =>
  source._tag === "File" ? `WEDDING_CALENDAR_FILE=${JSON.stringify(source.path)}` : "WEDDING_CALENDAR_SQL"

export interface Loaded {
  readonly weddings: ReadonlyArray<Calendar.Wedding>
  /** Rows of the query that made no wedding, with the first reasons; always 0 for the file (it is all or nothing). */
  readonly skipped: number
  readonly problems: ReadonlyArray<string>
}

export const load = (path: string): Effect.Effect<ReadonlyArray<Calendar.Wedding>, Calendar.CalendarError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (error) =>
      new Calendar.CalendarError({
        message: `WEDDING_CALENDAR_FILE=${JSON.stringify(path)} cannot be read: ${
          error instanceof Error ? error.message : String(error)
        }`
      })
  }).pipe(Effect.flatMap((text) => Calendar.parse(text, `WEDDING_CALENDAR_FILE=${JSON.stringify(path)}`)))

/** A slow or stuck query must not hold a calendar refresh (or the start) for long. */
const QUERY_TIMEOUT_MS = 10_000

/** The query's rows for `[from, to]` (`$1`, `$2`), on a connection of its own that is closed after it. */
const query = (source: Extract<Source, { _tag: "Sql" }>, from: number, to: number) =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: async () => {
        const client = new pg.Client({
          connectionString: Redacted.value(source.databaseUrl),
          connectionTimeoutMillis: QUERY_TIMEOUT_MS,
          statement_timeout: QUERY_TIMEOUT_MS
        })
        client.on("error", () => undefined)
        await client.connect()
        return client
      },
      catch: (cause) => calendarFailure("cannot connect to the database", cause)
    }),
    (client) =>
      Effect.tryPromise({
        try: () => client.query<Calendar.CalendarRow>(source.sql, [new Date(from), new Date(to)]),
        catch: (cause) => calendarFailure("failed", cause)
      }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

const calendarFailure = (what: string, cause: unknown) =>
  new Calendar.CalendarError({
    message: `WEDDING_CALENDAR_SQL ${what}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** The weddings of `source`; the query is asked for those starting in `[from, to]`, the file gives all of its own. */
export const read = (source: Source, from: number, to: number): Effect.Effect<Loaded, Calendar.CalendarError> =>
  source._tag === "File"
    ? Effect.map(load(source.path), (weddings) => ({ weddings, skipped: 0, problems: [] }))
    : Effect.map(query(source, from, to), (result) => Calendar.fromRows(result.rows))

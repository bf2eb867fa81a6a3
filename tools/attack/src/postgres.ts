/**
 * The Postgres fixture for the row-move and postgres_changes checks: a schema, a REPLICA IDENTITY FULL table with a
 * `wedding_id`, a publication and a slot name, all unique to the run, removed afterwards (the slot once the gateway
 * that holds it has stopped).
 */
import { randomBytes } from "node:crypto"
import pg from "pg"

export interface PgFixture {
  readonly url: string
  readonly schema: string
  readonly table: string
  readonly publication: string
  readonly slot: string
  readonly query: (text: string, values?: ReadonlyArray<unknown>) => Promise<ReadonlyArray<Record<string, unknown>>>
  readonly drop: () => Promise<void>
}

export const databaseUrl = (): string => process.env["DATABASE_URL"] || "postgres://postgres@127.0.0.1:5432/postgres"

export const setup = async (): Promise<PgFixture> => {
  const url = databaseUrl()
  const suffix = `${process.pid}_${randomBytes(4).toString("hex")}`
  const schema = `t_attack_${suffix}`
  const publication = `t_attack_pub_${suffix}`
  const slot = `t_attack_slot_${suffix}`
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  const query = async (text: string, values: ReadonlyArray<unknown> = []) => (await db.query(text, [...values])).rows
  await query(`create schema ${schema}`)
  await query(`create table ${schema}.timeline_items (id bigint generated always as identity primary key,
    wedding_id text not null, title text)`)
  await query(`alter table ${schema}.timeline_items replica identity full`)
  await query(`create publication ${publication} for table ${schema}.timeline_items`)
  return {
    url,
    schema,
    table: "timeline_items",
    publication,
    slot,
    query,
    drop: async () => {
      // The walsender may hold the slot a moment after the gateway stopped: poll, then end it (bounded).
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline) {
        const rows = await query(`select active, active_pid from pg_replication_slots where slot_name = $1`, [slot])
        const row = rows[0]
        if (row === undefined) break
        if (row["active"] !== true) {
          await query(`select pg_drop_replication_slot($1)`, [slot])
          break
        }
        if (Date.now() > deadline - 5000) await query(`select pg_terminate_backend($1)`, [row["active_pid"]])
        await new Promise((r) => setTimeout(r, 100))
      }
      await query(`drop publication if exists ${publication}`)
      await query(`drop schema if exists ${schema} cascade`)
      await db.end()
    }
  }
}

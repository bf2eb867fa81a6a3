/**
 * The replication source against the real local Postgres: decoding, acknowledgement after the
 * consumer, resume from the slot after a restart of the source, and recovery after a restart of
 * Postgres itself. Every run has its own schema, publication and slot, dropped at the end.
 */
import { databaseUrl, Postgres, uniqueSqlName } from "@wedsync/testkit"
import { Effect, Exit, Fiber, Layer, ManagedRuntime, Queue, Redacted, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { readdirSync } from "node:fs"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Transaction } from "../src/ChangeEvent.ts"
import { ChangesConfig } from "../src/ChangesConfig.ts"
import { Replication } from "../src/Replication.ts"

const schema = uniqueSqlName("repl")
const slot = uniqueSqlName("slot")
const publication = uniqueSqlName("pub")
const table = `${schema}.items`
let db = new pg.Client({ connectionString: databaseUrl() })
const sql = (text: string, values: ReadonlyArray<unknown> = []) => db.query(text, [...values])

const layer = Replication.layer.pipe(
  Layer.provide(ChangesConfig.layer({ databaseUrl: Redacted.make(databaseUrl()), slotName: slot, publicationName: publication }))
)

/** Starts the source with a consumer that queues transactions; `stop` closes it like a gateway shutdown. */
const start = async (consume?: (tx: Transaction) => Effect.Effect<void>) => {
  const runtime = ManagedRuntime.make(layer)
  const received = await runtime.runPromise(Queue.unbounded<Transaction>())
  const scope = await runtime.runPromise(Scope.make())
  const fiber = await runtime.runPromise(
    Effect.forkDetach(
      Replication.use((r) =>
        r.run((tx) => consume === undefined ? Queue.offer(received, tx).pipe(Effect.asVoid) : consume(tx))
      ).pipe(Scope.provide(scope))
    )
  )
  await runtime.runPromise(Replication.use((r) => r.ready))
  const next = () => runtime.runPromise(Queue.take(received).pipe(Effect.timeout("15 seconds")))
  const stop = async () => {
    await runtime.runPromise(Effect.andThen(Fiber.interrupt(fiber), Scope.close(scope, Exit.void)))
    await runtime.dispose()
  }
  return { next, stop, runtime }
}

beforeAll(async () => {
  db.on("error", () => undefined)
  await db.connect()
  await sql(`create schema ${schema}`)
  await sql(`create table ${table} (
    id bigint generated always as identity primary key,
    wedding_id text, v int, big int8, n numeric, ok boolean, j jsonb, tags text[], at timestamptz, d date
  )`)
  await sql(`create table ${schema}.plain (id int primary key, body text)`)
  await sql(`alter table ${table} replica identity full`)
  await sql(`create publication ${publication} for table ${table}, ${schema}.plain`)
}, 30_000)

afterAll(async () => {
  await Postgres.dropReplicationSlot(db, slot)
  await sql(`drop publication if exists ${publication}`)
  await sql(`drop schema if exists ${schema} cascade`)
  await db.end()
}, 30_000)

describe("Replication", () => {
  it("decodes inserts, updates, deletes and truncates with typed values, one Transaction per commit", async () => {
    const source = await start()
    try {
      await sql(
        `insert into ${table} (wedding_id, v, big, n, ok, j, tags, at, d) values ('w-1', 5, 9007199254740993, 10.5, true, '{"a":[1]}', '{x,y}', '2026-06-13 12:00:00.123+00', '2026-06-13')`
      )
      const insert = await source.next()
      expect(insert.changes).toHaveLength(1)
      const event = insert.changes[0]!
      expect(event).toMatchObject({ schema, table: "items", action: "INSERT", primaryKey: ["id"] })
      expect(event.columns.map((c) => `${c.name}:${c.type}`)).toEqual([
        "id:int8", "wedding_id:text", "v:int4", "big:int8", "n:numeric", "ok:bool", "j:jsonb", "tags:_text", "at:timestamptz", "d:date"
      ])
      expect(event.record).toMatchObject({
        wedding_id: "w-1", v: 5, big: "9007199254740993", n: 10.5, ok: true, j: { a: [1] }, tags: ["x", "y"], at: "2026-06-13T12:00:00.123Z", d: "2026-06-13"
      })
      expect(insert.commitTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      const id = event.record!["id"]
      await sql(`begin; update ${table} set v = 6 where id = ${id}; delete from ${table} where id = ${id}; commit;`)
      const tx = await source.next()
      expect(tx.changes.map((c) => c.action)).toEqual(["UPDATE", "DELETE"])
      expect(tx.changes[0]!.oldRecord).toMatchObject({ v: 5 })
      expect(tx.changes[1]!.oldRecord).toMatchObject({ id, wedding_id: "w-1" })
      await sql(`insert into ${schema}.plain values (1, 'x')`)
      await sql(`delete from ${schema}.plain where id = 1`)
      await source.next()
      expect((await source.next()).changes[0]!.oldRecord).toEqual({ id: 1 })
      await sql(`truncate ${schema}.plain`)
      expect((await source.next()).changes.map((c) => [c.action, c.table])).toEqual([["TRUNCATE", "plain"]])
    } finally {
      await source.stop()
    }
  }, 60_000)

  it("resumes after a restart of the source: nothing committed lost, nothing acknowledged twice", async () => {
    const first = await start()
    await sql(`insert into ${table} (wedding_id, v) values ('r', 1)`)
    await sql(`insert into ${table} (wedding_id, v) values ('r', 2)`)
    expect((await first.next()).changes[0]!.record).toMatchObject({ v: 1 })
    expect((await first.next()).changes[0]!.record).toMatchObject({ v: 2 })
    await first.stop()
    await sql(`insert into ${table} (wedding_id, v) values ('r', 3)`)
    await sql(`insert into ${table} (wedding_id, v) values ('r', 4)`)
    const second = await start()
    try {
      expect((await second.next()).changes[0]!.record).toMatchObject({ v: 3 })
      expect((await second.next()).changes[0]!.record).toMatchObject({ v: 4 })
    } finally {
      await second.stop()
    }
  }, 60_000)

  it("delivers again a transaction whose consumer did not finish before the restart", async () => {
    const held: Array<Transaction> = []
    let stuck: Awaited<ReturnType<typeof start>> | undefined
    // The consumer receives the transaction, then never finishes: the gateway "crashes" mid fan-out.
    stuck = await start((tx) => Effect.andThen(Effect.sync(() => held.push(tx)), Effect.never))
    await sql(`insert into ${table} (wedding_id, v) values ('u', 7)`)
    await expect.poll(() => held.length, { timeout: 15_000 }).toBe(1)
    expect(held[0]!.changes[0]!.record).toMatchObject({ v: 7 })
    await stuck.stop()
    const again = await start()
    try {
      expect((await again.next()).changes[0]!.record).toMatchObject({ v: 7 })
    } finally {
      await again.stop()
    }
  }, 60_000)

  it("recovers when Postgres restarts", async () => {
    const source = await start()
    try {
      const version = readdirSync("/etc/postgresql")[0]!
      execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"], { stdio: "ignore" })
      // Postgres takes a few seconds to accept connections again.
      await expect.poll(
        async () => {
          const probe = new pg.Client({ connectionString: databaseUrl(), connectionTimeoutMillis: 1_000, query_timeout: 2_000 })
          probe.on("error", () => undefined)
          // A client whose connect failed never settles end(): do not wait for it.
          const done = (ok: boolean) => (void probe.end().catch(() => undefined), ok)
          return probe.connect().then(() => probe.query(`insert into ${table} (wedding_id, v) values ('pg', 42)`)).then(
            () => done(true),
            () => done(false)
          )
        },
        { timeout: 30_000, interval: 500 }
      ).toBe(true)
      // Transactions acknowledged just before the restart may arrive again (at-least-once across a
      // crash); the row written after the restart must arrive.
      let tx = await source.next()
      while (tx.changes[0]?.record?.["v"] !== 42) tx = await source.next()
      expect(tx.changes[0]!.record).toMatchObject({ wedding_id: "pg", v: 42 })
    } finally {
      await source.stop()
      // The test's own client was cut by the restart; reconnect it for the cleanup.
      await db.end().catch(() => undefined)
      db = new pg.Client({ connectionString: databaseUrl() })
      db.on("error", () => undefined)
      await db.connect()
    }
  }, 90_000)
})

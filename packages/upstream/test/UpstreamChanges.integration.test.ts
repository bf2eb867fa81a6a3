/**
 * Postgres Changes through the pool: the spawned upstream streams a real Postgres, and subscribers with the same
 * (schema, table, event, filter) share one upstream channel. The Postgres is a throwaway cluster (`wal_level=logical`
 * from its start), so the test needs nothing of the shared server.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestTokens } from "@wedsync/auth/testing"
import { PostgresCluster, uniqueSqlName, waitUntil } from "@wedsync/testkit"
import { Effect, Redacted } from "effect"
import pg from "pg"
import { afterAll, beforeAll, vi } from "vitest"
import { UpstreamConfig } from "../src/UpstreamConfig.ts"
import * as UpstreamPool from "../src/UpstreamPool.ts"
import * as UpstreamGateway from "./support/UpstreamGateway.ts"

vi.setConfig({ testTimeout: 60_000 })

const schema = uniqueSqlName("upc")
const slot = uniqueSqlName("slot")
const publication = uniqueSqlName("pub")
let cluster: PostgresCluster.Cluster
let db: pg.Client
let upstream: UpstreamGateway.UpstreamGateway
let serviceKey: string

beforeAll(async () => {
  cluster = await PostgresCluster.start()
  db = new pg.Client({ connectionString: cluster.url })
  await db.connect()
  await db.query(`create schema ${schema}`)
  await db.query(`create table ${schema}.timeline_items (id serial primary key, wedding_id text not null, title text)`)
  await db.query(`alter table ${schema}.timeline_items replica identity full`)
  await db.query(`create publication ${publication} for table ${schema}.timeline_items`)
  upstream = await UpstreamGateway.start({
    DATABASE_URL: cluster.url,
    REPLICATION_SLOT: slot,
    REPLICATION_PUBLICATION: publication,
    REPLICATION_START_DELAY_MS: "0"
  })
  serviceKey = await TestTokens.serviceRoleToken({ secret: UpstreamGateway.JWT_SECRET })
}, 30_000)

afterAll(async () => {
  await upstream?.stop()
  await db?.end()
  await cluster?.stop()
}, 30_000)

const recorder = () => {
  const changes: Array<
    { readonly type: string; readonly record: Record<string, unknown>; readonly columns: ReadonlyArray<unknown> }
  > = []
  const listener: UpstreamPool.Listener = {
    onMessage: (m) => {
      if (m._tag === "PostgresChange") changes.push(m.data as (typeof changes)[number])
    }
  }
  return { changes, listener }
}

const until = (what: string, check: () => boolean) =>
  Effect.promise(() => waitUntil(what, check, (ok) => ok, { timeoutMs: 10_000 }))

describe("UpstreamPool.changes", () => {
  it.live("subscribers of one binding share one upstream channel; each change reaches each once", () =>
    Effect.gen(function*() {
      const pool = yield* UpstreamPool.make.pipe(
        Effect.provide(UpstreamConfig.layer({ url: upstream.url, apiKey: Redacted.make(serviceKey) }))
      )
      const all = { schema, table: "timeline_items", event: "*" } as const
      const oneWedding = { ...all, filter: "wedding_id=eq.w-1" }
      const [a, b, c] = [recorder(), recorder(), recorder()]
      yield* pool.changes(all, a.listener)
      yield* pool.changes(all, b.listener)
      yield* pool.changes(oneWedding, c.listener)
      assert.strictEqual((yield* pool.stats).channels, 2)
      const metrics = yield* Effect.promise(() => upstream.metrics())
      assert.strictEqual(metrics["wedsync_connection_channels"], 2)
      assert.strictEqual(metrics["wedsync_connection_open"], 1)

      yield* Effect.promise(() =>
        db.query(`insert into ${schema}.timeline_items (wedding_id, title) values ('w-1', 'vows')`)
      )
      yield* Effect.promise(() =>
        db.query(`insert into ${schema}.timeline_items (wedding_id, title) values ('w-2', 'cake')`)
      )
      yield* until("both changes on the shared binding", () => a.changes.length === 2 && b.changes.length === 2)
      yield* until("the filtered change", () => c.changes.length === 1)
      assert.deepStrictEqual(a.changes.map((x) => x.record["title"]), ["vows", "cake"])
      assert.deepStrictEqual(b.changes.map((x) => x.record["title"]), ["vows", "cake"])
      assert.deepStrictEqual(c.changes.map((x) => [x.type, x.record["title"]]), [["INSERT", "vows"]])
      // As the upstream sent it, column types included (a local subscriber's realtime-js converts values by them).
      assert.deepStrictEqual(c.changes[0]!.columns.map((col) => (col as { name: string }).name), [
        "id",
        "wedding_id",
        "title"
      ])
    }).pipe(Effect.scoped))
})

/**
 * Postgres Changes end to end: a real Postgres (own schema, publication and slot per run), the
 * gateway's one replication stream, and unmodified supabase-js clients for both serializers.
 * Each test waits for "Subscribed to PostgreSQL" before writing, as realtime-js apps should.
 */
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { Postgres, RawClient, SupabaseClients, databaseUrl, uniqueSqlName } from "@wedsync/testkit"
import { Redacted } from "effect"
import { createServer } from "node:net"
import pg from "pg"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, inbox, closeAll } = SupabaseClients

type Change = {
  readonly eventType: string
  readonly new: Record<string, unknown>
  readonly old: Record<string, unknown>
  readonly table: string
  readonly schema: string
  readonly commit_timestamp: string
  readonly errors: unknown
}
type System = { readonly extension: string; readonly status: string; readonly message: string }

const schema = uniqueSqlName("pgc")
const slot = uniqueSqlName("slot")
const publication = uniqueSqlName("pub")
const db = new pg.Client({ connectionString: databaseUrl() })
let gateway: RunningGateway
const clients: Array<SupabaseClient> = []

const sql = (text: string, values: ReadonlyArray<unknown> = []) => db.query(text, [...values])

beforeAll(async () => {
  await db.connect()
  await sql(`create schema ${schema}`)
  await sql(`create table ${schema}.timeline_items (
    id bigint generated always as identity primary key,
    wedding_id text not null,
    title text,
    position int,
    done boolean not null default false,
    due timestamptz
  )`)
  await sql(`alter table ${schema}.timeline_items replica identity full`)
  await sql(`create table ${schema}.notes (id serial primary key, body text)`)
  await sql(`create publication ${publication} for table ${schema}.timeline_items, ${schema}.notes`)
  gateway = await startGateway({
    changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: slot, publicationName: publication }
  })
}, 30_000)

afterEach(async () => {
  await closeAll(clients.splice(0))
})

afterAll(async () => {
  await gateway?.stop()
  // The slot outlives the gateway on purpose (resume); the test removes it once the stream is gone.
  await Postgres.dropReplicationSlot(db, slot)
  await sql(`drop publication if exists ${publication}`)
  await sql(`drop schema if exists ${schema} cascade`)
  await db.end()
}, 30_000)

const client = async (token: string, vsn: "1.0.0" | "2.0.0" = "2.0.0") => {
  const c = makeSupabaseClient(gateway.url, token, { vsn, accessToken: token })
  clients.push(c)
  await c.realtime.setAuth()
  return c
}

/** Subscribes with postgres_changes listeners and resolves once the gateway confirmed the subscription. */
const watch = async (
  c: SupabaseClient,
  name: string,
  bindings: ReadonlyArray<{ event: "*" | "INSERT" | "UPDATE" | "DELETE"; table: string; filter?: string }>
) => {
  const changes = inbox<Change>("postgres change")
  const system = inbox<System>("system message")
  let channel: RealtimeChannel = c.channel(name)
  for (const b of bindings) {
    channel = channel.on(
      "postgres_changes" as never,
      { event: b.event, schema, table: b.table, ...(b.filter === undefined ? {} : { filter: b.filter }) } as never,
      changes.push as never
    )
  }
  channel = channel.on("system", {}, system.push)
  await SupabaseClients.subscribe(channel)
  return { channel, changes, system }
}

const subscribed = (system: SupabaseClients.Inbox<System>) =>
  system.next((m) => m.extension === "postgres_changes", 15_000)

describe.each(["2.0.0", "1.0.0"] as const)("with vsn %s", (vsn) => {
  it("delivers inserts, updates and deletes with Supabase's payloads to service_role", async () => {
    const c = await client(await TestTokens.serviceRoleToken(), vsn)
    const { changes, system } = await watch(c, `items-${vsn}`, [{ event: "*", table: "timeline_items" }])
    expect(await subscribed(system)).toMatchObject({ status: "ok", message: "Subscribed to PostgreSQL" })
    const { rows } = await sql(
      `insert into ${schema}.timeline_items (wedding_id, title, position, due) values ('w-1', 'Ceremony', 1, '2026-06-13 14:00+00') returning id`
    )
    const id = Number(rows[0].id)
    const inserted = await changes.next((m) => m.eventType === "INSERT")
    expect(inserted).toMatchObject({ schema, table: "timeline_items", errors: null })
    expect(inserted.new).toMatchObject({ id, wedding_id: "w-1", title: "Ceremony", position: 1, done: false })
    expect(inserted.commit_timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    await sql(`update ${schema}.timeline_items set title = 'Vows' where id = $1`, [id])
    const updated = await changes.next((m) => m.eventType === "UPDATE")
    expect(updated.new).toMatchObject({ id, title: "Vows" })
    expect(updated.old).toMatchObject({ id, title: "Ceremony" })
    await sql(`delete from ${schema}.timeline_items where id = $1`, [id])
    const deleted = await changes.next((m) => m.eventType === "DELETE")
    expect(deleted.old).toMatchObject({ id, wedding_id: "w-1" })
  })
})

describe("authorization", () => {
  it("a wedding A client never receives wedding B rows, with or without a filter; service_role receives both", async () => {
    const a = await client(await TestTokens.userToken({ weddingIds: ["A"] }))
    const admin = await client(await TestTokens.serviceRoleToken())
    const plain = await watch(a, "auth-plain", [{ event: "INSERT", table: "timeline_items" }])
    const filtered = await watch(a, "auth-filtered", [{ event: "INSERT", table: "timeline_items", filter: "wedding_id=eq.B" }])
    const all = await watch(admin, "auth-admin", [{ event: "INSERT", table: "timeline_items" }])
    for (const w of [plain, filtered, all]) expect((await subscribed(w.system)).status).toBe("ok")
    await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('B', 'secret'), ('A', 'mine')`)
    expect((await plain.changes.next()).new).toMatchObject({ wedding_id: "A", title: "mine" })
    const seen = [(await all.changes.next()).new["wedding_id"], (await all.changes.next()).new["wedding_id"]]
    expect(seen.sort()).toEqual(["A", "B"])
    // A marker row of wedding A, after the B row, proves the B row was not merely late.
    await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('A', 'marker')`)
    await plain.changes.next((m) => m.new["title"] === "marker")
    expect(plain.changes.received.map((m) => m.new["wedding_id"])).toEqual(["A", "A"])
    expect(filtered.changes.received).toHaveLength(0)
  })

  it("rows of tables without wedding_id or supplier_id reach only service_role by default", async () => {
    const user = await client(await TestTokens.userToken({ weddingIds: ["A"] }))
    const admin = await client(await TestTokens.serviceRoleToken())
    const userWatch = await watch(user, "notes-user", [{ event: "INSERT", table: "notes" }])
    const adminWatch = await watch(admin, "notes-admin", [{ event: "INSERT", table: "notes" }])
    await subscribed(userWatch.system)
    await subscribed(adminWatch.system)
    await sql(`insert into ${schema}.notes (body) values ('unscoped')`)
    expect((await adminWatch.changes.next()).new).toMatchObject({ body: "unscoped" })
    expect(userWatch.changes.received).toHaveLength(0)
  })
})

describe("filters", () => {
  it("matches each operator and skips non-matching rows", async () => {
    const admin = await client(await TestTokens.serviceRoleToken())
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ["position=gt.5", "6", "5"],
      ["position=lte.2", "2", "3"],
      ["title=in.(Dinner,\"First, dance\")", "'First, dance'", "'Cake'"],
      ["title=neq.Speech", "'Toast'", "'Speech'"],
      ["done=is.true", "true", "false"],
      ["title=like.Ph%", "'Photos'", "'Cake'"]
    ]
    // Each case is ANDed with its own wedding id (comma-AND), so cases do not see each other's rows.
    const watches = await Promise.all(
      cases.map(([filter], i) =>
        watch(admin, `filter-${i}`, [{ event: "INSERT", table: "timeline_items", filter: `${filter},wedding_id=eq.f${i}` }])
      )
    )
    for (const w of watches) expect((await subscribed(w.system)).status).toBe("ok")
    for (const [i, [filter, match, miss]] of cases.entries()) {
      const column = filter.split("=")[0]!
      await sql(`insert into ${schema}.timeline_items (wedding_id, ${column}) values ('f${i}', ${miss}), ('f${i}', ${match})`)
    }
    for (const [i, [filter, match]] of cases.entries()) {
      const column = filter.split("=")[0]!
      const got = await watches[i]!.changes.next()
      expect(String(got.new[column]), filter).toBe(match.replace(/^'|'$/g, ""))
    }
    // Every watcher saw exactly its own matching row: a marker insert that matches none proves nothing is in flight.
    const markerWatch = await watch(admin, "filter-marker", [{ event: "INSERT", table: "timeline_items", filter: "title=eq.after" }])
    await subscribed(markerWatch.system)
    await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('F', 'after')`)
    await markerWatch.changes.next()
    for (const w of watches) expect(w.changes.received).toHaveLength(1)
  })

  it("refuses a malformed filter and an unknown table with a system error, keeping the channel joined", async () => {
    const admin = await client(await TestTokens.serviceRoleToken())
    const bad = await watch(admin, "bad-filter", [{ event: "*", table: "timeline_items", filter: "position=between.1" }])
    expect(await subscribed(bad.system)).toMatchObject({ status: "error" })
    const missing = await watch(admin, "bad-table", [{ event: "*", table: "no_such_table" }])
    expect((await subscribed(missing.system)).message).toContain("Unable to subscribe to changes with given parameters")
    expect(bad.channel.state).toBe("joined")
    const good = await watch(admin, "good-filter", [{ event: "*", table: "timeline_items", filter: "position=eq.1" }])
    expect(await subscribed(good.system)).toMatchObject({ status: "ok" })
  })
})

describe("pooling", () => {
  it("serves 1,000 subscribers from one replication stream", async () => {
    const token = await TestTokens.serviceRoleToken()
    const url = `${gateway.wsUrl}?apikey=${token}&vsn=2.0.0`
    const sockets = await Promise.all(Array.from({ length: 1000 }, () => RawClient.connect(url)))
    try {
      const binding = { event: "INSERT", schema, table: "timeline_items", filter: "title=eq.pooled" }
      await Promise.all(
        sockets.map(async (s) => {
          s.send(["1", "1", "realtime:pool", "phx_join", { config: { postgres_changes: [binding] } }])
          await s.next(RawClient.isReplyTo("1"))
          await s.next(RawClient.isEvent("system"), 20_000)
        })
      )
      await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('P', 'pooled')`)
      const frames = await Promise.all(sockets.map((s) => s.next(RawClient.isEvent("postgres_changes"), 20_000)))
      expect(frames).toHaveLength(1000)
      // One slot, streaming to one walsender, for all 1,000 subscriptions.
      const { rows } = await sql(
        `select s.active, (select count(*)::int from pg_stat_replication r where r.pid = s.active_pid) as streams
         from pg_replication_slots s where s.slot_name = $1`,
        [slot]
      )
      expect(rows).toEqual([{ active: true, streams: 1 }])
    } finally {
      await Promise.all(sockets.map((s) => s.close()))
    }
  }, 60_000)
})

describe("gateway restart", () => {
  it("a client that rejoins within the start delay receives what was committed while the gateway was down, once", async () => {
    const restartSlot = uniqueSqlName("slot")
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const address = probe.address()
        probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
      })
    })
    const options = {
      gateway: { port },
      changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: restartSlot, publicationName: publication, startDelayMs: 4_000 }
    }
    let restarted = await startGateway(options)
    try {
      const token = await TestTokens.serviceRoleToken()
      const c = makeSupabaseClient(restarted.url, token, { accessToken: token })
      clients.push(c)
      await c.realtime.setAuth()
      const w = await watch(c, "restart", [{ event: "INSERT", table: "timeline_items", filter: "wedding_id=eq.restart" }])
      await subscribed(w.system)
      await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('restart', 'before')`)
      await w.changes.next((m) => m.new["title"] === "before")
      await restarted.stop()
      await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('restart', 'while-down')`)
      restarted = await startGateway(options)
      await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('restart', 'after')`)
      await w.changes.next((m) => m.new["title"] === "after", 30_000)
      expect(w.changes.received.map((m) => m.new["title"])).toEqual(["before", "while-down", "after"])
    } finally {
      await closeAll(clients.splice(0))
      await restarted.stop()
      await Postgres.dropReplicationSlot(db, restartSlot)
    }
  }, 60_000)
})

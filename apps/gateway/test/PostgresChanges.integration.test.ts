/**
 * Postgres Changes end to end: a real Postgres (own schema, publication and slot per run), the
 * gateway's one replication stream, and unmodified supabase-js clients for both serializers.
 * Each test waits for "Subscribed to PostgreSQL" before writing, as realtime-js apps should.
 */
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { Postgres, RawClient, SupabaseClients, databaseUrl, uniqueSqlName, waitUntil } from "@wedsync/testkit"
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
  await sql(`create table ${schema}.supplier_tasks (id serial primary key, supplier_id text not null, task text)`)
  await sql(`alter table ${schema}.supplier_tasks replica identity full`)
  // Default replica identity (primary key only): DELETE images lack wedding_id.
  await sql(`create table ${schema}.guests (id serial primary key, wedding_id text not null, name text)`)
  // Column names that are Object.prototype members.
  await sql(`create table ${schema}.odd (
    id serial primary key, wedding_id text not null, "__proto__" text, "constructor" text, "toString" text
  )`)
  await sql(`alter table ${schema}.odd replica identity full`)
  await sql(`create table ${schema}.unpublished (id serial primary key, wedding_id text)`)
  await sql(`create schema ${schema}_empty`)
  // Published with a column list that leaves the scope column out.
  await sql(`create table ${schema}.hidden_scope (id serial primary key, wedding_id text not null, title text)`)
  // Resolved only by the plan-cache test, so its first lookup is a miss.
  await sql(`create table ${schema}.plan_items (id serial primary key, title text)`)
  await sql(`create publication ${publication} for table ${schema}.timeline_items, ${schema}.notes,
    ${schema}.supplier_tasks, ${schema}.guests, ${schema}.odd, ${schema}.hidden_scope (id, title), ${schema}.plan_items`)
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
  await sql(`drop schema if exists ${schema}_empty cascade`)
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
  bindings: ReadonlyArray<
    { event: "*" | "INSERT" | "UPDATE" | "DELETE"; table?: string; filter?: string; schema?: string }
  >
) => {
  const changes = inbox<Change>("postgres change")
  const system = inbox<System>("system message")
  let channel: RealtimeChannel = c.channel(name)
  for (const b of bindings) {
    channel = channel.on(
      "postgres_changes" as never,
      {
        event: b.event,
        schema: b.schema ?? schema,
        ...(b.table === undefined ? {} : { table: b.table }),
        ...(b.filter === undefined ? {} : { filter: b.filter })
      } as never,
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
    const filtered = await watch(a, "auth-filtered", [{
      event: "INSERT",
      table: "timeline_items",
      filter: "wedding_id=eq.B"
    }])
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
      ['title=in.(Dinner,"First, dance")', "'First, dance'", "'Cake'"],
      ["title=neq.Speech", "'Toast'", "'Speech'"],
      ["done=is.true", "true", "false"],
      ["title=like.Ph%", "'Photos'", "'Cake'"]
    ]
    // Each case is ANDed with its own wedding id (comma-AND), so cases do not see each other's rows.
    const watches = await Promise.all(
      cases.map(([filter], i) =>
        watch(admin, `filter-${i}`, [{
          event: "INSERT",
          table: "timeline_items",
          filter: `${filter},wedding_id=eq.f${i}`
        }])
      )
    )
    for (const w of watches) expect((await subscribed(w.system)).status).toBe("ok")
    for (const [i, [filter, match, miss]] of cases.entries()) {
      const column = filter.split("=")[0]!
      await sql(
        `insert into ${schema}.timeline_items (wedding_id, ${column}) values ('f${i}', ${miss}), ('f${i}', ${match})`
      )
    }
    for (const [i, [filter, match]] of cases.entries()) {
      const column = filter.split("=")[0]!
      const got = await watches[i]!.changes.next()
      expect(String(got.new[column]), filter).toBe(match.replace(/^'|'$/g, ""))
    }
    // Every watcher saw exactly its own matching row: a marker insert that matches none proves nothing is in flight.
    const markerWatch = await watch(admin, "filter-marker", [{
      event: "INSERT",
      table: "timeline_items",
      filter: "title=eq.after"
    }])
    await subscribed(markerWatch.system)
    await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ('F', 'after')`)
    await markerWatch.changes.next()
    for (const w of watches) expect(w.changes.received).toHaveLength(1)
  })

  it("refuses a malformed filter and an unknown table with a system error, keeping the channel joined", async () => {
    const admin = await client(await TestTokens.serviceRoleToken())
    const bad = await watch(admin, "bad-filter", [{
      event: "*",
      table: "timeline_items",
      filter: "position=between.1"
    }])
    expect(await subscribed(bad.system)).toMatchObject({ status: "error" })
    const missing = await watch(admin, "bad-table", [{ event: "*", table: "no_such_table" }])
    const missingMessage = (await subscribed(missing.system)).message
    expect(missingMessage).toContain("Unable to subscribe to changes with given parameters")
    // The table and the publication are named, for a table that does not exist and one outside the publication.
    expect(missingMessage).toContain(
      `Table ${schema}.no_such_table does not exist or is not in publication ${publication}`
    )
    const outside = await watch(admin, "unpublished-table", [{ event: "*", table: "unpublished" }])
    expect(await subscribed(outside.system)).toMatchObject({
      status: "error",
      message: expect.stringContaining(
        `Table ${schema}.unpublished does not exist or is not in publication ${publication}`
      )
    })
    expect(bad.channel.state).toBe("joined")
    const good = await watch(admin, "good-filter", [{ event: "*", table: "timeline_items", filter: "position=eq.1" }])
    expect(await subscribed(good.system)).toMatchObject({ status: "ok" })
  })
})

/** The value of a counter in the gateway's /metrics. */
const counter = async (name: string): Promise<number> => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.split(" ")[1])
}

describe("a row that moves between weddings", () => {
  it("gives A's subscribers the new row without B's old content, B's a DELETE with the key, both sides' subscribers the UPDATE", async () => {
    const ofA = await client(await TestTokens.userToken({ weddingIds: ["move-A"] }))
    const ofB = await client(await TestTokens.userToken({ weddingIds: ["move-B"] }))
    const ofBoth = await client(await TestTokens.userToken({ weddingIds: ["move-A", "move-B"] }))
    const admin = await client(await TestTokens.serviceRoleToken())
    const a = await watch(ofA, "move-a", [{ event: "*", table: "timeline_items" }])
    // Filters: matched on the new image for the UPDATE, on the old image for the leaving side.
    const aFiltered = await watch(ofA, "move-a-filtered", [{
      event: "*",
      table: "timeline_items",
      filter: "wedding_id=eq.move-A"
    }])
    const b = await watch(ofB, "move-b", [{ event: "*", table: "timeline_items" }])
    const bFiltered = await watch(ofB, "move-b-filtered", [{
      event: "*",
      table: "timeline_items",
      filter: "wedding_id=eq.move-B"
    }])
    const bUpdates = await watch(ofB, "move-b-updates", [{ event: "UPDATE", table: "timeline_items" }])
    const both = await watch(ofBoth, "move-both", [{ event: "*", table: "timeline_items" }])
    const all = await watch(admin, "move-admin", [{ event: "*", table: "timeline_items", filter: "title=like.move%" }])
    for (const w of [a, aFiltered, b, bFiltered, bUpdates, both, all])
      expect((await subscribed(w.system)).status).toBe("ok")

    const { rows } = await sql(
      `insert into ${schema}.timeline_items (wedding_id, title, position) values ('move-B', 'move: B secret', 7) returning id`
    )
    const id = Number(rows[0].id)
    await b.changes.next((m) => m.eventType === "INSERT")
    await sql(`update ${schema}.timeline_items set wedding_id = 'move-A', title = 'move: now A' where id = $1`, [id])

    // A: the new row; old_record holds only the primary key both images share.
    for (const w of [a, aFiltered]) {
      const update = await w.changes.next((m) => m.eventType === "UPDATE")
      expect(update.new).toMatchObject({ id, wedding_id: "move-A", title: "move: now A" })
      expect(update.old).toEqual({ id })
    }
    // B: the row left their wedding, as a DELETE with its primary key (filter matched on the old image).
    for (const w of [b, bFiltered]) {
      const left = await w.changes.next((m) => m.eventType === "DELETE")
      expect(left.old).toEqual({ id })
      expect(left.new).toEqual({})
    }
    // Subscribers of both weddings and service_role see the UPDATE as it is.
    for (const w of [both, all]) {
      const update = await w.changes.next((m) => m.eventType === "UPDATE")
      expect(update.new).toMatchObject({ id, wedding_id: "move-A", title: "move: now A" })
      expect(update.old).toMatchObject({ id, wedding_id: "move-B", title: "move: B secret", position: 7 })
    }

    // Markers in both weddings: whatever else was going to arrive has arrived.
    await sql(
      `insert into ${schema}.timeline_items (wedding_id, title) values ('move-A', 'move: marker A'), ('move-B', 'move: marker B')`
    )
    await a.changes.next((m) => m.new["title"] === "move: marker A")
    await b.changes.next((m) => m.new["title"] === "move: marker B")
    // No column of B's image reached a subscriber of A only; B's content never reached A's channels at all.
    for (const w of [a, aFiltered]) expect(JSON.stringify(w.changes.received)).not.toContain("B secret")
    expect(a.changes.received.map((m) => m.eventType)).toEqual(["UPDATE", "INSERT"])
    expect(b.changes.received.map((m) => m.eventType)).toEqual(["INSERT", "DELETE", "INSERT"])
    // An UPDATE-only binding of B gets neither the new row nor the DELETE (realtime-js routes by event type).
    expect(bUpdates.changes.received).toHaveLength(0)
    expect(JSON.stringify(b.changes.received)).not.toContain("now A")
  })

  it("does the same for a row that moves between suppliers", async () => {
    const ofS1 = await client(await TestTokens.userToken({ supplierIds: ["s-1"] }))
    const ofS2 = await client(await TestTokens.userToken({ supplierIds: ["s-2"] }))
    const s1 = await watch(ofS1, "supplier-1", [{ event: "*", table: "supplier_tasks" }])
    const s2 = await watch(ofS2, "supplier-2", [{ event: "*", table: "supplier_tasks" }])
    for (const w of [s1, s2]) expect((await subscribed(w.system)).status).toBe("ok")
    const { rows } = await sql(
      `insert into ${schema}.supplier_tasks (supplier_id, task) values ('s-1', 'cake for s-1') returning id`
    )
    const id = Number(rows[0].id)
    await s1.changes.next((m) => m.eventType === "INSERT")
    await sql(`update ${schema}.supplier_tasks set supplier_id = 's-2', task = 'flowers' where id = $1`, [id])
    const entered = await s2.changes.next((m) => m.eventType === "UPDATE")
    expect(entered.new).toMatchObject({ id, supplier_id: "s-2", task: "flowers" })
    expect(entered.old).toEqual({ id })
    const left = await s1.changes.next((m) => m.eventType === "DELETE")
    expect(left.old).toEqual({ id })
    expect(JSON.stringify(s2.changes.received)).not.toContain("cake for s-1")
    expect(JSON.stringify(s1.changes.received)).not.toContain("flowers")
  })
})

describe("whole-schema bindings", () => {
  it("deliver every published table of the schema with each table's row policy", async () => {
    const user = await client(await TestTokens.userToken({ weddingIds: ["schema-A"] }))
    const admin = await client(await TestTokens.serviceRoleToken())
    const mine = await watch(user, "schema-user", [{ event: "*" }])
    const all = await watch(admin, "schema-admin", [{ event: "INSERT" }])
    for (const w of [mine, all]) expect((await subscribed(w.system)).status).toBe("ok")
    await sql(
      `insert into ${schema}.timeline_items (wedding_id, title) values ('schema-B', 'not yours'), ('schema-A', 'yours')`
    )
    await sql(`insert into ${schema}.notes (body) values ('schema note')`)
    await sql(`insert into ${schema}.guests (wedding_id, name) values ('schema-A', 'Ann')`)
    const guest = await mine.changes.next((m) => m.table === "guests")
    expect(guest.new).toMatchObject({ wedding_id: "schema-A", name: "Ann" })
    // The admin sees rows of every table, scoped or not.
    await all.changes.next((m) => m.table === "guests")
    expect(all.changes.received.map((m) => `${m.table}:${String(m.new["title"] ?? m.new["body"] ?? m.new["name"])}`))
      .toEqual(
        expect.arrayContaining(["timeline_items:not yours", "timeline_items:yours", "notes:schema note", "guests:Ann"])
      )
    // The user: only wedding schema-A's rows, nothing of B and nothing of the unscoped notes.
    expect(mine.changes.received.map((m) => `${m.table}:${String(m.new["title"] ?? m.new["name"])}`)).toEqual([
      "timeline_items:yours",
      "guests:Ann"
    ])
  })

  it("refuse a schema without published tables, naming the publication, and a filter without a table", async () => {
    const admin = await client(await TestTokens.serviceRoleToken())
    const empty = await watch(admin, "schema-empty", [{ event: "*", schema: `${schema}_empty` }])
    expect(await subscribed(empty.system)).toMatchObject({
      status: "error",
      message: expect.stringContaining(`No table of schema ${schema}_empty is in publication ${publication}`)
    })
    const filtered = await watch(admin, "schema-filter", [{ event: "*", filter: "id=eq.1" }])
    expect(await subscribed(filtered.system)).toMatchObject({
      status: "error",
      message: expect.stringContaining("A filter or select needs a table")
    })
  })
})

describe("replica identity without the scope column", () => {
  it("withholds such DELETEs from wedding subscribers and counts them; REPLICA IDENTITY FULL lets them through", async () => {
    const user = await client(await TestTokens.userToken({ weddingIds: ["ri-A"] }))
    const admin = await client(await TestTokens.serviceRoleToken())
    const mine = await watch(user, "ri-user", [{ event: "*", table: "guests" }])
    const all = await watch(admin, "ri-admin", [{ event: "DELETE", table: "guests" }])
    for (const w of [mine, all]) expect((await subscribed(w.system)).status).toBe("ok")
    const before = await counter("wedsync_changes_deletes_withheld_total")
    const { rows } = await sql(`insert into ${schema}.guests (wedding_id, name) values ('ri-A', 'Bob') returning id`)
    const id = Number(rows[0].id)
    await mine.changes.next((m) => m.eventType === "INSERT")
    await sql(`delete from ${schema}.guests where id = $1`, [id])
    expect((await all.changes.next()).old).toEqual({ id })
    expect(await counter("wedsync_changes_deletes_withheld_total")).toBe(before + 1)
    // Accepted beside: with the whole old row in the WAL, the wedding's subscriber gets the DELETE.
    await sql(`alter table ${schema}.guests replica identity full`)
    try {
      const again = await sql(`insert into ${schema}.guests (wedding_id, name) values ('ri-A', 'Cy') returning id`)
      const second = Number(again.rows[0].id)
      await mine.changes.next((m) => m.eventType === "INSERT" && m.new["id"] === second)
      await sql(`delete from ${schema}.guests where id = $1`, [second])
      expect((await mine.changes.next((m) => m.eventType === "DELETE")).old).toEqual({ id: second })
      expect(await counter("wedsync_changes_deletes_withheld_total")).toBe(before + 1)
      expect(mine.changes.received.filter((m) => m.eventType === "DELETE")).toHaveLength(1)
    } finally {
      await sql(`alter table ${schema}.guests replica identity default`)
    }
  })
})

describe("a scope column left out of the publication's column list", () => {
  it("makes the rows reach service_role only, even where unscoped tables are open to all", async () => {
    const openSlot = uniqueSqlName("slot")
    const open = await startGateway({
      unscopedTables: "all",
      changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: openSlot, publicationName: publication }
    })
    try {
      const connect = async (token: string) => {
        const c = makeSupabaseClient(open.url, token, { accessToken: token })
        clients.push(c)
        await c.realtime.setAuth()
        return c
      }
      const user = await connect(await TestTokens.userToken({ weddingIds: ["hidden-A"] }))
      const admin = await connect(await TestTokens.serviceRoleToken())
      const hidden = await watch(user, "hidden-user", [{ event: "INSERT", table: "hidden_scope" }])
      const notes = await watch(user, "hidden-notes", [{ event: "INSERT", table: "notes" }])
      const all = await watch(admin, "hidden-admin", [{ event: "INSERT", table: "hidden_scope" }])
      for (const w of [hidden, notes, all]) expect((await subscribed(w.system)).status).toBe("ok")
      await sql(`insert into ${schema}.hidden_scope (wedding_id, title) values ('hidden-B', 'not for A')`)
      await sql(`insert into ${schema}.notes (body) values ('open note')`)
      expect((await all.changes.next()).new).toEqual({ id: expect.any(Number), title: "not for A" })
      // Accepted beside: an unscoped table's row reaches the user (UNSCOPED_TABLES=all), committed after the hidden one.
      expect((await notes.changes.next()).new).toMatchObject({ body: "open note" })
      expect(hidden.changes.received).toHaveLength(0)
    } finally {
      await closeAll(clients.splice(0))
      await open.stop()
      await Postgres.dropReplicationSlot(db, openSlot)
    }
  }, 30_000)
})

describe("hostile column names", () => {
  it("keeps columns named __proto__, constructor and toString as plain columns in records, old records and filters", async () => {
    const user = await client(await TestTokens.userToken({ weddingIds: ["odd-A"] }))
    const plain = await watch(user, "odd-plain", [{ event: "*", table: "odd" }])
    const filtered = await watch(user, "odd-filtered", [{ event: "UPDATE", table: "odd", filter: "__proto__=eq.p2" }])
    const missed = await watch(user, "odd-missed", [{ event: "INSERT", table: "odd", filter: "constructor=eq.nope" }])
    for (const w of [plain, filtered, missed]) expect((await subscribed(w.system)).status).toBe("ok")
    const { rows } = await sql(
      `insert into ${schema}.odd (wedding_id, "__proto__", "constructor", "toString") values ('odd-A', 'p1', 'c1', 't1') returning id`
    )
    const id = Number(rows[0].id)
    await sql(`update ${schema}.odd set "__proto__" = 'p2' where id = $1`, [id])
    const inserted = await plain.changes.next((m) => m.eventType === "INSERT")
    expect(Object.getOwnPropertyNames(inserted.new).sort()).toEqual(
      ["constructor", "id", "toString", "wedding_id"].sort()
    )
    // realtime-js builds `new` with `{}` and drops a key named __proto__ itself; the frame carried it (see below).
    expect(inserted.new["constructor"]).toBe("c1")
    expect(inserted.new["toString"]).toBe("t1")
    const updated = await filtered.changes.next()
    expect(updated.old["constructor"]).toBe("c1")
    expect(filtered.changes.received).toHaveLength(1)
    await sql(`insert into ${schema}.odd (wedding_id, "constructor") values ('odd-A', 'marker')`)
    await plain.changes.next((m) => m.new["constructor"] === "marker")
    expect(missed.changes.received).toHaveLength(0)
  })

  it("sends a __proto__ column on the wire as a plain key", async () => {
    const token = await TestTokens.userToken({ weddingIds: ["odd-B"] })
    const socket = await RawClient.connect(`${gateway.wsUrl}?apikey=${token}&vsn=1.0.0`)
    try {
      const binding = { event: "INSERT", schema, table: "odd", filter: "__proto__=eq.raw" }
      socket.send({
        topic: "realtime:odd-raw",
        event: "phx_join",
        payload: { config: { postgres_changes: [binding] } },
        ref: "1",
        join_ref: "1"
      })
      await socket.next(RawClient.isReplyTo("1"))
      await socket.next(RawClient.isEvent("system"), 15_000)
      await sql(`insert into ${schema}.odd (wedding_id, "__proto__") values ('odd-B', 'other'), ('odd-B', 'raw')`)
      const frame = await socket.next(RawClient.isEvent("postgres_changes"), 15_000)
      expect(JSON.stringify(frame)).toContain(`"__proto__":"raw"`)
    } finally {
      await socket.close()
    }
  })
})

/** GET /ready: status and parsed body. */
const readiness = async (url: string) => {
  const response = await fetch(`${url}/ready`)
  return { status: response.status, body: (await response.json()) as { ready: boolean; reason?: string } }
}

/** Polls /ready until `until` holds (no event tells when a stream attempt failed), bounded. */
const readinessUntil = (
  url: string,
  until: (r: Awaited<ReturnType<typeof readiness>>) => boolean,
  timeoutMs = 15_000
) => waitUntil(`${url}/ready to match`, () => readiness(url), until, { timeoutMs, intervalMs: 100 })

describe("readiness", () => {
  it(
    "a second gateway on the same slot answers 503 with the reason while the first streams and answers 200",
    async () => {
      const sharedSlot = uniqueSqlName("slot")
      const options = {
        changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: sharedSlot, publicationName: publication }
      }
      const first = await startGateway(options)
      let second: RunningGateway | undefined
      try {
        const streaming = await readinessUntil(first.url, (r) => r.status === 200)
        expect(streaming.body).toMatchObject({ ready: true })
        second = await startGateway(options)
        const held = await readinessUntil(
          second.url,
          (r) => r.body.reason?.includes("held by another process") === true
        )
        expect(held.status).toBe(503)
        expect(held.body).toMatchObject({ ready: false })
        expect(held.body.reason).toContain(`replication slot ${sharedSlot} is held by another process`)
        expect((await readiness(first.url)).status).toBe(200)
        // Once the first lets go of the slot, the second takes over and becomes ready.
        await first.stop()
        expect(
          (await readinessUntil(second.url, (r) => r.status === 200, 20_000)).body
        ).toMatchObject({ ready: true })
      } finally {
        await first.stop()
        await second?.stop()
        await Postgres.dropReplicationSlot(db, sharedSlot)
      }
    },
    60_000
  )
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

/** Sum of the samples of a labelled series in the gateway's /metrics whose labels contain every `labels` pair. */
const series = async (name: string, labels: ReadonlyArray<string>): Promise<number> => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text()
  return text.split("\n")
    .filter((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
}

describe("table plans through the cache", () => {
  it(
    "a burst of joins on one table asks the catalog once; a DDL change of the table is seen by the next join",
    async () => {
      const token = await TestTokens.serviceRoleToken()
      const url = `${gateway.wsUrl}?apikey=${token}&vsn=2.0.0`
      const subscription = `kind="subscription"`
      const loadsBefore = await series("wedsync_cache_misses_total", [`tier="l2"`, subscription])
      const hitsBefore = await series("wedsync_cache_hits_total", [`tier="l1"`, subscription])
      const sockets = await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(url)))
      const join = async (s: RawClient.RawClient, ref: string, filter?: string) => {
        const binding = { event: "*", schema, table: "plan_items", ...(filter === undefined ? {} : { filter }) }
        s.send([ref, ref, `realtime:plans-${ref}`, "phx_join", { config: { postgres_changes: [binding] } }])
        await s.next(RawClient.isReplyTo(ref))
        const frame = await s.next(RawClient.isEvent("system"), 20_000)
        return (frame as ReadonlyArray<unknown>)[4] as System
      }
      try {
        const answers = await Promise.all(sockets.map((s) => join(s, "1")))
        expect(answers.every((a) => a.status === "ok")).toBe(true)
        // One load of the table's plan: the 200 concurrent joins share it (single flight) ...
        expect(await series("wedsync_cache_misses_total", [`tier="l2"`, subscription]) - loadsBefore).toBe(1)
        // ... and a second burst (a reconnect storm) is answered from the in-process cache, with no load at all.
        const again = await Promise.all(sockets.map((s) => join(s, "4")))
        expect(again.every((a) => a.status === "ok")).toBe(true)
        expect(await series("wedsync_cache_misses_total", [`tier="l2"`, subscription]) - loadsBefore).toBe(1)
        expect(await series("wedsync_cache_hits_total", [`tier="l1"`, subscription]) - hitsBefore)
          .toBeGreaterThanOrEqual(200)
        // The cached plan has no `note` column: a filter on it is refused ...
        const [probe] = sockets
        expect(await join(probe!, "2", "note=eq.x")).toMatchObject({ status: "error" })
        await sql(`alter table ${schema}.plan_items add column note text`)
        // ... until the stream announces the altered table (before its first row), which drops the cached plan.
        await sql(`insert into ${schema}.plan_items (title, note) values ('after ddl', 'x')`)
        await sockets[1]!.next(RawClient.isEvent("postgres_changes"), 20_000)
        expect(await join(probe!, "3", "note=eq.x")).toMatchObject({ status: "ok" })
      } finally {
        await Promise.all(sockets.map((s) => s.close()))
      }
    },
    60_000
  )
})

describe("gateway restart", () => {
  it(
    "a client that rejoins within the start delay receives what was committed while the gateway was down, once",
    async () => {
      const restartSlot = uniqueSqlName("slot")
      const port = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, "127.0.0.1", () => {
          const address = probe.address()
          probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
        })
      })
      const options = {
        gateway: { port },
        changes: {
          databaseUrl: Redacted.make(databaseUrl()),
          slotName: restartSlot,
          publicationName: publication,
          startDelayMs: 4_000
        }
      }
      let restarted = await startGateway(options)
      try {
        const token = await TestTokens.serviceRoleToken()
        const c = makeSupabaseClient(restarted.url, token, { accessToken: token })
        clients.push(c)
        await c.realtime.setAuth()
        const w = await watch(c, "restart", [{
          event: "INSERT",
          table: "timeline_items",
          filter: "wedding_id=eq.restart"
        }])
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
    },
    60_000
  )
})

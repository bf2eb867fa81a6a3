/**
 * Memberships from a Postgres table (`MEMBERSHIP_TABLE`), end to end: a real Postgres with its own schema,
 * publication and slot; the gateway follows the table in its one replication stream; unmodified supabase-js clients
 * whose tokens list no wedding, so every access below comes from the table.
 */
import type { SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { databaseUrl, Postgres, redisUrl, SupabaseClients, uniquePrefix, uniqueSqlName } from "@wedsync/testkit"
import { Redacted } from "effect"
import { performance } from "node:perf_hooks"
import pg from "pg"
import { afterAll, afterEach, assert, beforeAll, describe, it } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, inbox, closeAll, subscribe, SubscribeError } = SupabaseClients

type Change = { readonly eventType: string; readonly new: Record<string, unknown>; readonly table: string }
type System = { readonly extension: string; readonly status: string; readonly message: string }

const schema = uniqueSqlName("mem")
const slot = uniqueSqlName("slot")
const publication = uniqueSqlName("pub")
const db = new pg.Client({ connectionString: databaseUrl() })
let gateway: RunningGateway
const clients: Array<SupabaseClient> = []
let counter = 0
const unique = (prefix: string) => `${prefix}-${process.pid}-${++counter}`

const sql = (text: string, values: ReadonlyArray<unknown> = []) => db.query(text, [...values])

beforeAll(async () => {
  await db.connect()
  await sql(`create schema ${schema}`)
  await sql(`create table ${schema}.wedding_members (
    id serial primary key, user_id text not null, wedding_id text, supplier_id text
  )`)
  // Deletes must carry user_id and wedding_id to revoke at once; lookups go through (user_id, wedding_id).
  await sql(`alter table ${schema}.wedding_members replica identity full`)
  await sql(`create index on ${schema}.wedding_members (user_id, wedding_id)`)
  await sql(`create table ${schema}.timeline_items (id serial primary key, wedding_id text not null, title text)`)
  await sql(`alter table ${schema}.timeline_items replica identity full`)
  await sql(`create publication ${publication} for table ${schema}.wedding_members, ${schema}.timeline_items`)
  gateway = await startGateway({
    changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: slot, publicationName: publication },
    membershipTable: { schema, table: "wedding_members" }
  })
}, 30_000)

afterEach(async () => {
  await closeAll(clients.splice(0))
})

afterAll(async () => {
  await gateway?.stop()
  await Postgres.dropReplicationSlot(db, slot)
  await sql(`drop publication if exists ${publication}`)
  await sql(`drop schema if exists ${schema} cascade`)
  await db.end()
}, 30_000)

/** A supabase-js client of a user whose token lists no wedding. */
const userClient = async (sub: string, target: RunningGateway = gateway) => {
  const token = await TestTokens.userToken({ sub, weddingIds: [] })
  const c = makeSupabaseClient(target.url, token, { accessToken: token })
  clients.push(c)
  return c
}

/** Joins private `wedding:<id>` with a Postgres Changes binding on its timeline, confirmed by the gateway. */
const joinWedding = async (c: SupabaseClient, wedding: string) => {
  const changes = inbox<Change>("a timeline row")
  const system = inbox<System>("a system message")
  const channel = c.channel(`wedding:${wedding}`, { config: { private: true } })
    .on(
      "postgres_changes" as never,
      { event: "INSERT", schema, table: "timeline_items", filter: `wedding_id=eq.${wedding}` } as never,
      changes.push as never
    )
    .on("system", {}, system.push)
  await subscribe(channel)
  const subscribed = await system.next((m) => m.extension === "postgres_changes", 15_000)
  assert.strictEqual(subscribed.message, "Subscribed to PostgreSQL")
  return { channel, changes, system }
}

/** A service_role watcher of the membership table: its events say the gateway's stream has seen a membership change. */
const watchMembers = async (target: RunningGateway = gateway) => {
  const c = makeSupabaseClient(target.url, await TestTokens.serviceRoleToken(), {
    accessToken: await TestTokens.serviceRoleToken()
  })
  clients.push(c)
  const changes = inbox<Change>("a membership change")
  const system = inbox<System>("a system message")
  await subscribe(
    c.channel(unique("members"))
      .on("postgres_changes" as never, { event: "*", schema, table: "wedding_members" } as never, changes.push as never)
      .on("system", {}, system.push)
  )
  await system.next((m) => m.extension === "postgres_changes", 15_000)
  return changes
}

const addMember = async (user: string, wedding: string) => {
  await sql(`insert into ${schema}.wedding_members (user_id, wedding_id) values ($1, $2)`, [user, wedding])
}

const addItem = async (wedding: string, title: string) => {
  await sql(`insert into ${schema}.timeline_items (wedding_id, title) values ($1, $2)`, [wedding, title])
}

describe("MEMBERSHIP_TABLE", () => {
  it("a member removed from the table is closed within a second, and no later row reaches it; another member keeps receiving", async () => {
    const wedding = unique("w")
    const alice = unique("alice")
    const bob = unique("bob")
    await addMember(alice, wedding)
    await addMember(bob, wedding)
    const a = await joinWedding(await userClient(alice), wedding)
    const b = await joinWedding(await userClient(bob), wedding)

    await addItem(wedding, "Ceremony")
    assert.strictEqual((await a.changes.next()).new["title"], "Ceremony")
    assert.strictEqual((await b.changes.next()).new["title"], "Ceremony")

    const removedAt = performance.now()
    await sql(`delete from ${schema}.wedding_members where user_id = $1 and wedding_id = $2`, [alice, wedding])
    const closed = await a.system.next((m) => m.status === "error", 1_000)
    const elapsed = performance.now() - removedAt
    assert.strictEqual(
      closed.message,
      `You do not have permissions to read from this Channel topic: wedding:${wedding}`
    )
    assert.isBelow(elapsed, 1_000, "closed within a second of the delete")

    await addItem(wedding, "Vows")
    assert.strictEqual((await b.changes.next((m) => m.new["title"] === "Vows")).new["title"], "Vows")
    // Bob received the later row, so the gateway has handled it: Alice got none.
    assert.deepStrictEqual(a.changes.received.map((m) => m.new["title"]), ["Ceremony"])
  })

  it("a user refused a moment before joins once a membership row is inserted", async () => {
    const wedding = unique("w")
    const carol = unique("carol")
    const members = await watchMembers()
    const c = await userClient(carol)

    const refused = await subscribe(c.channel(`wedding:${wedding}`, { config: { private: true } })).then(
      () => undefined,
      (error: unknown) => error
    )
    assert.instanceOf(refused, SubscribeError)
    assert.include(
      (refused as Error).message,
      `Unauthorized: You do not have permissions to read from this Channel topic: wedding:${wedding}`
    )

    await addMember(carol, wedding)
    // The stream has delivered the insert, so the gateway has dropped its cached refusal.
    await members.next((m) => m.eventType === "INSERT" && m.new["user_id"] === carol)
    const admitted = await joinWedding(await userClient(carol), wedding)
    await addItem(wedding, "First dance")
    assert.strictEqual((await admitted.changes.next()).new["title"], "First dance")
  })
})

describe("wedding-season warming (WEDDING_CALENDAR_SQL)", () => {
  const ADMIN = "warming-admin-token-of-this-test"
  const calendar = `${schema}.calendar`
  /** A series of the gateway's user-data cache reads: `l2` misses are membership lookups, `l1` hits were served. */
  const userReads = async (target: RunningGateway, name: string, tier: string) => {
    const text = await (await fetch(`${target.url}/metrics`)).text()
    return text.split("\n")
      .filter((l) => l.startsWith(`${name}{`) && l.includes(`tier="${tier}"`) && l.includes(`kind="user"`))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
  }
  const warm = (target: RunningGateway, token?: string) =>
    fetch(`${target.url}/admin/cache/warm`, {
      method: "POST",
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` }
    })

  it(
    "seeds the members of the weddings starting soon with one query, so their joins ask the table nothing",
    async () => {
      const soon = unique("soon")
      const later = unique("later")
      await sql(`create table if not exists ${calendar} (wedding_id text not null, starts_at timestamptz not null)`)
      await sql(`insert into ${calendar} values ($1, now() + interval '1 hour'), ($2, now() + interval '5 hours')`, [
        soon,
        later
      ])
      const guests = [unique("g1"), unique("g2"), unique("g3")]
      for (const guest of guests) await addMember(guest, soon)
      const lateGuest = unique("late")
      await addMember(lateGuest, later)
      const warmedSlot = uniqueSqlName("slot")
      const warmed = await startGateway({
        changes: { databaseUrl: Redacted.make(databaseUrl()), slotName: warmedSlot, publicationName: publication },
        membershipTable: { schema, table: "wedding_members" },
        gateway: { adminToken: Redacted.make(ADMIN) },
        warming: { calendarSql: `select wedding_id, starts_at from ${calendar} where starts_at between $1 and $2` }
      })
      try {
        // The endpoint is the operator's: refused without the token, beside the accepted call.
        assert.strictEqual((await warm(warmed)).status, 401)
        assert.strictEqual((await warm(warmed, "not-the-token")).status, 401)
        const answer = await warm(warmed, ADMIN)
        assert.strictEqual(answer.status, 200)
        const report = (await answer.json()) as { weddings: number; decisions: number; plans: number }
        // Only the wedding within WARM_AHEAD (3 h): its three members, and the plans of both published tables.
        assert.deepStrictEqual([report.weddings, report.decisions, report.plans], [1, 3, 2])

        const lookups = await userReads(warmed, "wedsync_cache_misses_total", "l2")
        const served = await userReads(warmed, "wedsync_cache_hits_total", "l1")
        const c = await userClient(guests[0]!, warmed)
        const status = inbox<System>("a system message")
        await subscribe(c.channel(`wedding:${soon}`, { config: { private: true } }).on("system", {}, status.push))
        // Joined from the seeded decision: the table was not asked.
        assert.strictEqual(await userReads(warmed, "wedsync_cache_misses_total", "l2"), lookups)
        assert.isAbove(await userReads(warmed, "wedsync_cache_hits_total", "l1"), served)
      } finally {
        await warmed.stop()
        await Postgres.dropReplicationSlot(db, warmedSlot)
      }
    },
    30_000
  )

  it("answers 409 with the reason on a gateway without a calendar", async () => {
    const plain = await startGateway({ gateway: { adminToken: Redacted.make(ADMIN) } })
    try {
      const answer = await warm(plain, ADMIN)
      assert.strictEqual(answer.status, 409)
      assert.deepStrictEqual(await answer.json(), {
        message: "Cache warming is off: set DATABASE_URL and WEDDING_CALENDAR_SQL"
      })
    } finally {
      await plain.stop()
    }
  })
})

describe("revocation across processes (REDIS_URL)", () => {
  it(
    "a delete seen by one gateway's stream closes the member's channel on another gateway within a second",
    async () => {
      // B's publication leaves the membership table out: B can only learn of the delete from A, over Redis.
      const onlyTimeline = uniqueSqlName("pub")
      await sql(`create publication ${onlyTimeline} for table ${schema}.timeline_items`)
      const redis = { url: Redacted.make(redisUrl()), prefix: uniquePrefix("revoke") }
      const slots = [uniqueSqlName("slot"), uniqueSqlName("slot")] as const
      const start = (slotName: string, publicationName: string) =>
        startGateway({
          changes: { databaseUrl: Redacted.make(databaseUrl()), slotName, publicationName },
          membershipTable: { schema, table: "wedding_members" },
          redis
        })
      const a = await start(slots[0], publication)
      const b = await start(slots[1], onlyTimeline)
      try {
        const wedding = unique("w")
        const carol = unique("carol")
        const dave = unique("dave")
        await addMember(carol, wedding)
        await addMember(dave, wedding)
        const carolOnB = await joinWedding(await userClient(carol, b), wedding)
        const daveOnB = await joinWedding(await userClient(dave, b), wedding)
        // A holds the membership table in its stream; wait until it has seen Carol's row, so its delete is traced.
        const seen = await watchMembers(a)

        const removedAt = performance.now()
        await sql(`delete from ${schema}.wedding_members where user_id = $1 and wedding_id = $2`, [carol, wedding])
        await seen.next((m) => m.eventType === "DELETE")
        const closed = await carolOnB.system.next((m) => m.status === "error", 1_000)
        assert.isBelow(performance.now() - removedAt, 1_000, "closed on B within a second of the delete")
        assert.strictEqual(
          closed.message,
          `You do not have permissions to read from this Channel topic: wedding:${wedding}`
        )
        // Dave, still a member, keeps receiving on B.
        await addItem(wedding, "First dance")
        assert.strictEqual(
          (await daveOnB.changes.next((m) => m.new["title"] === "First dance")).new["title"],
          "First dance"
        )
      } finally {
        await Promise.all([a.stop(), b.stop()])
        for (const slot of slots) await Postgres.dropReplicationSlot(db, slot)
        await sql(`drop publication if exists ${onlyTimeline}`)
      }
    },
    30_000
  )
})

/**
 * PostgresChanges over `Replication.layerMemory`: binding validation, matching, filters, the row policy and
 * rows that move between weddings, without Postgres. The same paths run end to end against a real stream
 * in apps/gateway's PostgresChanges.integration.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Memberships } from "@wedsync/auth"
import { CacheConfig, CacheStore, InvalidationBus, LayeredCache } from "@wedsync/cache"
import { ChangeFeed } from "@wedsync/hub"
import { TestSink } from "@wedsync/hub/testing"
import { Effect, Layer, Metric } from "effect"
import type { ChangeEvent, Column, Transaction } from "../src/ChangeEvent.ts"
import * as ChangesMetrics from "../src/ChangesMetrics.ts"
import * as PostgresChanges from "../src/PostgresChanges.ts"
import { type MemoryTable, Replication, ReplicationFeed } from "../src/Replication.ts"

const columns = (...names: Array<string>): ReadonlyArray<Column> =>
  names.map((name) => ({ name, type: name === "id" || name === "position" ? "int4" : "text" }))

const timeline: MemoryTable = {
  schema: "public",
  table: "timeline_items",
  columns: columns("id", "wedding_id", "title", "position"),
  primaryKey: ["id"]
}
const supplierTasks: MemoryTable = {
  schema: "public",
  table: "supplier_tasks",
  columns: columns("id", "supplier_id", "task"),
  primaryKey: ["id"]
}
const notes: MemoryTable = { schema: "public", table: "notes", columns: columns("id", "body"), primaryKey: ["id"] }
const other: MemoryTable = { schema: "other", table: "audit", columns: columns("id", "wedding_id"), primaryKey: ["id"] }

const feedLayer = (unscopedTables: PostgresChanges.Options["unscopedTables"] = "service_role") =>
  PostgresChanges.layer({ unscopedTables }).pipe(
    Layer.provideMerge(
      Replication.layerMemory({ publication: "wedsync", tables: [timeline, supplierTasks, notes, other] })
    ),
    Layer.provide(Memberships.Memberships.layerNoop)
  )

const serviceRole: ChangeFeed.Access = { role: "service_role", weddingIds: new Set(), supplierIds: new Set() }
const member = (weddingIds: ReadonlyArray<string>, supplierIds: ReadonlyArray<string> = []): ChangeFeed.Access => ({
  role: "authenticated",
  weddingIds: new Set(weddingIds),
  supplierIds: new Set(supplierIds)
})

type BindingSpec = Partial<Omit<ChangeFeed.Binding, "id">>

let nextTopic = 0
/** Subscribes a fresh sink with `bindings` (ids 1, 2, … in order); answers the sink and the per-binding results. */
const watch = (access: ChangeFeed.Access, bindings: ReadonlyArray<BindingSpec>, vsn: "1.0.0" | "2.0.0" = "1.0.0") =>
  Effect.gen(function*() {
    const feed = yield* ChangeFeed.ChangeFeed
    const sink = TestSink.make(vsn)
    const topic = `realtime:t${nextTopic++}`
    const results = yield* feed.subscribe({
      sink,
      topic,
      access,
      bindings: bindings.map((b, i) => ({
        id: i + 1,
        event: b.event ?? "*",
        schema: b.schema ?? "public",
        table: "table" in b ? b.table : "timeline_items",
        filter: b.filter,
        select: b.select
      }))
    })
    return { sink, topic, results }
  })

interface Received {
  readonly ids: ReadonlyArray<number>
  readonly type: string
  readonly table: string
  readonly record: Record<string, unknown> | undefined
  readonly old: Record<string, unknown> | undefined
}

/** The `postgres_changes` payloads a sink received (V1 frames). */
const received = (sink: TestSink.TestSink): Array<Received> =>
  sink.decoded().map((frame) => {
    assert.strictEqual(frame._tag, "Text")
    const { payload } = (frame as { json: { payload: { ids: Array<number>; data: Record<string, unknown> } } }).json
    const data = payload.data
    return {
      ids: payload.ids,
      type: data["type"] as string,
      table: data["table"] as string,
      record: data["record"] as Record<string, unknown> | undefined,
      old: data["old_record"] as Record<string, unknown> | undefined
    }
  })

const change = (
  table: MemoryTable,
  action: ChangeEvent["action"],
  record: Record<string, unknown> | undefined,
  oldRecord?: Record<string, unknown>,
  extra: Partial<ChangeEvent> = {}
): ChangeEvent => ({
  schema: table.schema,
  table: table.table,
  action,
  commitTimestamp: "2026-06-13T12:00:00.000Z",
  columns: table.columns,
  primaryKey: table.primaryKey,
  record,
  oldRecord,
  ...extra
})

let lsn = 0
const commit = (...changes: Array<ChangeEvent>) =>
  Effect.flatMap(ReplicationFeed, (feed) => {
    const transaction: Transaction = {
      lsn: `0/${(++lsn).toString(16)}`,
      commitTimestamp: "2026-06-13T12:00:00.000Z",
      changes
    }
    return feed.commit(transaction)
  })

describe("PostgresChanges binding validation", () => {
  it.effect("subscribes published tables and whole schemas, and refuses what it cannot honour with Supabase's text", () =>
    Effect.gen(function*() {
      const { results } = yield* watch(serviceRole, [
        {},
        { table: undefined },
        { table: "missing" },
        { schema: "*" },
        { filter: "id=eq." + "1", select: ["title"] },
        { filter: "nope" },
        { filter: "unknown=eq.1" },
        { select: ["unknown"] },
        { table: undefined, filter: "id=eq.1" },
        { schema: "empty", table: undefined }
      ])
      const texts = results.map((r) => r._tag === "Subscribed" ? "ok" : r.reason.message)
      assert.deepStrictEqual(texts.slice(0, 2), ["ok", "ok"])
      assert.strictEqual(
        texts[2],
        "Unable to subscribe to changes with given parameters. Table public.missing does not exist or is not in publication wedsync: [event: *, schema: public, table: missing, filters: []]"
      )
      assert.include(texts[3], "This gateway needs an explicit schema for each binding")
      assert.strictEqual(texts[4], "ok")
      assert.notStrictEqual(texts[5], "ok")
      assert.include(texts[6], "Unable to subscribe to changes with given parameters.")
      assert.include(texts[7], "invalid column for select unknown")
      assert.include(texts[8], "A filter or select needs a table")
      assert.include(texts[9], "No table of schema empty is in publication wedsync")
    }).pipe(Effect.provide(feedLayer())))
})

describe("PostgresChanges matching", () => {
  it.effect("delivers by table and event, with the ids of every binding of a socket that matched, in one frame", () =>
    Effect.gen(function*() {
      const all = yield* watch(serviceRole, [{}, { event: "INSERT" }, { event: "UPDATE" }, { table: "notes" }])
      const updates = yield* watch(serviceRole, [{ event: "update" }])
      yield* commit(change(timeline, "INSERT", { id: 1, wedding_id: "w-1", title: "Vows", position: 1 }))
      yield* commit(change(timeline, "UPDATE", { id: 1, wedding_id: "w-1", title: "Rings", position: 1 }))
      yield* commit(
        change(notes, "INSERT", { id: 9, body: "n" }),
        change(supplierTasks, "INSERT", { id: 3, supplier_id: "s", task: "t" })
      )
      assert.deepStrictEqual(received(all.sink).map((r) => [r.type, r.table, r.ids]), [
        ["INSERT", "timeline_items", [1, 2]],
        ["UPDATE", "timeline_items", [1, 3]],
        ["INSERT", "notes", [4]]
      ])
      assert.deepStrictEqual(received(updates.sink).map((r) => [r.type, r.ids]), [["UPDATE", [1]]])
    }).pipe(Effect.provide(feedLayer())))

  it.effect("encodes one frame per group: sockets with the same topic, ids and serializer share the bytes", () =>
    Effect.gen(function*() {
      const feed = yield* ChangeFeed.ChangeFeed
      const sinks = [TestSink.make("1.0.0"), TestSink.make("1.0.0"), TestSink.make("2.0.0")]
      for (const sink of sinks) {
        yield* feed.subscribe({
          sink,
          topic: "realtime:shared",
          access: serviceRole,
          bindings: [{
            id: 7,
            event: "*",
            schema: "public",
            table: "timeline_items",
            filter: undefined,
            select: undefined
          }]
        })
      }
      yield* commit(change(timeline, "INSERT", { id: 1, wedding_id: "w-1", title: "Vows", position: 1 }))
      const [a, b, c] = sinks.map((sink) => sink.frames[0])
      assert.strictEqual(a, b)
      assert.notStrictEqual(a, c)
      const v2 = (c === undefined ? [] : TestSink.decodeFrames(c)).map((d) => d._tag === "Text" ? d.json : undefined)
      assert.deepStrictEqual((v2[0] as Array<unknown>).slice(0, 4), [null, null, "realtime:shared", "postgres_changes"])
    }).pipe(Effect.provide(feedLayer())))

  it.effect("covers every published table of a schema for a binding without a table, and stops after unsubscribe", () =>
    Effect.gen(function*() {
      const feed = yield* ChangeFeed.ChangeFeed
      const schema = yield* watch(serviceRole, [{ schema: "other", table: undefined }, {
        schema: "other",
        table: "audit"
      }])
      yield* commit(
        change(other, "INSERT", { id: 1, wedding_id: "w-1" }),
        change(timeline, "INSERT", { id: 2, wedding_id: "w-1" })
      )
      // The table's entries are matched before the schema's, so binding 2 comes first.
      assert.deepStrictEqual(received(schema.sink).map((r) => [r.table, r.ids]), [["audit", [2, 1]]])
      feed.unsubscribe(schema.sink)
      yield* commit(change(other, "INSERT", { id: 3, wedding_id: "w-1" }))
      assert.strictEqual(received(schema.sink).length, 1)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("ignores TRUNCATE", () =>
    Effect.gen(function*() {
      const all = yield* watch(serviceRole, [{}])
      yield* commit(change(timeline, "TRUNCATE", undefined))
      assert.strictEqual(all.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer())))
})

describe("PostgresChanges filters", () => {
  it.effect("matches INSERT/UPDATE on the new row and DELETE on the old one", () =>
    Effect.gen(function*() {
      const high = yield* watch(serviceRole, [{ filter: "position=gt.5" }])
      const named = yield* watch(serviceRole, [{ filter: "title=in.(Vows,Rings)" }])
      yield* commit(
        change(timeline, "INSERT", { id: 1, wedding_id: "w", title: "Vows", position: 9 }),
        change(timeline, "INSERT", { id: 2, wedding_id: "w", title: "Cake", position: 1 }),
        change(timeline, "UPDATE", { id: 2, wedding_id: "w", title: "Rings", position: 6 }),
        change(timeline, "DELETE", undefined, { id: 1, wedding_id: "w", title: "Vows", position: 9 }),
        change(timeline, "DELETE", undefined, { id: 3, wedding_id: "w", title: "Dance", position: 2 })
      )
      assert.deepStrictEqual(received(high.sink).map((r) => [r.type, (r.record ?? r.old)?.["id"]]), [
        ["INSERT", 1],
        ["UPDATE", 2],
        ["DELETE", 1]
      ])
      assert.deepStrictEqual(received(named.sink).map((r) => [r.type, (r.record ?? r.old)?.["id"]]), [
        ["INSERT", 1],
        ["UPDATE", 2],
        ["DELETE", 1]
      ])
    }).pipe(Effect.provide(feedLayer())))

  it.effect("gives a socket in two matching entries one frame with both ids, and one in a non-matching entry nothing more", () =>
    Effect.gen(function*() {
      const both = yield* watch(serviceRole, [{ filter: "position=gt.5" }, { filter: "title=eq.Vows" }, {
        filter: "id=eq.99"
      }])
      yield* commit(change(timeline, "INSERT", { id: 1, wedding_id: "w", title: "Vows", position: 9 }))
      yield* commit(change(timeline, "INSERT", { id: 2, wedding_id: "w", title: "Vows", position: 1 }))
      assert.deepStrictEqual(received(both.sink).map((r) => [r.record?.["id"], r.ids]), [[1, [1, 2]], [2, [2]]])
    }).pipe(Effect.provide(feedLayer())))

  it.effect("sends only the selected columns and the primary key", () =>
    Effect.gen(function*() {
      const picked = yield* watch(serviceRole, [{ select: ["title"] }])
      yield* commit(change(timeline, "INSERT", { id: 1, wedding_id: "w", title: "Vows", position: 9 }))
      assert.deepStrictEqual(received(picked.sink)[0]?.record, { id: 1, title: "Vows" })
    }).pipe(Effect.provide(feedLayer())))
})

describe("PostgresChanges row policy", () => {
  it.effect("sends a wedding's rows to its members and service_role only, DELETEs to members with the key only", () =>
    Effect.gen(function*() {
      const ofA = yield* watch(member(["w-A"]), [{}])
      const ofB = yield* watch(member(["w-B"]), [{}])
      const admin = yield* watch(serviceRole, [{}])
      const row = { id: 1, wedding_id: "w-A", title: "A secret", position: 1 }
      yield* commit(change(timeline, "INSERT", row), change(timeline, "DELETE", undefined, row))
      assert.deepStrictEqual(received(ofA.sink).map((r) => [r.type, r.record ?? r.old]), [["INSERT", row], ["DELETE", {
        id: 1
      }]])
      assert.deepStrictEqual(received(admin.sink).map((r) => [r.type, r.record ?? r.old]), [["INSERT", row], [
        "DELETE",
        row
      ]])
      assert.strictEqual(ofB.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("sends a supplier's rows to its members; unscoped tables follow UNSCOPED_TABLES", () =>
    Effect.gen(function*() {
      const supplier = yield* watch(member([], ["s-1"]), [{ table: "supplier_tasks" }])
      const stranger = yield* watch(member([], ["s-2"]), [{ table: "supplier_tasks" }, { table: "notes" }])
      yield* commit(
        change(supplierTasks, "INSERT", { id: 1, supplier_id: "s-1", task: "cake" }),
        change(notes, "INSERT", { id: 1, body: "b" })
      )
      assert.deepStrictEqual(received(supplier.sink).map((r) => r.table), ["supplier_tasks"])
      assert.strictEqual(stranger.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("opens unscoped tables to authenticated subscribers when UNSCOPED_TABLES=authenticated", () =>
    Effect.gen(function*() {
      const user = yield* watch(member([]), [{ table: "notes" }])
      const anon = yield* watch({ role: "anon", weddingIds: new Set(), supplierIds: new Set() }, [{ table: "notes" }])
      yield* commit(change(notes, "INSERT", { id: 1, body: "b" }))
      assert.strictEqual(user.sink.frames.length, 1)
      assert.strictEqual(anon.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer("authenticated"))))

  it.effect("sends nothing to an expired token, whatever its role", () =>
    Effect.gen(function*() {
      // The test clock reads 0: a token that expired at epoch second 0 is expired.
      const expired = yield* watch({ ...serviceRole, exp: 0 }, [{}])
      const valid = yield* watch({ ...serviceRole, exp: 60 }, [{}])
      yield* commit(change(timeline, "INSERT", { id: 1, wedding_id: "w", title: "t", position: 1 }))
      assert.strictEqual(expired.sink.frames.length, 0)
      assert.strictEqual(valid.sink.frames.length, 1)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("withholds a scoped DELETE whose old image lacks the scope column from members, and counts it", () =>
    Effect.gen(function*() {
      const before = (yield* Metric.value(ChangesMetrics.deletesWithheld)).count
      const ofA = yield* watch(member(["w-A"]), [{}])
      const admin = yield* watch(serviceRole, [{}])
      yield* commit(change(timeline, "DELETE", undefined, { id: 1 }))
      assert.strictEqual(ofA.sink.frames.length, 0)
      assert.deepStrictEqual(received(admin.sink).map((r) => r.old), [{ id: 1 }])
      assert.strictEqual((yield* Metric.value(ChangesMetrics.deletesWithheld)).count, before + 1)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("sends a row whose scope column is not published to service_role only, even when unscoped tables are open", () =>
    Effect.gen(function*() {
      const user = yield* watch(member(["w-A"]), [{ table: "notes" }])
      const admin = yield* watch(serviceRole, [{ table: "notes" }])
      yield* commit(change(notes, "INSERT", { id: 1, body: "b" }, undefined, { scopeHidden: true }))
      assert.strictEqual(user.sink.frames.length, 0)
      assert.strictEqual(admin.sink.frames.length, 1)
    }).pipe(Effect.provide(feedLayer("all"))))
})

describe("PostgresChanges rows that move between weddings", () => {
  const oldRow = { id: 5, wedding_id: "move-B", title: "B secret", position: 7 }
  const newRow = { id: 5, wedding_id: "move-A", title: "now A", position: 7 }

  it.effect("gives A only the new row with the shared key as old, B only a DELETE with the key, both sides the UPDATE", () =>
    Effect.gen(function*() {
      const a = yield* watch(member(["move-A"]), [{}])
      const aFiltered = yield* watch(member(["move-A"]), [{ filter: "wedding_id=eq.move-A" }])
      const b = yield* watch(member(["move-B"]), [{}])
      const bFiltered = yield* watch(member(["move-B"]), [{ filter: "wedding_id=eq.move-B" }])
      const bUpdates = yield* watch(member(["move-B"]), [{ event: "UPDATE" }])
      const bDeletes = yield* watch(member(["move-B"]), [{ event: "DELETE" }])
      const both = yield* watch(member(["move-A", "move-B"]), [{}])
      const admin = yield* watch(serviceRole, [{}, { event: "UPDATE" }])
      const outsider = yield* watch(member(["move-C"]), [{}])
      yield* commit(change(timeline, "UPDATE", newRow, oldRow))
      for (const w of [a, aFiltered]) {
        assert.deepStrictEqual(received(w.sink).map((r) => [r.type, r.record, r.old]), [["UPDATE", newRow, { id: 5 }]])
        assert.notInclude(JSON.stringify(received(w.sink)), "B secret")
      }
      for (const w of [b, bFiltered, bDeletes]) {
        assert.deepStrictEqual(received(w.sink).map((r) => [r.type, r.record, r.old]), [["DELETE", undefined, {
          id: 5
        }]])
      }
      assert.strictEqual(bUpdates.sink.frames.length, 0)
      assert.deepStrictEqual(received(both.sink).map((r) => [r.type, r.record, r.old]), [["UPDATE", newRow, oldRow]])
      assert.deepStrictEqual(received(admin.sink).map((r) => [r.type, r.old, r.ids]), [["UPDATE", oldRow, [1, 2]]])
      assert.strictEqual(outsider.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("matches the leaving side's filter on the old row, and the entering side's on the new row", () =>
    Effect.gen(function*() {
      const aWrongFilter = yield* watch(member(["move-A"]), [{ filter: "title=eq.B secret" }])
      const bWrongFilter = yield* watch(member(["move-B"]), [{ filter: "title=eq.now A" }])
      yield* commit(change(timeline, "UPDATE", newRow, oldRow))
      assert.strictEqual(aWrongFilter.sink.frames.length, 0)
      assert.strictEqual(bWrongFilter.sink.frames.length, 0)
    }).pipe(Effect.provide(feedLayer())))

  it.effect("treats a row that left every wedding (wedding_id set to NULL) as a move, and a supplier change the same way", () =>
    Effect.gen(function*() {
      const b = yield* watch(member(["move-B"]), [{}])
      const s1 = yield* watch(member([], ["s-1"]), [{ table: "supplier_tasks" }])
      const s2 = yield* watch(member([], ["s-2"]), [{ table: "supplier_tasks" }])
      yield* commit(
        change(timeline, "UPDATE", { ...oldRow, wedding_id: null }, oldRow),
        change(supplierTasks, "UPDATE", { id: 1, supplier_id: "s-2", task: "moved" }, {
          id: 1,
          supplier_id: "s-1",
          task: "s-1 only"
        })
      )
      assert.deepStrictEqual(received(b.sink).map((r) => [r.type, r.old]), [["DELETE", { id: 5 }]])
      assert.deepStrictEqual(received(s1.sink).map((r) => [r.type, r.old]), [["DELETE", { id: 1 }]])
      assert.deepStrictEqual(received(s2.sink).map((r) => [r.type, r.record, r.old]), [["UPDATE", {
        id: 1,
        supplier_id: "s-2",
        task: "moved"
      }, { id: 1 }]])
    }).pipe(Effect.provide(feedLayer())))

  it.effect("cuts the old image to the key columns both images share: a changed key is not shown", () =>
    Effect.gen(function*() {
      const a = yield* watch(member(["move-A"]), [{}])
      yield* commit(change(timeline, "UPDATE", { ...newRow, id: 6 }, oldRow))
      assert.deepStrictEqual(received(a.sink).map((r) => r.old), [{}])
    }).pipe(Effect.provide(feedLayer())))
})

describe("PostgresChanges with a membership table", () => {
  const members: MemoryTable = {
    schema: "public",
    table: "wedding_members",
    columns: columns("id", "user_id", "wedding_id", "supplier_id"),
    primaryKey: ["id"]
  }
  /** The table as the source of truth sees it (rows `user|wedding`), and the lookups it answered. */
  const makeLayer = (rows: ReadonlyArray<string>) => {
    const table = { rows: new Set(rows), lookups: 0 }
    const source = Layer.succeed(Memberships.MembershipSource, {
      lookup: (grant) =>
        Effect.sync(() => {
          table.lookups++
          return grant.scope === "wedding" && table.rows.has(`${grant.userId}|${grant.id}`)
        })
    })
    const bus = InvalidationBus.InvalidationBus.layerMemory
    const cache = LayeredCache.LayeredCache.layer.pipe(
      Layer.provide([CacheStore.CacheStore.layerNoop, CacheConfig.CacheConfig.layer()]),
      Layer.provideMerge(bus)
    )
    const memberships = Memberships.Memberships.layer.pipe(Layer.provide([source, cache]))
    const layer = PostgresChanges.layer({
      unscopedTables: "service_role",
      membershipTable: { schema: "public", table: "wedding_members" }
    }).pipe(
      Layer.provideMerge(
        Replication.layerMemory({ publication: "wedsync", tables: [timeline, members] })
      ),
      Layer.provideMerge(memberships)
    )
    return { table, layer }
  }
  const user = (sub: string): ChangeFeed.Access => ({ ...member([]), sub })
  const item = (id: number, wedding: string) =>
    change(timeline, "INSERT", { id, wedding_id: wedding, title: "t", position: id })
  const titles = (sink: TestSink.TestSink) => received(sink).map((r) => r.record?.["id"])

  it.effect("a table member receives the wedding's rows, decided once per (user, wedding), not per row", () => {
    const { table, layer } = makeLayer(["alice|w-1"])
    return Effect.gen(function*() {
      const alice = yield* watch(user("alice"), [{}])
      const bob = yield* watch(user("bob"), [{}])
      yield* commit(item(1, "w-1"), item(2, "w-1"), item(3, "w-2"))
      yield* commit(item(4, "w-1"))
      assert.deepStrictEqual(titles(alice.sink), [1, 2, 4])
      assert.deepStrictEqual(titles(bob.sink), [])
      // (alice, w-1), (alice, w-2), (bob, w-1), (bob, w-2): one lookup each, for four rows.
      assert.strictEqual(table.lookups, 4)
    }).pipe(Effect.provide(layer))
  })

  it.effect("a membership row deleted in the stream stops the rows at once, the same transaction included", () => {
    const { table, layer } = makeLayer(["alice|w-1", "bob|w-1"])
    return Effect.gen(function*() {
      const alice = yield* watch(user("alice"), [{}])
      const bob = yield* watch(user("bob"), [{}])
      const revoked = yield* Effect.flatMap(Memberships.Memberships, (m) =>
        Effect.gen(function*() {
          const told: Array<Memberships.Grant> = []
          yield* m.onRevoke((grant) => told.push(grant))
          return told
        }))
      yield* commit(item(1, "w-1"))
      table.rows.delete("alice|w-1")
      yield* commit(
        item(2, "w-1"),
        change(members, "DELETE", undefined, { id: 7, user_id: "alice", wedding_id: "w-1", supplier_id: null })
      )
      yield* commit(item(3, "w-1"))
      assert.deepStrictEqual(titles(alice.sink), [1])
      assert.deepStrictEqual(titles(bob.sink), [1, 2, 3])
      assert.deepStrictEqual(revoked, [{ userId: "alice", scope: "wedding", id: "w-1" }])
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.effect("an inserted membership grants the next row; an update that moves it revokes the old wedding", () => {
    const { table, layer } = makeLayer([])
    return Effect.gen(function*() {
      const alice = yield* watch(user("alice"), [{}])
      yield* commit(item(1, "w-1"))
      table.rows.add("alice|w-1")
      yield* commit(change(members, "INSERT", { id: 7, user_id: "alice", wedding_id: "w-1", supplier_id: null }))
      yield* commit(item(2, "w-1"))
      table.rows.delete("alice|w-1")
      table.rows.add("alice|w-2")
      yield* commit(
        change(
          members,
          "UPDATE",
          { id: 7, user_id: "alice", wedding_id: "w-2", supplier_id: null },
          { id: 7, user_id: "alice", wedding_id: "w-1", supplier_id: null }
        )
      )
      yield* commit(item(3, "w-1"), item(4, "w-2"))
      assert.deepStrictEqual(titles(alice.sink), [2, 4])
    }).pipe(Effect.provide(layer))
  })
})

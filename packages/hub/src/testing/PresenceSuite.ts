/**
 * The contract of `Presence` on one node, run against every implementation (`Presence.layerMemory`, and
 * `Presence.layerRedis` over a real Redis in the hub's integration tests): diffs as Supabase emits them, the state a
 * joiner is sent, room isolation, hostile presence keys and the room bounds.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Hub } from "../Hub.ts"
import * as Presence from "../Presence.ts"
import * as Publication from "../Publication.ts"
import * as TestSink from "./TestSink.ts"

const ROOM = "realtime:room1"

type Metas = Record<string, { metas: Array<Record<string, unknown>> }>
interface Diff {
  readonly joins: Metas
  readonly leaves: Metas
}

/** A v2 member of the room that records the `presence_diff` payloads it is sent. */
const member = (topic = ROOM, isPrivate = false) =>
  Effect.gen(function*() {
    const hub = yield* Hub
    const sink = TestSink.make("2.0.0")
    hub.add(Publication.topicKey(topic, isPrivate), sink)
    return {
      diffs: (): Array<Diff> =>
        sink.decoded().map((frame) => {
          if (frame._tag !== "Text") throw new Error("presence frames are text")
          const [joinRef, ref, frameTopic, event, payload] = frame.json as [null, null, string, string, Diff]
          assert.deepStrictEqual([joinRef, ref, frameTopic, event], [null, null, topic, "presence_diff"])
          return payload
        })
    }
  })

const stateOf = (presence: Presence.PresenceShape, topic = ROOM, isPrivate = false) =>
  Effect.map(presence.state(topic, isPrivate), (json) => JSON.parse(json) as Metas)

const refOf = (metas: Metas, key: string, i = 0): string => {
  const ref = metas[key]?.metas[i]?.["phx_ref"]
  if (typeof ref !== "string") throw new Error(`no phx_ref for ${key}`)
  return ref
}

/** Registers the suite; `makeLayer` is called once per test (a fresh node, a fresh Redis prefix). */
export const PresenceSuite = <E>(name: string, makeLayer: () => Layer.Layer<Presence.Presence | Hub, E>) =>
  describe(`PresenceSuite (${name})`, () => {
    it.live("track publishes a join with a fresh phx_ref to every member, the tracker included", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const watcher = yield* member()
        const owner = {}
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice", online_at: "2026-01-01T00:00:00Z" })
        const [diff] = watcher.diffs()
        assert.deepStrictEqual(diff!.leaves, {})
        const meta = diff!.joins["user-1"]!.metas[0]!
        assert.match(String(meta["phx_ref"]), /^[A-Za-z0-9+/]{16}$/)
        assert.deepStrictEqual(meta, { phx_ref: meta["phx_ref"], name: "alice", online_at: "2026-01-01T00:00:00Z" })
        assert.notProperty(meta, "phx_ref_prev")
        assert.deepStrictEqual(yield* stateOf(presence), { "user-1": { metas: [meta] } })
      }).pipe(Effect.provide(makeLayer())))

    it.live("re-tracking the same payload is a no-op", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const watcher = yield* member()
        const owner = {}
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice" })
        const before = yield* stateOf(presence)
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice" })
        assert.strictEqual(watcher.diffs().length, 1)
        assert.deepStrictEqual(yield* stateOf(presence), before)
      }).pipe(Effect.provide(makeLayer())))

    it.live("a changed payload is a leave of the old ref and a join of a new ref with phx_ref_prev", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const watcher = yield* member()
        const owner = {}
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice" })
        const oldRef = refOf(yield* stateOf(presence), "user-1")
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice2" })
        const [, update] = watcher.diffs()
        const newRef = refOf(update!.joins, "user-1")
        assert.notStrictEqual(newRef, oldRef)
        assert.deepStrictEqual(update, {
          joins: { "user-1": { metas: [{ phx_ref: newRef, phx_ref_prev: oldRef, name: "alice2" }] } },
          leaves: { "user-1": { metas: [{ phx_ref: oldRef, name: "alice" }] } }
        })
        // The state shows the new meta only, without phx_ref_prev.
        assert.deepStrictEqual(yield* stateOf(presence), { "user-1": { metas: [{ phx_ref: newRef, name: "alice2" }] } })
      }).pipe(Effect.provide(makeLayer())))

    it.live("untrack publishes a leave; untracking twice publishes nothing more", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const watcher = yield* member()
        const owner = {}
        yield* presence.track(ROOM, false, "user-1", owner, { name: "alice" })
        const ref = refOf(yield* stateOf(presence), "user-1")
        yield* presence.untrack(ROOM, false, owner)
        yield* presence.untrack(ROOM, false, owner)
        const diffs = watcher.diffs()
        assert.strictEqual(diffs.length, 2)
        assert.deepStrictEqual(diffs[1], {
          joins: {},
          leaves: { "user-1": { metas: [{ phx_ref: ref, name: "alice" }] } }
        })
        assert.deepStrictEqual(yield* stateOf(presence), {})
      }).pipe(Effect.provide(makeLayer())))

    it.live("state groups metas by key: two owners under one key are two metas", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const tab1 = {}
        const tab2 = {}
        yield* presence.track(ROOM, false, "user-1", tab1, { tab: 1 })
        yield* presence.track(ROOM, false, "user-1", tab2, { tab: 2 })
        yield* presence.track(ROOM, false, "user-2", {}, { tab: 1 })
        const state = yield* stateOf(presence)
        assert.deepStrictEqual(Object.keys(state).sort(), ["user-1", "user-2"])
        assert.deepStrictEqual(state["user-1"]!.metas.map((m) => m["tab"]), [1, 2])
        assert.notStrictEqual(refOf(state, "user-1", 0), refOf(state, "user-1", 1))
        assert.strictEqual(state["user-2"]!.metas.length, 1)
        // One tab leaving keeps the other's meta.
        yield* presence.untrack(ROOM, false, tab1)
        assert.deepStrictEqual((yield* stateOf(presence))["user-1"]!.metas.map((m) => m["tab"]), [2])
      }).pipe(Effect.provide(makeLayer())))

    it.live("rooms are isolated by topic and by public/private", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const publicRoom = yield* member(ROOM, false)
        const privateRoom = yield* member(ROOM, true)
        const otherRoom = yield* member("realtime:room2", false)
        const owner = {}
        yield* presence.track(ROOM, true, "user-1", owner, { name: "alice" })
        assert.strictEqual(privateRoom.diffs().length, 1)
        assert.strictEqual(publicRoom.diffs().length, 0)
        assert.strictEqual(otherRoom.diffs().length, 0)
        assert.deepStrictEqual(yield* stateOf(presence, ROOM, false), {})
        assert.deepStrictEqual(Object.keys(yield* stateOf(presence, ROOM, true)), ["user-1"])
        // The same owner may be present in another room at the same time.
        yield* presence.track("realtime:room2", false, "user-1", owner, { name: "alice" })
        assert.strictEqual(otherRoom.diffs().length, 1)
        yield* presence.untrack(ROOM, true, owner)
        assert.deepStrictEqual(Object.keys(yield* stateOf(presence, "realtime:room2", false)), ["user-1"])
      }).pipe(Effect.provide(makeLayer())))

    it.live("state of a room nobody tracked is an empty object", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        assert.strictEqual(yield* presence.state("realtime:empty", false), "{}")
      }).pipe(Effect.provide(makeLayer())))

    it.live("untrack with except sends the leave to every member but that sink (a closing channel)", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const hub = yield* Hub
        const watcher = yield* member()
        const closing = TestSink.make("2.0.0")
        hub.add(Publication.topicKey(ROOM, false), closing)
        yield* presence.track(ROOM, false, "user-1", closing, { name: "alice" })
        const framesBefore = closing.decoded().length
        yield* presence.untrack(ROOM, false, closing, closing)
        assert.deepStrictEqual(Object.keys(watcher.diffs()[1]!.leaves), ["user-1"])
        assert.strictEqual(closing.decoded().length, framesBefore)
      }).pipe(Effect.provide(makeLayer())))
    for (const key of ["__proto__", "constructor", "toString", "prototype", "hasOwnProperty", "valueOf"]) {
      it.live(`a presence key named ${key} is an ordinary key of state and diffs (beside: a normal key)`, () =>
        Effect.gen(function*() {
          const presence = yield* Presence.Presence
          const watcher = yield* member()
          const [hostile, normal] = [{}, {}]
          yield* presence.track(ROOM, false, key, hostile, { device: key })
          yield* presence.track(ROOM, false, "venue-1", normal, { device: "venue-1" })
          const state = yield* stateOf(presence)
          assert.deepStrictEqual(Object.keys(state), [key, "venue-1"])
          assert.strictEqual(Object.getOwnPropertyDescriptor(state, key)?.value.metas[0]?.["device"], key)
          const [join] = watcher.diffs()
          assert.deepStrictEqual(Object.keys(join!.joins), [key])
          yield* presence.untrack(ROOM, false, hostile)
          assert.deepStrictEqual(Object.keys(watcher.diffs()[2]!.leaves), [key])
          assert.deepStrictEqual(Object.keys(yield* stateOf(presence)), ["venue-1"])
        }).pipe(Effect.provide(makeLayer())))
    }

    it.live("limits: a track past the room's keys or bytes fails with PresenceLimitExceeded and changes nothing", () =>
      Effect.gen(function*() {
        const presence = yield* Presence.Presence
        const watcher = yield* member()
        const maxBytes = Presence.entryBytes("a", JSON.stringify({ s: "x".repeat(10) })) +
          Presence.entryBytes("b", JSON.stringify({ s: "x" })) +
          Presence.entryBytes("b", "{}")
        const limits = { maxKeys: 2, maxBytes }
        yield* presence.track(ROOM, false, "a", {}, { s: "x".repeat(10) }, limits)
        yield* presence.track(ROOM, false, "b", {}, { s: "x" }, limits)
        const before = yield* presence.state(ROOM, false)
        const tooMany = yield* Effect.flip(presence.track(ROOM, false, "c", {}, {}, limits))
        assert.deepStrictEqual([tooMany.limit, tooMany.max], ["keys", 2])
        const third = {}
        // Same key "b" from another owner: no new key, but more bytes than the room may hold.
        const tooBig = yield* Effect.flip(presence.track(ROOM, false, "b", third, { s: "x".repeat(20) }, limits))
        assert.strictEqual(tooBig.limit, "bytes")
        assert.strictEqual(yield* presence.state(ROOM, false), before)
        assert.strictEqual(watcher.diffs().length, 2)
        // Beside: a second owner of an existing key within the bytes is accepted.
        yield* presence.track(ROOM, false, "b", third, {}, limits)
        assert.strictEqual((yield* stateOf(presence))["b"]!.metas.length, 2)
      }).pipe(Effect.provide(makeLayer())))
  })

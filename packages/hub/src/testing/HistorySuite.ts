/**
 * The contract every `History` implementation must meet: entries come back oldest first with their ids and bodies,
 * filtered by id time, the most recent `limit` of them; topics are apart; and every way a replay can fall short of
 * what was asked (over the limit, dropped by the per-topic bound, older than the TTL) is reported as a gap.
 *
 * Time is the TestClock's: entries are appended with ids made at chosen times, so expiry needs no waiting.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Result } from "effect"
import { TestClock } from "effect/testing"
import * as History from "../History.ts"
import { Hub } from "../Hub.ts"
import * as Publication from "../Publication.ts"
import * as TestSink from "./TestSink.ts"

/** Builds a fresh history (a new store: memory, or a new Redis key prefix) with these options. */
type MakeHistoryLayer<E> = (options: History.HistoryOptions) => Layer.Layer<History.History, E>

const ROOM = "realtime:wedding:1"
const ROOM_KEY = Publication.topicKey(ROOM, true)

const message = (n: number, topic = ROOM, isPrivate = true): Publication.Publication =>
  Publication.json(topic, isPrivate, "broadcast", `{"type":"broadcast","event":"n","payload":{"n":${n}}}`)

const numberOf = (entry: History.Entry): number => {
  const body = entry.publication.body
  if (body._tag !== "Json") return -1
  return (JSON.parse(body.json) as { readonly payload: { readonly n: number } }).payload.n
}

const MINUTE = 60_000
/** The (Test)Clock time at which each test's history is built: it holds nothing older. */
const START = 10 * MINUTE - 5_000

export const HistorySuite = <E>(name: string, makeLayer: MakeHistoryLayer<E>) => {
  const withHistory = <A>(
    options: Partial<History.HistoryOptions>,
    f: (history: History.HistoryShape) => Effect.Effect<A, History.HistoryError>
  ) =>
    Effect.gen(function*() {
      yield* TestClock.setTime(START)
      const context = yield* Layer.build(makeLayer({ ...History.defaults, ...options }))
      return yield* f(Context.get(context, History.History))
    })

  /** Appends `n` at the current (Test)Clock time, with an id of that time. */
  const appendAt = (history: History.HistoryShape, ms: number, n: number, topic = ROOM, isPrivate = true) =>
    Effect.gen(function*() {
      yield* TestClock.setTime(ms)
      const id = History.makeId(ms)
      yield* history.append({ id, publication: message(n, topic, isPrivate) })
      return id
    })

  describe(`HistorySuite (${name})`, () => {
    it.effect("an empty topic replays nothing and reports no gap", () =>
      withHistory({}, (history) =>
        Effect.gen(function*() {
          yield* TestClock.setTime(10 * MINUTE)
          const replay = yield* history.read(ROOM_KEY, 10 * MINUTE - 1000, 25)
          assert.deepStrictEqual(replay, { entries: [], older: [], gap: undefined })
        })))

    it.effect("entries come back oldest first, with their ids and bodies, from `since` on", () =>
      withHistory({}, (history) =>
        Effect.gen(function*() {
          const base = 10 * MINUTE
          const ids: Array<string> = []
          for (let n = 0; n < 5; n++) ids.push(yield* appendAt(history, base + n * 100, n))
          const all = yield* history.read(ROOM_KEY, base, 25)
          assert.deepStrictEqual(all.entries.map((e) => e.id), ids)
          assert.deepStrictEqual(all.entries.map(numberOf), [0, 1, 2, 3, 4])
          assert.deepStrictEqual(all.entries[0]!.publication, message(0))
          assert.strictEqual(all.gap, undefined)
          assert.strictEqual((yield* history.read(ROOM_KEY, START, 25)).gap, undefined, "nothing dropped or expired")
          // `since` is compared with the id's time, inclusive.
          const later = yield* history.read(ROOM_KEY, base + 200, 25)
          assert.deepStrictEqual(later.entries.map(numberOf), [2, 3, 4])
          assert.strictEqual(later.gap, undefined)
        })))

    it.effect("more matches than `limit`: the most recent `limit`, and an OverLimit gap; exactly `limit`: none", () =>
      withHistory({}, (history) =>
        Effect.gen(function*() {
          const base = 10 * MINUTE
          const ids: Array<string> = []
          for (let n = 0; n < 6; n++) ids.push(yield* appendAt(history, base + n, n))
          const over = yield* history.read(ROOM_KEY, base, 4)
          assert.deepStrictEqual(over.entries.map(numberOf), [2, 3, 4, 5])
          assert.deepStrictEqual(over.older, ids.slice(0, 2), "the matched ids left out, oldest first")
          assert.deepStrictEqual(over.gap, { _tag: "OverLimit", limit: 4 })
          const exact = yield* history.read(ROOM_KEY, base, 6)
          assert.deepStrictEqual(exact.entries.map(numberOf), [0, 1, 2, 3, 4, 5])
          assert.deepStrictEqual(exact.older, [])
          assert.strictEqual(exact.gap, undefined)
        })))

    it.effect("topics are kept apart, private and public of one name too", () =>
      withHistory({}, (history) =>
        Effect.gen(function*() {
          const base = 10 * MINUTE
          yield* appendAt(history, base, 1)
          yield* appendAt(history, base + 1, 2, "realtime:wedding:2")
          yield* appendAt(history, base + 2, 3, ROOM, false)
          const room = yield* history.read(ROOM_KEY, base, 25)
          assert.deepStrictEqual(room.entries.map(numberOf), [1])
          const other = yield* history.read(Publication.topicKey("realtime:wedding:2", true), base, 25)
          assert.deepStrictEqual(other.entries.map(numberOf), [2])
          const publicRoom = yield* history.read(Publication.topicKey(ROOM, false), base, 25)
          assert.deepStrictEqual(publicRoom.entries.map(numberOf), [3])
        })))

    it.effect("the per-topic bound drops the oldest and a read reaching back to them reports Trimmed", () =>
      withHistory({ maxMessages: 3 }, (history) =>
        Effect.gen(function*() {
          const base = 10 * MINUTE
          for (let n = 0; n < 5; n++) yield* appendAt(history, base + n * 10, n)
          const all = yield* history.read(ROOM_KEY, base, 25)
          assert.deepStrictEqual(all.entries.map(numberOf), [2, 3, 4])
          assert.deepStrictEqual(all.gap, { _tag: "Trimmed", maxMessages: 3 })
          // Entry 1 (base + 10) was the newest dropped: from just after it, nothing is missing.
          const reaching = yield* history.read(ROOM_KEY, base + 10, 25)
          assert.deepStrictEqual(reaching.gap, { _tag: "Trimmed", maxMessages: 3 })
          const after = yield* history.read(ROOM_KEY, base + 11, 25)
          assert.deepStrictEqual(after.entries.map(numberOf), [2, 3, 4])
          assert.strictEqual(after.gap, undefined)
        })))

    it.effect("entries older than the TTL are not replayed, and `since` before the TTL reports Expired", () =>
      withHistory({ ttl: Duration.minutes(1) }, (history) =>
        Effect.gen(function*() {
          const base = 10 * MINUTE
          yield* appendAt(history, base, 0)
          yield* appendAt(history, base + MINUTE, 1)
          yield* TestClock.setTime(base + MINUTE + 30_000)
          const old = yield* history.read(ROOM_KEY, base, 25)
          assert.deepStrictEqual(old.entries.map(numberOf), [1])
          assert.deepStrictEqual(old.gap, { _tag: "Expired", ttlMs: MINUTE })
          const recent = yield* history.read(ROOM_KEY, base + 40_000, 25)
          assert.deepStrictEqual(recent.entries.map(numberOf), [1])
          assert.strictEqual(recent.gap, undefined)
        })))

    it.effect("a read from before the history began reports Restarted; from its start on, nothing", () =>
      withHistory({}, (history) =>
        Effect.gen(function*() {
          yield* appendAt(history, START + 10, 1)
          const before = yield* history.read(ROOM_KEY, START - 1000, 25)
          assert.deepStrictEqual(before.entries.map(numberOf), [1])
          assert.strictEqual(before.gap?._tag, "Restarted")
          const after = yield* history.read(ROOM_KEY, START + 10, 25)
          assert.deepStrictEqual(after, { entries: after.entries, older: [], gap: undefined })
          assert.strictEqual(after.entries.length, 1)
        })))

    it.effect("publish gives a private broadcast an id in its meta and keeps it; a public one neither", () =>
      Effect.gen(function*() {
        const context = yield* Layer.build(
          Layer.merge(makeLayer(History.defaults), Hub.layerMemory)
        )
        const history = Context.get(context, History.History)
        const hub = Context.get(context, Hub)
        yield* TestClock.setTime(10 * MINUTE)
        const privateSink = TestSink.make("2.0.0")
        const publicSink = TestSink.make("2.0.0")
        hub.add(ROOM_KEY, privateSink)
        hub.add(Publication.topicKey(ROOM, false), publicSink)
        const binary = Publication.userBroadcast(ROOM, true, "photo", "binary", new Uint8Array([1, 2]), '{"id":"x"}')
        if (Result.isFailure(binary)) return assert.fail("a 2-byte broadcast is a valid publication")
        yield* History.publish(hub, history, binary.success)
        yield* History.publish(hub, history, message(7))
        yield* History.publish(hub, history, message(8, ROOM, false))
        const kept = yield* history.read(ROOM_KEY, 0, 25)
        assert.strictEqual(kept.entries.length, 2)
        const [first, second] = privateSink.decoded()
        // The client's own meta is replaced: it cannot pose as an id.
        assert.strictEqual(first?._tag === "Binary" ? first.broadcast.meta : "text", `{"id":"${kept.entries[0]!.id}"}`)
        const json = second?._tag === "Text" ? second.json as ReadonlyArray<{ readonly meta?: unknown }> : []
        assert.deepStrictEqual(json[4]?.meta, { id: kept.entries[1]!.id })
        assert.strictEqual(History.timeOf(kept.entries[1]!.id), 10 * MINUTE)
        const publicFrames = publicSink.decoded()
        const publicJson = publicFrames[0]?._tag === "Text"
          ? publicFrames[0].json as ReadonlyArray<{ readonly meta?: unknown }>
          : []
        assert.strictEqual(publicJson[4]?.meta, undefined)
        const publicKept = yield* history.read(Publication.topicKey(ROOM, false), 0, 25)
        assert.strictEqual(publicKept.entries.length, 0)
      }))
  })
}

import { assert, describe, it } from "@effect/vitest"
import { mostMissed, parseReplayOptions, runReplay } from "../src/replayBench.ts"
import { verdict } from "../src/replayReport.ts"
import { ClientTrack, parseMeta, TopicIds, uuidV7Ms } from "../src/replayTracker.ts"
import { kind4Meta } from "../src/wire.ts"
import { startFakeReplayServer } from "./fakeReplayServer.ts"

const live = { id: undefined, replayed: false }
const replayed = (id: string) => ({ id, replayed: true })

describe("uuidV7Ms", () => {
  it("reads the millisecond time of a UUIDv7 and nothing else", () => {
    // 0x018c2b9a4f00 = 1701538582272 ms
    assert.strictEqual(uuidV7Ms("018c2b9a-4f00-7abc-8def-0123456789ab"), 1_701_538_582_272)
    assert.isUndefined(uuidV7Ms("018c2b9a-4f00-4abc-8def-0123456789ab")) // v4
    assert.isUndefined(uuidV7Ms("not-an-id"))
  })
})

describe("kind4Meta and parseMeta", () => {
  const frame = (meta: string) =>
    Buffer.concat([Buffer.from([4, 3, 1, Buffer.byteLength(meta), 1]), Buffer.from(`top${"e"}${meta}{"t":1,"s":2}`)])

  it("reads the metadata of a kind-4 frame and its replayed flag and id", () => {
    const bytes = frame('{"replayed":true,"id":"x"}')
    assert.deepStrictEqual(parseMeta(kind4Meta(bytes, 0, bytes.length)), { id: "x", replayed: true })
  })

  it("has none for a frame without metadata, and ignores metadata that is not an object", () => {
    const bare = frame("")
    assert.isUndefined(kind4Meta(bare, 0, bare.length))
    assert.deepStrictEqual(parseMeta("[1]"), { id: undefined, replayed: false })
    assert.deepStrictEqual(parseMeta("{bad"), { id: undefined, replayed: false })
  })
})

describe("TopicIds", () => {
  it("accepts an id seen again with its own sequence number, refuses one with another", () => {
    const ids = new TopicIds()
    assert.isTrue(ids.check("a", 1))
    assert.isTrue(ids.check("a", 1))
    assert.isFalse(ids.check("a", 2))
    assert.isFalse(ids.check("b", 1))
    assert.strictEqual(ids.conflicts, 2)
  })
})

describe("ClientTrack", () => {
  it("a clean resume: replay of what was missed, then live, caught up at the target, no gap or duplicate", () => {
    const track = new ClientTrack()
    for (const seq of [1, 2, 3]) track.receive(seq, live, 1000 + seq, 0)
    assert.deepStrictEqual(track.drop(), { sinceMs: 1003, fromId: false })
    track.rejoining(6) // 4, 5, 6 were published while it was away
    track.receive(3, replayed("c"), 1003, 10) // the overlap at `since`
    track.receive(4, replayed("d"), 1004, 11)
    track.receive(5, replayed("e"), 1005, 12)
    assert.isUndefined(track.caughtUpAt)
    track.receive(6, replayed("f"), 1006, 13)
    assert.strictEqual(track.caughtUpAt, 13)
    track.receive(7, live, 1007, 14)
    assert.strictEqual(track.gaps(7), 0)
    assert.strictEqual(track.needed(7), 4)
    assert.strictEqual(track.missedWhileAway(), 3)
    assert.deepStrictEqual([track.replayed, track.live, track.resent, track.duplicates], [3, 1, 1, 0])
  })

  it("counts a live copy of a replayed message as a duplicate and a missing one as a gap", () => {
    const track = new ClientTrack()
    track.receive(1, live, 1001, 0)
    track.drop()
    track.rejoining(3)
    track.receive(2, replayed("b"), 1002, 1)
    track.receive(2, live, 1002, 2) // the seam let the live copy through
    track.receive(4, live, 1004, 3) // 3 never came
    assert.strictEqual(track.duplicates, 1)
    assert.isUndefined(track.caughtUpAt)
    assert.strictEqual(track.gaps(4), 1)
  })

  it("takes `since` from the last message's UUIDv7 id when there is one", () => {
    const track = new ClientTrack()
    track.receive(1, { id: "018c2b9a-4f00-7abc-8def-0123456789ab", replayed: false }, 5, 0)
    assert.deepStrictEqual(track.drop(), { sinceMs: 1_701_538_582_272, fromId: true })
  })

  it("is caught up at the rejoin when nothing was missed", () => {
    const track = new ClientTrack()
    track.receive(1, live, 1, 0)
    track.drop()
    track.rejoining(1)
    track.checkCaughtUp(42)
    assert.strictEqual(track.caughtUpAt, 42)
  })
})

describe("replay bench options and verdict", () => {
  it("defaults to the issue's storm: 10,000 clients with replay, a limit above what a client misses", () => {
    const options = parseReplayOptions([])
    assert.containSubset(options, { clients: 10_000, topics: 50, rate: 1, limit: 25 })
    assert.isAtMost(mostMissed(options), options.limit)
    assert.deepStrictEqual(parseReplayOptions(["--env", "HISTORY_TTL=60"]).env, { HISTORY_TTL: "60" })
    assert.throws(() => parseReplayOptions(["--env", "=1"]), /KEY=VALUE/)
    assert.throws(() => parseReplayOptions(["--clients", "10", "--topics", "11"]), /at least --topics/)
  })

  const counts = {
    firstRefusal: undefined,
    replayed: 0,
    missed: 10,
    silentGaps: 10,
    missingId: 10,
    rejoinFailures: 0,
    neverReceived: 0,
    processes: 1,
    clients: 10,
    settled: 0
  }

  it("names a gateway that does not replay yet, and a refusal before anything else", () => {
    assert.match(verdict(counts), /no replayed message arrived .* does not replay yet/)
    assert.match(
      verdict({ ...counts, firstRefusal: "UnableToReplayMessages: Replay is not allowed for public channels" }),
      /refused joins: UnableToReplayMessages/
    )
    assert.match(verdict({ ...counts, neverReceived: 5, processes: 2 }), /Redis broker/)
    assert.match(verdict({ ...counts, replayed: 8, silentGaps: 2 }), /2 messages never arrived/)
    assert.match(verdict({ ...counts, replayed: 8, silentGaps: 0, settled: 7 }), /3 clients had not/)
  })
})

describe("runReplay against a stand-in that replays", () => {
  const small = parseReplayOptions([
    "--clients",
    "60",
    "--topics",
    "3",
    "--rate",
    "10",
    "--before",
    "0.5",
    "--down",
    "0.5",
    "--spread",
    "0.5",
    "--after",
    "0.2",
    "--timeout",
    "2",
    "--no-pin"
  ])

  it("passes when the server replays what each client missed, then goes live", async () => {
    const result = await runReplay(small, (port) => startFakeReplayServer(port, { replays: true }))
    assert.deepStrictEqual(result, { ok: true, failure: undefined })
  }, 30_000)

  it("beyond retention: passes when the gap is announced by a system message, fails when it is silent", async () => {
    const short = { ...small, downS: 1 } // 10 messages per topic missed, 3 kept
    const announced = await runReplay(
      short,
      (port) => startFakeReplayServer(port, { replays: true, retain: 3, announce: true })
    )
    assert.deepStrictEqual(announced, { ok: true, failure: undefined })
    const silent = await runReplay(
      short,
      (port) => startFakeReplayServer(port, { replays: true, retain: 3, announce: false })
    )
    assert.isFalse(silent.ok)
    assert.match(silent.failure ?? "", /never arrived and no incomplete-replay notice/)
  }, 60_000)

  it("fails with the gateway's own reason when it refuses the rejoins", async () => {
    const result = await runReplay(small, (port) => startFakeReplayServer(port, { replays: true, refuseReplay: true }))
    assert.isFalse(result.ok)
    assert.strictEqual(
      result.failure,
      'the gateway refused joins: {"reason":"UnableToReplayMessages: Replay params are not valid"}'
    )
  }, 30_000)

  it("fails with a plain reason within its timeout, not a hang, when the server ignores replay", async () => {
    const started = performance.now()
    const result = await runReplay(small, (port) => startFakeReplayServer(port, { replays: false }))
    assert.isFalse(result.ok)
    assert.match(result.failure ?? "", /no replayed message arrived/)
    assert.isBelow(performance.now() - started, 20_000)
  }, 30_000)
})

/**
 * Supabase's `replay` on the actor: a private join replays the topic's history (meta `{"replayed":true,"id"}`) before
 * anything live, live frames that arrive while the history is read come after it without the copies of replayed ids,
 * a shortfall is reported by one `system` message, and the refusals (public channel, invalid parameters, a failed
 * read) are shown beside the accepted case.
 */
import { assert, describe, it } from "@effect/vitest"
import { TokenVerifier } from "@wedsync/auth"
import { Broker, History, Hub, Publication } from "@wedsync/hub"
import type { Frame } from "@wedsync/protocol"
import { Effect, Layer, Result } from "effect"
import { TestClock } from "effect/testing"
import { TestSocket } from "../src/testing/index.ts"

const WEDDING = "realtime:wedding:42"
const KEY = Publication.topicKey(WEDDING, true)

const messageOf = (received: TestSocket.Received | undefined) => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return received
}
const reasonOf = (received: TestSocket.Received | undefined) =>
  (messageOf(received).payload as { response?: { reason?: unknown } }).response?.reason
const statusOf = (received: TestSocket.Received | undefined) =>
  (messageOf(received).payload as { status?: unknown }).status

/** A binary JSON broadcast `{"n":n}` on the wedding topic, padded with `pad` more bytes. */
const broadcast = (n: number, pad = 0): Publication.Publication => {
  const json = pad === 0 ? `{"n":${n}}` : `{"n":${n},"pad":"${"x".repeat(pad)}"}`
  const publication = Publication.userBroadcast(WEDDING, true, "n", "json", new TextEncoder().encode(json))
  if (Result.isFailure(publication)) throw new Error("a small broadcast is a valid publication")
  return publication.success
}

/** Publishes as a client's broadcast is published: id, history, then the hub. */
const publish = (n: number, pad = 0) =>
  Effect.gen(function*() {
    yield* History.publish(yield* Hub.Hub, yield* History.History, broadcast(n, pad))
  })

interface Seen {
  readonly n: number
  readonly meta: unknown
}

/** `n` and meta of a broadcast, whether a kind-4 frame (v2) or JSON text (v1). */
const seen = (received: TestSocket.Received | undefined): Seen => {
  if (received?._tag === "UserBroadcast") {
    const payload = JSON.parse(new TextDecoder().decode(received.payload)) as { readonly n: number }
    return { n: payload.n, meta: received.meta === undefined ? undefined : JSON.parse(received.meta) }
  }
  const message = messageOf(received)
  assert.strictEqual(message.event, "broadcast", message.text)
  const payload = message.payload as { readonly payload: { readonly n: number }; readonly meta?: unknown }
  return { n: payload.payload.n, meta: payload.meta }
}

const userClient = (vsn: Frame.Vsn = "2.0.0") =>
  Effect.gen(function*() {
    const token = yield* TestSocket.userToken({ weddingIds: ["42"] })
    return yield* TestSocket.connect({ vsn, principal: yield* verified(token) })
  })

const verified = (token: string) => TokenVerifier.TokenVerifier.use((v) => v.verify(token)).pipe(Effect.orDie)

const replayJoin = (replay: unknown, isPrivate = true) => ({ config: { private: isPrivate, broadcast: { replay } } })

const Memory = TestSocket.layer({ joinErrorDelayMs: 0 })

describe("replay at join", () => {
  for (const vsn of ["2.0.0", "1.0.0"] as const) {
    it.effect(`replays the history with meta.replayed before live broadcasts, which carry meta.id (${vsn})`, () =>
      Effect.gen(function*() {
        for (let n = 1; n <= 3; n++) yield* publish(n)
        const client = yield* userClient(vsn)
        client.join(WEDDING, replayJoin({ since: 0, limit: 10 }))
        const [reply, ...replayed] = yield* client.next(4)
        assert.strictEqual(statusOf(reply), "ok")
        const kept = yield* (yield* History.History).read(KEY, 0, 10)
        assert.deepStrictEqual(
          replayed.map(seen),
          kept.entries.map((e, i) => ({ n: i + 1, meta: { replayed: true, id: e.id } }))
        )
        yield* publish(4)
        const [live] = yield* client.next()
        const liveSeen = seen(live)
        assert.strictEqual(liveSeen.n, 4)
        const liveId = (liveSeen.meta as { readonly id: string }).id
        assert.strictEqual(History.timeOf(liveId), 0)
        assert.deepStrictEqual(yield* client.drain, [])
      }).pipe(Effect.provide(Memory)))
  }

  it.effect("live broadcasts that arrive while the history is read follow it, without copies of replayed ids", () => {
    // A history whose read lets two publications happen around it: #2 before the read (so both in the history and
    // held back live), #3 after it (held back live only).
    const racing = Layer.effect(
      History.History,
      Effect.gen(function*() {
        const memory = yield* History.History
        const hub = yield* Hub.Hub
        return {
          append: memory.append,
          read: (key, since, limit) =>
            Effect.gen(function*() {
              yield* History.publish(hub, memory, broadcast(2))
              const replay = yield* memory.read(key, since, limit)
              yield* History.publish(hub, memory, broadcast(3))
              return replay
            })
        }
      })
    ).pipe(Layer.provide(History.History.layerMemory()))
    return Effect.gen(function*() {
      yield* publish(1)
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const frames = yield* client.next(4)
      assert.strictEqual(statusOf(frames[0]), "ok")
      const got = frames.slice(1).map(seen)
      assert.deepStrictEqual(got.map((s) => s.n), [1, 2, 3])
      assert.deepStrictEqual(got.map((s) => (s.meta as { readonly replayed?: boolean }).replayed), [
        true,
        true,
        undefined
      ])
      assert.deepStrictEqual(yield* client.drain, [], "no duplicate of #2")
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, racing)))
  })

  it.effect("a live copy arriving after the replay (its broker message late) is dropped; newer live ones are not", () => {
    // Another process appended #2 to the history before the read, but its broker message arrives only after the
    // replay was released: the copy must not be shown twice. #3, published afterwards, is delivered.
    const late = History.makeId(0)
    const appendedElsewhere = Layer.effect(
      History.History,
      Effect.gen(function*() {
        const memory = yield* History.History
        return {
          append: memory.append,
          read: (key, since, limit) =>
            Effect.andThen(memory.append({ id: late, publication: broadcast(2) }), memory.read(key, since, limit))
        }
      })
    ).pipe(Layer.provide(History.History.layerMemory()))
    return Effect.gen(function*() {
      yield* publish(1)
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const frames = yield* client.next(3)
      assert.strictEqual(statusOf(frames[0]), "ok")
      assert.deepStrictEqual(frames.slice(1).map(seen).map((s) => s.n), [1, 2])
      const hub = yield* Hub.Hub
      yield* hub.publish(History.withMeta(broadcast(2), History.liveMeta(late)))
      yield* publish(3)
      const [next] = yield* client.next()
      assert.strictEqual(seen(next).n, 3, "the late copy of #2 is dropped, #3 comes")
      assert.deepStrictEqual(yield* client.drain, [], "no copy of #2")
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, appendedElsewhere)))
  })

  it.effect("live copies of matched entries past the limit are dropped, not delivered after newer replayed ones", () => {
    // #2 and #3 are published while the channel holds live frames, before the read: both are in the history and held.
    const racing = Layer.effect(
      History.History,
      Effect.gen(function*() {
        const memory = yield* History.History
        const hub = yield* Hub.Hub
        return {
          append: memory.append,
          read: (key, since, limit) =>
            Effect.gen(function*() {
              yield* History.publish(hub, memory, broadcast(2))
              yield* History.publish(hub, memory, broadcast(3))
              return yield* memory.read(key, since, limit)
            })
        }
      })
    ).pipe(Layer.provide(History.History.layerMemory()))
    return Effect.gen(function*() {
      yield* publish(1)
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0, limit: 1 }))
      const [reply, last, system] = yield* client.next(3)
      assert.strictEqual(statusOf(reply), "ok")
      assert.deepStrictEqual(seen(last).n, 3)
      assert.strictEqual(messageOf(system).event, "system")
      assert.deepStrictEqual(yield* client.drain, [], "neither #2 nor #3 live after the replayed #3")
      // Within the limit the same race replays all three and nothing follows (the accepted case).
      const within = yield* userClient()
      within.join(WEDDING, replayJoin({ since: 0, limit: 10 }))
      const [ok, ...replayed] = yield* within.next(6)
      assert.strictEqual(statusOf(ok), "ok")
      assert.deepStrictEqual(replayed.map((r) => seen(r).n), [1, 2, 3, 2, 3])
      assert.deepStrictEqual(yield* within.drain, [])
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, racing)))
  })

  it.effect("live frames held during the read get the half of the outbox the replay leaves; past it, closed 4008", () => {
    // While the history is read, `live` broadcasts of ~3 KB arrive for a socket whose outbox holds 10 KB: the replay may
    // take half of it, so the held frames get the other half. One fits; two (6 KB, which the whole outbox would hold
    // beside a full replay only by overflowing it) close the socket as a slow consumer at once, not after the release.
    const racing = (live: number) =>
      Layer.effect(
        History.History,
        Effect.gen(function*() {
          const memory = yield* History.History
          const hub = yield* Hub.Hub
          return {
            append: memory.append,
            read: (key, since, limit) =>
              Effect.gen(function*() {
                for (let n = 1; n <= live; n++) yield* History.publish(hub, memory, broadcast(n, 3_000))
                return yield* memory.read(key, since, limit)
              })
          }
        })
      ).pipe(Layer.provide(History.History.layerMemory()))
    const withLive = (live: number) =>
      TestSocket.layer({ joinErrorDelayMs: 0, outboxLimitBytes: 10_000 }, undefined, racing(live))
    const fits = Effect.gen(function*() {
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const [reply, replayed] = yield* client.next(2)
      assert.strictEqual(statusOf(reply), "ok")
      assert.strictEqual(seen(replayed).n, 1)
      assert.deepStrictEqual(yield* client.drain, [])
      assert.isUndefined(client.socket.closed)
    }).pipe(Effect.provide(withLive(1)))
    const tooMuch = Effect.gen(function*() {
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const closed = yield* client.socket.awaitClose
      assert.strictEqual(closed.code, 4008)
    }).pipe(Effect.provide(withLive(2)))
    return Effect.andThen(fits, tooMuch)
  })

  it.effect("more matches than `limit`: the last `limit`, then one system message; within the limit, none", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 5; n++) yield* publish(n)
      const within = yield* userClient()
      within.join(WEDDING, replayJoin({ since: 0, limit: 5 }))
      const all = yield* within.next(6)
      assert.deepStrictEqual(all.slice(1).map((r) => seen(r).n), [1, 2, 3, 4, 5])
      assert.deepStrictEqual(yield* within.drain, [])
      const over = yield* userClient()
      over.join(WEDDING, replayJoin({ since: 0, limit: 2 }))
      const [reply, a, b, system] = yield* over.next(4)
      assert.strictEqual(statusOf(reply), "ok")
      assert.deepStrictEqual([seen(a).n, seen(b).n], [4, 5])
      assert.strictEqual(messageOf(system).event, "system")
      assert.deepStrictEqual(messageOf(system).payload, {
        extension: "broadcast",
        status: "error",
        message: "Replay is incomplete: more than 2 messages matched; only the last 2 were replayed",
        channel: "wedding:42"
      })
    }).pipe(Effect.provide(Memory)))

  it.effect("a replay larger than half the outbox keeps the newest that fit, then says how many were left out", () =>
    Effect.gen(function*() {
      // Frames of about 1,100 bytes: two fit half of a 5,000-byte outbox, three do not.
      for (let n = 1; n <= 4; n++) yield* publish(n, 1000)
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const [reply, a, b, system] = yield* client.next(4)
      assert.strictEqual(statusOf(reply), "ok")
      assert.deepStrictEqual([seen(a).n, seen(b).n], [3, 4])
      assert.strictEqual(
        (messageOf(system).payload as { readonly message: string }).message,
        "Replay is incomplete: the 2 oldest messages were left out to keep the replay within 2500 bytes"
      )
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, outboxLimitBytes: 5000 }))))

  it.effect("replay on a public channel is refused; the same replay on the private channel is accepted", () =>
    Effect.gen(function*() {
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }, false))
      const [refused] = yield* client.next()
      assert.strictEqual(reasonOf(refused), "UnableToReplayMessages: Replay is not allowed for public channels")
      client.join(WEDDING, replayJoin({ since: 0 }))
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
    }).pipe(Effect.provide(Memory)))

  it.effect("invalid replay parameters are refused; valid ones are accepted", () =>
    Effect.gen(function*() {
      const client = yield* userClient()
      for (const replay of [{ since: "yesterday" }, { since: 1, limit: 0 }, { limit: 5 }]) {
        client.join(WEDDING, replayJoin(replay))
        const [refused] = yield* client.next()
        assert.strictEqual(reasonOf(refused), "UnableToReplayMessages: Replay params are not valid")
      }
      client.join(WEDDING, replayJoin({ since: 1, limit: null }))
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
    }).pipe(Effect.provide(Memory)))

  it.effect("a history that cannot be read shuts the channel down; without replay the same join stays", () => {
    const broken = Layer.succeed(History.History, {
      append: () => Effect.void,
      read: () => Effect.fail(new History.HistoryError({ message: "Redis is unavailable" }))
    })
    return Effect.gen(function*() {
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      const [reply, system, close] = yield* client.next(3)
      assert.strictEqual(statusOf(reply), "ok")
      assert.deepStrictEqual(messageOf(system).payload, {
        extension: "system",
        status: "error",
        message: "Realtime was unable to replay messages",
        channel: "wedding:42"
      })
      assert.strictEqual(messageOf(close).event, "phx_close")
      client.join(WEDDING, { config: { private: true } })
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
      assert.deepStrictEqual(yield* client.drain, [])
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, broken)))
  })

  /**
   * A broker whose `subscribed` answers after `Broker.SUBSCRIBE_WAIT_MS`, `false` the first `notLive` times and `true`
   * after, and whose `settled` never completes.
   */
  const brokerAnswering = (notLive: number) => {
    let asked = 0
    return Layer.succeed(Broker.Broker, {
      publish: () => Effect.void,
      receive: () => Effect.void,
      join: () => {},
      leave: () => {},
      settled: Effect.never,
      subscribed: () => Effect.andThen(Effect.sleep(Broker.SUBSCRIBE_WAIT_MS), Effect.sync(() => ++asked > notLive)),
      onGap: () => Effect.void,
      state: Effect.succeed("connected" as const)
    })
  }

  it.effect("a replay waits for its own topic only, not for every topic of the broker (settled)", () =>
    Effect.gen(function*() {
      const client = yield* userClient()
      yield* publish(1)
      client.join(WEDDING, replayJoin({ since: 0 }))
      yield* TestClock.adjust(Broker.SUBSCRIBE_WAIT_MS)
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
      yield* TestClock.adjust(Broker.SUBSCRIBE_WAIT_MS)
      assert.deepStrictEqual(seen((yield* client.next())[0]).n, 1)
      assert.deepStrictEqual(yield* client.drain, [])
    }).pipe(
      Effect.provide(
        TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, History.History.layerMemory(), brokerAnswering(0))
      )
    ))

  it.effect("a topic received again within 5 seconds (a short outage) is replayed", () =>
    Effect.gen(function*() {
      const client = yield* userClient()
      yield* publish(1)
      client.join(WEDDING, replayJoin({ since: 0 }))
      yield* TestClock.adjust(Broker.SUBSCRIBE_WAIT_MS)
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
      // Not received when asked again, then received when asked a third time (2 s + 100 ms + 2 s: within 5 s). The
      // clock moves in steps, so that each wait is registered before the clock passes it.
      for (let step = 0; step < 45; step++) yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(seen((yield* client.next())[0]).n, 1)
      assert.deepStrictEqual(yield* client.drain, [])
    }).pipe(
      Effect.provide(
        TestSocket.layer({ joinErrorDelayMs: 0 }, undefined, History.History.layerMemory(), brokerAnswering(2))
      )
    ))

  it.effect("a broker that cannot receive the topic gives the replay up after 5 seconds; the socket goes on", () =>
    Effect.gen(function*() {
      const client = yield* userClient()
      client.join(WEDDING, replayJoin({ since: 0 }))
      yield* TestClock.adjust(Broker.SUBSCRIBE_WAIT_MS)
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
      yield* TestClock.adjust("5 seconds")
      const [system, close] = yield* client.next(2)
      assert.strictEqual(
        (messageOf(system).payload as { readonly message: string }).message,
        "Realtime was unable to replay messages"
      )
      assert.strictEqual(messageOf(close).event, "phx_close")
      // Without replay only the join waits for the broker.
      client.join(WEDDING, { config: { private: true } })
      yield* TestClock.adjust(Broker.SUBSCRIBE_WAIT_MS)
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
    }).pipe(
      Effect.provide(
        TestSocket.layer(
          { joinErrorDelayMs: 0 },
          undefined,
          History.History.layerMemory(),
          brokerAnswering(Number.POSITIVE_INFINITY)
        )
      )
    ))
})

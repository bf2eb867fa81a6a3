/**
 * The pool against a real upstream: the project's own gateway in a child process plays hosted Supabase Realtime, and
 * its `/metrics` (`wedsync_connection_open`, `wedsync_connection_channels`) says how many sockets and channels the
 * pool really holds there. Upstream-side clients are unmodified supabase-js clients.
 */
import { assert, describe, it } from "@effect/vitest"
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients, waitUntil } from "@wedsync/testkit"
import { Effect, Exit, Metric, Redacted, Result, Scope } from "effect"
import { vi } from "vitest"
import { UpstreamConfig, type UpstreamOptions } from "../src/UpstreamConfig.ts"
import * as UpstreamMetrics from "../src/UpstreamMetrics.ts"
import * as UpstreamPool from "../src/UpstreamPool.ts"
import * as UpstreamGateway from "./support/UpstreamGateway.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll } = SupabaseClients

vi.setConfig({ testTimeout: 60_000 })

const suite = UpstreamGateway.useUpstream()

/** A pool on the test's scope. */
const pool = (options: Partial<UpstreamOptions> = {}) =>
  UpstreamPool.make.pipe(
    Effect.provide(
      UpstreamConfig.layer({ url: suite.upstream.url, apiKey: Redacted.make(suite.serviceKey), ...options })
    )
  )

/** An upstream-side supabase-js client (a phone connected straight to hosted Supabase). */
const upstreamClient = () => {
  const client = makeSupabaseClient(suite.upstream.url, suite.anonKey)
  suite.clients.push(client)
  return client
}

/** Waits until the upstream reports `open` sockets and `channels` channels. */
const upstreamHolds = (open: number, channels: number, timeoutMs = 10_000) =>
  Effect.promise(() =>
    waitUntil(
      `upstream holding ${open} sockets and ${channels} channels`,
      () => suite.upstream.metrics(),
      (m) => m["wedsync_connection_open"] === open && m["wedsync_connection_channels"] === channels,
      { timeoutMs }
    )
  )

/** A listener recording what it receives. */
const recorder = () => {
  const messages: Array<UpstreamPool.UpstreamMessage> = []
  const signals: Array<UpstreamPool.UpstreamSignal> = []
  const listener: UpstreamPool.Listener = {
    onMessage: (m) => void messages.push(m),
    onSignal: (s) => void signals.push(s)
  }
  return { messages, signals, listener }
}

const broadcasts = (messages: ReadonlyArray<UpstreamPool.UpstreamMessage>) =>
  messages.flatMap((m) => (m._tag === "Broadcast" ? [m.payload] : []))

const topics = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

const until = (what: string, check: () => boolean, timeoutMs = 10_000) =>
  Effect.promise(() => waitUntil(what, check, (ok) => ok, { timeoutMs }))

describe("UpstreamPool", () => {
  it.live("1,000 local subscribers on 20 topics use one upstream socket and 20 upstream channels", () =>
    Effect.gen(function*() {
      const p = yield* pool()
      const names = topics(`room-${Date.now()}`, 20)
      const recorders = Array.from({ length: 1_000 }, () => recorder())
      const subs = yield* Effect.forEach(
        recorders,
        (r, i) => p.subscribe({ topic: names[i % 20]! }, r.listener),
        { concurrency: "unbounded" }
      )
      const stats = yield* p.stats
      assert.strictEqual(stats.sockets.length, 1)
      assert.strictEqual(stats.channels, 20)
      assert.deepStrictEqual(new Set(subs.map((s) => s.socketId)).size, 1)
      yield* upstreamHolds(1, 20)

      // An upstream-side broadcast reaches each of the 50 local subscribers of its topic once.
      const phone = upstreamClient()
      const box = inbox<{ payload: { n: number } }>("the pool's broadcast")
      const channel = phone.channel(names[3]!).on("broadcast", { event: "msg" }, box.push)
      yield* Effect.promise(() => subscribe(channel))
      yield* upstreamHolds(2, 21)
      yield* Effect.promise(() => channel.send({ type: "broadcast", event: "msg", payload: { n: 1 } }))
      const topic3 = recorders.filter((_, i) => i % 20 === 3)
      yield* until("every subscriber of the topic got it", () => topic3.every((r) => r.messages.length === 1))
      // The pool's send reaches the upstream-side client once and does not come back to the pool.
      yield* subs[3]!.send("msg", { n: 2 })
      const got = yield* Effect.promise(() => box.next((m) => m.payload.n === 2))
      assert.deepStrictEqual(got.payload, { n: 2 })
      yield* Effect.promise(() => channel.send({ type: "broadcast", event: "msg", payload: { n: 3 } }))
      yield* until("the third message arrived", () => topic3.every((r) => r.messages.length === 2))
      for (const r of topic3) assert.deepStrictEqual(broadcasts(r.messages), [{ n: 1 }, { n: 3 }])
      assert.ok(recorders.filter((_, i) => i % 20 !== 3).every((r) => r.messages.length === 0))
    }).pipe(Effect.scoped))

  it.live("the 101st topic opens a second socket; both close when their channels are released", () =>
    Effect.gen(function*() {
      const p = yield* pool({ idleGraceMs: 100 })
      const names = topics(`wide-${Date.now()}`, 101)
      const scope = yield* Scope.make()
      const subs = yield* Effect.forEach(names, (topic) => p.subscribe({ topic }, recorder().listener), {
        concurrency: "unbounded"
      }).pipe(Scope.provide(scope))
      const stats = yield* p.stats
      assert.deepStrictEqual(stats.sockets.map((s) => s.channels), [100, 1])
      assert.strictEqual(subs[100]!.socketId, stats.sockets[1]!.id)
      yield* upstreamHolds(2, 101)
      yield* Scope.close(scope, Exit.void)
      yield* upstreamHolds(0, 0)
      assert.deepStrictEqual((yield* p.stats).sockets, [])
    }).pipe(Effect.scoped))

  it.live("beyond channelsPerSocket x maxSockets a subscription fails with PoolExhausted; within it, it is served", () =>
    Effect.gen(function*() {
      const p = yield* pool({ channelsPerSocket: 2, maxSockets: 1 })
      const stamp = Date.now()
      const served = yield* Effect.forEach(
        [`cap-a-${stamp}`, `cap-b-${stamp}`],
        (topic) => p.subscribe({ topic }, recorder().listener)
      )
      assert.strictEqual(new Set(served.map((s) => s.socketId)).size, 1)
      const refused = yield* Effect.flip(p.subscribe({ topic: `cap-c-${stamp}` }, recorder().listener))
      assert.strictEqual(refused.reason._tag, "PoolExhausted")
      // An existing channel is still shared at the cap.
      yield* p.subscribe({ topic: `cap-a-${stamp}` }, recorder().listener)
      yield* upstreamHolds(1, 2)
    }).pipe(Effect.scoped))

  it.live("new joins are paced to joinsPerSecond, and a join's deadline starts when it is sent", () =>
    Effect.gen(function*() {
      const p = yield* pool({ joinsPerSecond: 10, joinTimeoutMs: 500 })
      const stamp = Date.now()
      const started = Date.now()
      const subs = yield* Effect.forEach(
        topics(`paced-${stamp}`, 15),
        (topic) => p.subscribe({ topic }, recorder().listener),
        { concurrency: "unbounded" }
      )
      // The last 5 waited for the next second; none of them timed out for it.
      assert.strictEqual(subs.length, 15)
      assert.isAtLeast(Date.now() - started, 900)
      yield* upstreamHolds(1, 15)
    }).pipe(Effect.scoped))

  it.live("a released channel stays joined through the idle grace, is reused within it, and is left after it", () =>
    Effect.gen(function*() {
      const grace = 600
      const p = yield* pool({ idleGraceMs: grace })
      const topic = `idle-${Date.now()}`
      const first = yield* p.subscribe({ topic }, recorder().listener)
      yield* upstreamHolds(1, 1)
      yield* first.release
      // Within the grace a new subscriber reuses the same upstream channel.
      const second = yield* p.subscribe({ topic }, recorder().listener)
      assert.strictEqual((yield* p.stats).channels, 1)
      yield* upstreamHolds(1, 1)
      const releasedAt = Date.now()
      yield* second.release
      assert.strictEqual((yield* p.stats).channels, 1)
      yield* upstreamHolds(0, 0, 10_000)
      assert.ok(Date.now() - releasedAt >= grace, "released only after the grace")
      assert.deepStrictEqual(yield* p.stats, { sockets: [], channels: 0 })
    }).pipe(Effect.scoped))

  it.live("the upstream killed and restarted: every channel rejoined, subscribers told, nothing delivered twice", () =>
    Effect.gen(function*() {
      const p = yield* pool({ reconnectBaseMs: 50, reconnectMaxMs: 500, heartbeatIntervalMs: 1_000 })
      const names = topics(`restart-${Date.now()}`, 5)
      const recorders = names.map(() => recorder())
      yield* Effect.forEach(names, (topic, i) => p.subscribe({ topic }, recorders[i]!.listener))
      yield* upstreamHolds(1, 5)

      const send = (topic: string, n: number) =>
        Effect.promise(async () => {
          const phone = upstreamClient()
          const channel = phone.channel(topic)
          await subscribe(channel)
          await channel.send({ type: "broadcast", event: "msg", payload: { n } })
        })
      yield* Effect.forEach(names, (topic) => send(topic, 1))
      yield* until("the first messages", () => recorders.every((r) => r.messages.length === 1))
      yield* Effect.promise(() => closeAll(suite.clients.splice(0)))

      yield* Effect.promise(() => suite.upstream.kill())
      yield* until(
        "every subscriber told of the interruption",
        () => recorders.every((r) => r.signals.some((s) => s._tag === "Interrupted"))
      )
      // A subscriber that comes while the channel is interrupted is told so at once, not handed a channel that looks live.
      const late = recorder()
      yield* p.subscribe({ topic: names[0]! }, late.listener)
      assert.deepStrictEqual(late.signals.map((s) => s._tag), ["Interrupted"])
      yield* Effect.promise(() => suite.upstream.restart())
      yield* until(
        "every subscriber told its channel is back",
        () => [...recorders, late].every((r) => r.signals.at(-1)?._tag === "Rejoined"),
        20_000
      )
      yield* upstreamHolds(1, 5)
      const stats = yield* p.stats
      assert.strictEqual(stats.sockets.length, 1)
      assert.ok(stats.sockets[0]!.reconnects >= 1)

      yield* Effect.forEach(names, (topic) => send(topic, 2))
      yield* until("the second messages", () => recorders.every((r) => r.messages.length >= 2))
      for (const r of recorders) {
        assert.deepStrictEqual(broadcasts(r.messages), [{ n: 1 }, { n: 2 }])
        assert.deepStrictEqual(r.signals.map((s) => s._tag), ["Interrupted", "Rejoined"])
      }
    }).pipe(Effect.scoped))

  it.live("while its socket is down, post keeps broadcasts for the rejoined channel and send fails (no REST fallback)", () =>
    Effect.gen(function*() {
      const p = yield* pool({ reconnectBaseMs: 100, reconnectMaxMs: 500, heartbeatIntervalMs: 1_000 })
      const topic = `outage-${Date.now()}`
      const r = recorder()
      const subscription = yield* p.subscribe({ topic, isPrivate: true }, r.listener)
      yield* subscription.send("msg", { n: 0 })
      yield* Effect.promise(() => suite.upstream.kill())
      yield* until("the subscriber told of the interruption", () => r.signals.some((s) => s._tag === "Interrupted"))
      const refused = yield* Effect.flip(subscription.send("msg", { n: 1 }))
      assert.include(refused.message, "not joined")
      subscription.post("msg", { n: 2 })
      subscription.post("msg", { n: 3 })
      yield* Effect.promise(() => suite.upstream.restart())
      yield* until("the channel back", () => r.signals.at(-1)?._tag === "Rejoined", 20_000)
      // What reached the restarted project is in its history: a phone replaying the private topic reads it. Sent over
      // realtime-js's REST fallback the posts would have been refused while the project was down (or, once it was up,
      // sent out of order); sent on the rejoined channel they are there, in order, once.
      const box = inbox<{ readonly payload: { readonly n: number } }>("the replay")
      const phone = makeSupabaseClient(suite.upstream.url, suite.serviceKey)
      suite.clients.push(phone)
      const channel = phone.channel(topic, {
        config: { private: true, broadcast: { replay: { since: 0, limit: 25 } } }
      })
        .on("broadcast", { event: "msg" }, box.push)
      yield* Effect.promise(() => subscribe(channel))
      yield* Effect.promise(() => box.next((m) => m.payload.n === 3))
      assert.deepStrictEqual(box.received.map((m) => m.payload.n), [2, 3])
      // Once joined again, send works.
      yield* subscription.send("msg", { n: 4 })
      yield* Effect.promise(() => box.next((m) => m.payload.n === 4))
    }).pipe(Effect.scoped))

  it.live("a channel the upstream closes (over its event rate) is joined again, its subscribers told both ways", () =>
    Effect.gen(function*() {
      const p = yield* pool()
      const topic = `closed-${Date.now()}`
      const r = recorder()
      const subscription = yield* p.subscribe({ topic }, r.listener)
      const other = recorder()
      yield* p.subscribe({ topic: `${topic}-other` }, other.listener)
      // The upstream (MAX_EVENTS_PER_SECOND 100 per socket) shuts the channel down past its 100th event this second.
      const flood = (round: number) =>
        Effect.gen(function*() {
          for (let n = 0; n < 120; n++) subscription.post("msg", { n })
          yield* until(`closed, round ${round}`, () => r.signals.length === 2 * round - 1)
          yield* until(`joined again, round ${round}`, () => r.signals.at(-1)?._tag === "Rejoined")
          return r.signals[2 * round - 2]
        })
      const first = yield* flood(1)
      const second = yield* flood(2)
      assert.deepStrictEqual(r.signals.map((s) => s._tag), ["Interrupted", "Rejoined", "Interrupted", "Rejoined"])
      // Closed again soon after: joined again after a doubled pause (reconnectBaseMs 250, each drawn from its upper
      // half), not at once in a loop.
      const retryOf = (s: UpstreamPool.UpstreamSignal | undefined) =>
        s?._tag === "Interrupted" && s.reason === "upstream closed the channel" ? s.retryInMs ?? -1 : -1
      assert.isTrue(retryOf(first) >= 125 && retryOf(first) <= 250, `first pause ${retryOf(first)}`)
      assert.isTrue(retryOf(second) >= 250 && retryOf(second) <= 500, `second pause ${retryOf(second)}`)
      yield* upstreamHolds(1, 2)
      // It receives again; the channel beside it on the same socket was never interrupted.
      const phone = upstreamClient().channel(topic)
      yield* Effect.promise(() => subscribe(phone))
      yield* Effect.promise(() => phone.send({ type: "broadcast", event: "msg", payload: { n: "after" } }))
      yield* until("the broadcast after the rejoin", () => broadcasts(r.messages).length === 1)
      assert.deepStrictEqual(broadcasts(r.messages), [{ n: "after" }])
      assert.deepStrictEqual(other.signals, [])
    }).pipe(Effect.scoped))

  it.live("REST broadcasts: one the project refuses costs only itself, not the others sent with it", () =>
    Effect.gen(function*() {
      const p = yield* pool()
      const [a, b] = topics(`rest-${Date.now()}`, 2)
      const box = inbox<{ readonly payload: { readonly n: number } }>("the REST broadcasts")
      const phone = upstreamClient()
      const channels = [a!, b!].map((topic) => phone.channel(topic).on("broadcast", { event: "msg" }, box.push))
      yield* Effect.promise(() => Promise.all(channels.map((channel) => subscribe(channel))))
      const failuresBefore = (yield* Metric.value(UpstreamMetrics.sendFailures)).count
      // Queued in one turn, so they go out as one request; the middle one's payload is not an object, which the
      // broadcast API refuses (for the whole request).
      p.publish({ topic: a!, isPrivate: false, event: "msg", payload: { n: 1 } })
      p.publish({ topic: a!, isPrivate: false, event: "msg", payload: 2 })
      p.publish({ topic: b!, isPrivate: false, event: "msg", payload: { n: 3 } })
      yield* Effect.promise(() => box.next((m) => m.payload.n === 1))
      yield* Effect.promise(() => box.next((m) => m.payload.n === 3))
      // Resent one by one, in order: the refused one was answered before the last one went out.
      const failures = (yield* Metric.value(UpstreamMetrics.sendFailures)).count - failuresBefore
      assert.strictEqual(failures, 1)
      assert.deepStrictEqual(box.received.map((m) => m.payload.n).sort(), [1, 3])
    }).pipe(Effect.scoped))

  it.live("a batch with one forbidden topic returns that item's error and subscribes the rest, grouped by socket", () =>
    Effect.gen(function*() {
      // A pool keyed by a user of wedding w-ok only: the upstream refuses it the private channel of another wedding.
      const userKey = yield* Effect.promise(() =>
        TestTokens.userToken({ weddingIds: ["w-ok"], secret: UpstreamGateway.JWT_SECRET })
      )
      const p = yield* UpstreamPool.make.pipe(
        Effect.provide(
          UpstreamConfig.layer({ url: suite.upstream.url, apiKey: Redacted.make(userKey), channelsPerSocket: 3 })
        )
      )
      const stamp = Date.now()
      const specs: ReadonlyArray<UpstreamPool.ChannelSpec> = [
        { topic: `public-a-${stamp}` },
        { topic: "wedding:w-ok", isPrivate: true },
        { topic: "wedding:w-forbidden", isPrivate: true },
        { topic: `public-b-${stamp}` },
        { topic: `public-c-${stamp}` }
      ]
      const result = yield* p.subscribeMany(specs.map((spec) => ({ spec, listener: recorder().listener })))
      const outcomes = result.items.map((item) =>
        Result.isSuccess(item.result) ? "ok" : item.result.failure.reason._tag
      )
      assert.deepStrictEqual(outcomes, ["ok", "ok", "JoinRefused", "ok", "ok"])
      const refused = result.items[2]!.result
      assert.ok(Result.isFailure(refused) && refused.failure.message.includes("Unauthorized"), String(refused))
      // Three channels per socket: the four admitted items sit on two sockets, in order.
      assert.deepStrictEqual([...result.bySocket.values()].map((indexes) => [...indexes]), [[0, 1], [3, 4]])
      yield* upstreamHolds(2, 4)
      yield* p.releaseMany(result.items.flatMap((item) => (Result.isSuccess(item.result) ? [item.result.success] : [])))
      assert.strictEqual((yield* p.stats).channels, 4, "within their idle grace")
    }).pipe(Effect.scoped))

  it.live("each socket's heartbeat round-trip is measured and exported", () =>
    Effect.gen(function*() {
      const p = yield* pool({ heartbeatIntervalMs: 100 })
      const before = (yield* Metric.value(UpstreamMetrics.heartbeatRoundTrip)).count
      yield* p.subscribe({ topic: `beat-${Date.now()}` }, recorder().listener)
      const socket = yield* Effect.promise(() =>
        waitUntil("a measured heartbeat", () =>
          Effect.runPromise(p.stats), (s) =>
          s.sockets[0]?.heartbeatMs !== undefined)
      )
      assert.ok(socket.sockets[0]!.heartbeatMs! >= 0)
      assert.ok((yield* Metric.value(UpstreamMetrics.heartbeatRoundTrip)).count > before)
    }).pipe(Effect.scoped))

  it.live("pre-warm opens the sockets and joins the channels ahead of the peak, held for its scope", () =>
    Effect.gen(function*() {
      const p = yield* pool({ idleGraceMs: 100 })
      const stamp = Date.now()
      const scope = yield* Scope.make()
      const warmed = yield* p.prewarm({
        sockets: 2,
        channels: [{ topic: `warm-a-${stamp}` }, { topic: `warm-b-${stamp}` }]
      })
        .pipe(Scope.provide(scope))
      assert.ok(warmed.items.every((item) => Result.isSuccess(item.result)))
      yield* upstreamHolds(2, 2)
      assert.strictEqual((yield* p.stats).sockets.length, 2)
      // A subscriber of a warmed channel joins nothing new.
      yield* p.subscribe({ topic: `warm-a-${stamp}` }, recorder().listener)
      yield* upstreamHolds(2, 2)
      yield* Scope.close(scope, Exit.void)
      // The held channel stays; the other channel and the empty socket go.
      yield* upstreamHolds(1, 1)
    }).pipe(Effect.scoped))
})

/**
 * The hub on `UpstreamBroker` against a real upstream (the project's gateway in a child process): topics joined in one
 * turn are subscribed as one batch placed socket by socket, local publications go upstream once and never come back,
 * upstream broadcasts reach local sinks once, and topics nobody listens to any more are left after the grace.
 */
import { assert, describe, it } from "@effect/vitest"
import { History, Hub, Publication } from "@wedsync/hub"
import { TestSink } from "@wedsync/hub/testing"
import { Serializer } from "@wedsync/protocol"
import { SupabaseClients, waitUntil } from "@wedsync/testkit"
import { Context, Effect, Layer, Redacted } from "effect"
import { vi } from "vitest"
import * as UpstreamBroker from "../src/UpstreamBroker.ts"
import { UpstreamConfig, type UpstreamOptions } from "../src/UpstreamConfig.ts"
import * as UpstreamPool from "../src/UpstreamPool.ts"
import * as UpstreamGateway from "./support/UpstreamGateway.ts"

const { makeSupabaseClient, subscribe, inbox } = SupabaseClients

vi.setConfig({ testTimeout: 60_000 })

const suite = UpstreamGateway.useUpstream()

/** A hub on the relay, over a pool to the test's upstream, built in the test's scope. */
const hubOnUpstream = (
  broker: Partial<UpstreamBroker.BrokerOptions> = {},
  pool: Partial<UpstreamOptions> = { idleGraceMs: 100 }
) =>
  Layer.build(
    Hub.Hub.layer.pipe(
      Layer.provideMerge(UpstreamBroker.layerOptions(broker)),
      Layer.provideMerge(History.History.layerMemory()),
      Layer.provideMerge(UpstreamPool.UpstreamPool.layer),
      Layer.provide(UpstreamConfig.layer({ url: suite.upstream.url, apiKey: Redacted.make(suite.serviceKey), ...pool }))
    )
  )

const upstreamHolds = (open: number, channels: number) =>
  Effect.promise(() =>
    waitUntil(
      `upstream holding ${open} sockets and ${channels} channels`,
      () => suite.upstream.metrics(),
      (m) => m["wedsync_connection_open"] === open && m["wedsync_connection_channels"] === channels,
      { timeoutMs: 10_000 }
    )
  )

type TextFrame = [unknown, unknown, string, string, { payload: { n: number } }]

/** The `n` of every broadcast a sink received, in order (other frames, such as `system`, left out). */
const broadcastsOf = (sink: TestSink.TestSink) =>
  sink.decoded().flatMap((frame) =>
    frame._tag === "Text" && (frame.json as TextFrame)[3] === "broadcast"
      ? [(frame.json as TextFrame)[4].payload.n]
      : []
  )

describe("UpstreamBroker", () => {
  it.live("relays a hub's topics through the pool: one batch, once each way, no echo, left after the grace", () =>
    Effect.gen(function*() {
      const context = yield* hubOnUpstream()
      const hub = Context.get(context, Hub.Hub)
      const pool = Context.get(context, UpstreamPool.UpstreamPool)
      const stamp = Date.now()
      const keys = Array.from({ length: 150 }, (_, i) => Publication.topicKey(`realtime:t-${stamp}-${i}`, false))
      const sinks = keys.map(() => TestSink.make("2.0.0"))
      // All in one turn: one batch, filling the first socket before the second.
      keys.forEach((key, i) => hub.add(key, sinks[i]!))
      yield* hub.settled
      assert.deepStrictEqual((yield* pool.stats).sockets.map((s) => s.channels), [100, 50])
      yield* upstreamHolds(2, 150)

      const phone = makeSupabaseClient(suite.upstream.url, suite.anonKey)
      suite.clients.push(phone)
      const box = inbox<{ payload: { n: number } }>("relayed broadcast")
      const channel = phone.channel(`t-${stamp}-0`).on("broadcast", { event: "msg" }, box.push)
      yield* Effect.promise(() => subscribe(channel))

      const local = (n: number) =>
        Publication.json(
          `realtime:t-${stamp}-0`,
          false,
          "broadcast",
          Serializer.broadcastPayloadJson("msg", `{"n":${n}}`)
        )
      yield* hub.publish(local(1))
      yield* Effect.promise(() => box.next((m) => m.payload.n === 1))
      yield* Effect.promise(() => channel.send({ type: "broadcast", event: "msg", payload: { n: 2 } }))
      yield* Effect.promise(() =>
        waitUntil("the phone's broadcast locally", () => broadcastsOf(sinks[0]!), (ns) => ns.includes(2))
      )
      yield* hub.publish(local(3))
      yield* Effect.promise(() => box.next((m) => m.payload.n === 3))
      yield* Effect.promise(() => channel.send({ type: "broadcast", event: "msg", payload: { n: 4 } }))
      yield* Effect.promise(() =>
        waitUntil("the phone's second broadcast locally", () => broadcastsOf(sinks[0]!), (ns) => ns.includes(4))
      )
      // The local sink got the local publications from the hub and the phone's from upstream, each once.
      assert.deepStrictEqual(broadcastsOf(sinks[0]!), [1, 2, 3, 4])
      assert.deepStrictEqual(box.received.map((m) => m.payload.n), [1, 3])

      // A topic nobody here listens to (a REST broadcast, a worker's publish): sent over the REST API, not joined.
      const lone = phone.channel(`lone-${stamp}`).on("broadcast", { event: "msg" }, box.push)
      yield* Effect.promise(() => subscribe(lone))
      yield* hub.publish(
        Publication.json(
          `realtime:lone-${stamp}`,
          false,
          "broadcast",
          Serializer.broadcastPayloadJson("msg", `{"n":5}`)
        )
      )
      yield* Effect.promise(() => box.next((m) => m.payload.n === 5))

      keys.forEach((key, i) => hub.remove(key, sinks[i]!))
      // Only the phone's two channels are left once the grace is over.
      yield* upstreamHolds(1, 2)
    }).pipe(Effect.scoped))
})

describe("UpstreamBroker with the upstream away", () => {
  it.live("a topic first joined while the upstream is down is served locally, joined later and told of the gap", () =>
    Effect.gen(function*() {
      const context = yield* hubOnUpstream({ subscribeWaitMs: 200, retryBaseMs: 200 }, {
        joinTimeoutMs: 300,
        reconnectBaseMs: 50,
        reconnectMaxMs: 300
      })
      const hub = Context.get(context, Hub.Hub)
      const key = Publication.topicKey(`realtime:away-${Date.now()}`, false)
      const sink = TestSink.make("2.0.0")
      yield* Effect.promise(() => suite.upstream.kill())
      hub.add(key, sink)
      // Not received from upstream yet: a join answered now must not be taken for gap-free.
      assert.strictEqual(yield* hub.subscribed(key), false)
      // Local fan-out works meanwhile.
      const n = (i: number) =>
        Publication.json(
          Publication.topicOfKey(key).topic,
          false,
          "broadcast",
          Serializer.broadcastPayloadJson("msg", `{"n":${i}}`)
        )
      yield* hub.publish(n(1))
      // The join times out at least once while the upstream is away, then succeeds once it is back.
      yield* Effect.sleep(800)
      yield* Effect.promise(() => suite.upstream.restart())
      yield* Effect.promise(() =>
        waitUntil(
          "the gap told once the upstream channel is joined",
          () => sink.decoded().map((f) => (f._tag === "Text" ? (f.json as Array<unknown>)[3] : undefined)),
          (events) => events.includes("system"),
          { timeoutMs: 15_000 }
        )
      )
      assert.strictEqual(yield* hub.subscribed(key), true)
      const phone = makeSupabaseClient(suite.upstream.url, suite.anonKey)
      suite.clients.push(phone)
      const channel = phone.channel(Publication.topicOfKey(key).topic.slice("realtime:".length))
      yield* Effect.promise(() => subscribe(channel))
      yield* Effect.promise(() => channel.send({ type: "broadcast", event: "msg", payload: { n: 2 } }))
      yield* Effect.promise(() => waitUntil("the phone's broadcast", () => broadcastsOf(sink), (ns) => ns.includes(2)))
      assert.deepStrictEqual(broadcastsOf(sink), [1, 2])
    }).pipe(Effect.scoped))
})

describe("UpstreamBroker at the upstream's limits", () => {
  it.live("a topic the upstream refuses for one of its limits (Too many channels) is joined once there is room", () =>
    Effect.gen(function*() {
      // The pool would put 101 channels on its one socket; the upstream takes 100 (MAX_CHANNELS_PER_CONNECTION).
      const context = yield* hubOnUpstream({ subscribeWaitMs: 200, retryBaseMs: 200 }, {
        channelsPerSocket: 101,
        maxSockets: 1,
        idleGraceMs: 50
      })
      const hub = Context.get(context, Hub.Hub)
      const stamp = Date.now()
      const keys = Array.from({ length: 101 }, (_, i) => Publication.topicKey(`realtime:full-${stamp}-${i}`, false))
      const sinks = keys.map(() => TestSink.make("2.0.0"))
      keys.forEach((key, i) => hub.add(key, sinks[i]!))
      yield* hub.settled
      const last = keys[100]!
      // Refused: served locally, not received from upstream.
      assert.strictEqual(yield* hub.subscribed(last), false)
      assert.strictEqual(yield* hub.subscribed(keys[0]!), true)
      // A channel leaves: the refused topic is joined at its next try, and its subscriber told of the gap.
      hub.remove(keys[0]!, sinks[0]!)
      yield* Effect.promise(() =>
        waitUntil(
          "the refused topic joined, its gap told",
          () => sinks[100]!.decoded().map((f) => (f._tag === "Text" ? (f.json as Array<unknown>)[3] : undefined)),
          (events) => events.includes("system"),
          { timeoutMs: 15_000 }
        )
      )
      assert.strictEqual(yield* hub.subscribed(last), true)
      yield* upstreamHolds(1, 100)
    }).pipe(Effect.scoped))
})

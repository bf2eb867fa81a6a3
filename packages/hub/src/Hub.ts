/**
 * The node-local topic registry and fan-out.
 *
 * A publication is encoded and framed at most once per serializer version, then the same bytes
 * are enqueued on every subscriber's sink; the loop allocates nothing per recipient. The registry
 * is the only structure shared between connections and is mutated synchronously.
 */
import { HotMetric } from "@wedsync/metrics"
import { Frame, Reply } from "@wedsync/protocol"
import { Context, Effect, Layer, Scope } from "effect"
import { Broker } from "./Broker.ts"
import * as HubMetrics from "./HubMetrics.ts"
import { frameFor, json, keyOf, type Publication, topicOfKey, type TopicKey } from "./Publication.ts"
import type { Sink } from "./Sink.ts"

export interface HubShape {
  /**
   * Adds `sink` to the topic. Not scoped on purpose: the owner releases its subscriptions from a scope
   * of its own (a connection actor releases all its channels in one finalizer: an idle socket holds
   * fewer objects than with one scope per channel). Every `add` must be paired with a `remove`.
   */
  readonly add: (key: TopicKey, sink: Sink) => void
  readonly remove: (key: TopicKey, sink: Sink) => void
  /**
   * Completes once publications of `key` from other nodes reach this node (`Broker.subscribed`); after `add`. `false`
   * when they do not (yet): the transport is down or the wait ran out.
   */
  readonly subscribed: (key: TopicKey) => Effect.Effect<boolean>
  /** Delivers to local subscribers (skipping `except`, the sender for `self: false`) and to other nodes. */
  readonly publish: (publication: Publication, except?: Sink) => Effect.Effect<number>
  /** Delivers to this node's subscribers only; for news every node derives by itself (a dead node's leaves). */
  readonly publishLocal: (publication: Publication) => number
  /** Registers `watcher` for the life of the scope. */
  readonly watch: (watcher: HubWatcher) => Effect.Effect<void, never, Scope.Scope>
  /** Completes once the broker receives every topic added before it (see `Broker.settled`). */
  readonly settled: Effect.Effect<void>
  readonly subscriberCount: (key: TopicKey) => number
  readonly topicCount: () => number
}

/** Observes what reaches this node from the others; called synchronously, so it must not block. */
export interface HubWatcher {
  /** A publication from another node, just before its local fan-out. */
  readonly remote: (publication: Publication) => void
  /** The last local subscriber of `key` left: from now on this node stops receiving the topic from others. */
  readonly vacated: (key: TopicKey) => void
}

const V2: Frame.Vsn = "2.0.0"

/** The `system` message telling a topic's subscribers that publications from other nodes may have been lost. */
const missedMessages = (key: TopicKey): Publication => {
  const { topic, isPrivate } = topicOfKey(key)
  const payload = Reply.system(
    "broadcast",
    "error",
    Reply.MESSAGES_MAY_HAVE_BEEN_MISSED,
    Frame.subtopicOf(topic) ?? topic
  )
  return json(topic, isPrivate, Reply.SYSTEM, JSON.stringify(payload))
}

export const make: Effect.Effect<HubShape, never, Broker | Scope.Scope> = Effect.gen(function*() {
  const broker = yield* Broker
  const publications = yield* HotMetric.counter(HubMetrics.publications)
  const deliveries = yield* HotMetric.counter(HubMetrics.deliveries)
  const topicGauge = yield* HotMetric.gauge(HubMetrics.topics)
  const subscriptionGauge = yield* HotMetric.gauge(HubMetrics.subscriptions)
  const fanoutDuration = yield* HotMetric.histogram(HubMetrics.fanoutDuration)
  const topics = new Map<TopicKey, Set<Sink>>()
  let subscriptionCount = 0

  const fanOut = (publication: Publication, except: Sink | undefined): number => {
    const sinks = topics.get(keyOf(publication))
    publications.inc()
    if (sinks === undefined) return 0
    const started = performance.now()
    let v1: Uint8Array | undefined | null = null
    let v2: Uint8Array | undefined | null = null
    let delivered = 0
    for (const sink of sinks) {
      if (sink === except) continue
      let frame: Uint8Array | undefined
      if (sink.vsn === V2) frame = v2 === null ? (v2 = frameFor(publication, "2.0.0")) : v2
      else frame = v1 === null ? (v1 = frameFor(publication, "1.0.0")) : v1
      if (frame === undefined) continue
      sink.enqueue(frame, publication)
      delivered++
    }
    deliveries.inc(delivered)
    fanoutDuration.observe((performance.now() - started) / 1000)
    return delivered
  }

  // Replaced, never mutated, so the loops below need no copy (watchers are few and registered once).
  let watchers: ReadonlyArray<HubWatcher> = []

  yield* broker.receive((publication) => {
    for (let i = 0; i < watchers.length; i++) watchers[i]!.remote(publication)
    fanOut(publication, undefined)
  })
  // Local subscribers only: every other node reports its own gap.
  yield* broker.onGap((keys) => {
    for (const key of keys) if (topics.has(key)) fanOut(missedMessages(key), undefined)
  })

  const add = (key: TopicKey, sink: Sink) => {
    let sinks = topics.get(key)
    if (sinks === undefined) {
      topics.set(key, sinks = new Set())
      broker.join(key)
    }
    if (!sinks.has(sink)) subscriptionCount++
    sinks.add(sink)
    updateGauges()
  }

  const remove = (key: TopicKey, sink: Sink) => {
    const sinks = topics.get(key)
    if (sinks?.delete(sink)) subscriptionCount--
    if (sinks !== undefined && sinks.size === 0) {
      topics.delete(key)
      broker.leave(key)
      for (let i = 0; i < watchers.length; i++) watchers[i]!.vacated(key)
    }
    updateGauges()
  }

  const updateGauges = () => {
    topicGauge.set(topics.size)
    subscriptionGauge.set(subscriptionCount)
  }

  return {
    add,
    remove,
    subscribed: broker.subscribed,
    publish: (publication, except) =>
      Effect.suspend(() => {
        const delivered = fanOut(publication, except)
        return Effect.as(broker.publish(publication), delivered)
      }),
    publishLocal: (publication) => fanOut(publication, undefined),
    watch: (watcher) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          watchers = [...watchers, watcher]
        }),
        () =>
          Effect.sync(() => {
            watchers = watchers.filter((w) => w !== watcher)
          })
      ),
    settled: broker.settled,
    subscriberCount: (key) => topics.get(key)?.size ?? 0,
    topicCount: () => topics.size
  }
})

export class Hub extends Context.Service<Hub, HubShape>()("@wedsync/hub/Hub") {
  static readonly layer: Layer.Layer<Hub, never, Broker> = Layer.effect(Hub, make)

  /** A single-node hub with its in-memory broker. */
  static readonly layerMemory: Layer.Layer<Hub> = Hub.layer.pipe(Layer.provide(Broker.layerMemory))
}

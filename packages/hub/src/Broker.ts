/**
 * The `Broker` carries publications between gateway nodes. The hub delivers to its own local
 * subscribers first and then hands the publication to the broker, which delivers it to every
 * other node's hub, never back to the node it came from.
 *
 * Guarantee: at most once, in publish order per topic from one node. Loss is possible when a
 * node or the transport fails; history and resume are a separate concern.
 *
 * A node receives the topics it has joined (`join`/`leave`, reference-counted; the hub joins a
 * topic with its first local subscriber and leaves it with the last). The memory broker delivers
 * every topic, joined or not; the Redis broker holds one shard-channel subscription per joined topic.
 *
 * Outages are reported, never repaired: when the Redis broker's subscriber connection was lost, it
 * names every topic it still holds once its subscriptions are live again (`onGap`), so the hub can
 * tell those topics' subscribers that they may have missed messages. Publishing never fails: a
 * publication Redis refused, or one that found the send backlog full, is counted and logged.
 */
import { RedisClient, RedisKey } from "@wedsync/redis"
import { HotMetric } from "@wedsync/metrics"
import { Cause, Clock, Context, Deferred, Effect, Exit, Layer, Metric, Queue, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as HubMetrics from "./HubMetrics.ts"
import { keyOf, type Publication, type TopicKey } from "./Publication.ts"
import * as PublicationWire from "./PublicationWire.ts"

/**
 * What the broker's subscriptions are worth right now:
 * - `local`: the memory broker, nothing to lose;
 * - `connected`: every held topic's subscription is live;
 * - `disconnected`: the subscriber connection is down (publications from other nodes are being missed);
 * - `resubscribing`: it is back, and the held topics are being subscribed again before their gap is reported.
 */
export type BrokerState = "local" | "connected" | "disconnected" | "resubscribing"

export interface BrokerShape {
  /** Sends to every other node. */
  readonly publish: (publication: Publication) => Effect.Effect<void>
  /** Registers this node's receiver of publications from other nodes, for the life of the scope. */
  readonly receive: (handler: (publication: Publication) => void) => Effect.Effect<void, never, Scope.Scope>
  /** Counts one more local interest in `key`; the first one subscribes this node to it. */
  readonly join: (key: TopicKey) => void
  /** Counts one interest less; the last one unsubscribes this node. */
  readonly leave: (key: TopicKey) => void
  /** Completes once the transport's subscriptions match every `join` and `leave` made before it. */
  readonly settled: Effect.Effect<void>
  /**
   * Completes once this node receives the publications of a joined `key` from other nodes, so a join can be answered
   * only when nothing published afterwards elsewhere can be missed. At once for the memory broker, for a topic not
   * joined, and while the transport is down (the topic will be told of the gap); at most `SUBSCRIBE_WAIT_MS` otherwise.
   * `true` when the topic is received; `false` when it is not (transport down, or the wait ran out), which a reader
   * that needs a gap-free seam (replay) must not take for live.
   */
  readonly subscribed: (key: TopicKey) => Effect.Effect<boolean>
  /**
   * Registers, for the life of the scope, a listener told the topics that may have missed publications from other
   * nodes: every topic held when the subscriptions came back after an outage, once they are all live again.
   */
  readonly onGap: (listener: (keys: ReadonlyArray<TopicKey>) => void) => Effect.Effect<void, never, Scope.Scope>
  readonly state: Effect.Effect<BrokerState>
}

/**
 * An in-process bus that joins several brokers, one per simulated node; with a single member it
 * is the single-node broker.
 */
export class MemoryBus {
  private readonly nodes = new Set<(publication: Publication) => void>()

  join(handler: (publication: Publication) => void): () => void {
    this.nodes.add(handler)
    return () => this.nodes.delete(handler)
  }

  send(from: ((publication: Publication) => void) | undefined, publication: Publication): void {
    for (const node of this.nodes) if (node !== from) node(publication)
  }
}

const makeMemory = (bus: MemoryBus): BrokerShape => {
  let self: ((publication: Publication) => void) | undefined
  return {
    publish: (publication) => Effect.sync(() => bus.send(self, publication)),
    receive: (handler) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          self = handler
          return bus.join(handler)
        }),
        (leave) => Effect.sync(leave)
      ).pipe(Effect.asVoid),
    join: () => {},
    leave: () => {},
    settled: Effect.void,
    subscribed: () => Effect.succeed(true),
    onGap: () => Effect.void,
    state: Effect.succeed("local")
  }
}

/**
 * The shard channel of a topic; colliding names (only for malformed UTF-16) merely share a channel. The topic key is
 * its hash tag, so the channel lives in the Cluster slot of the topic's other keys (presence entries, history stream).
 */
export const channelOf = (key: TopicKey): RedisKey.RedisKey => RedisKey.tagged("broker", key.toWellFormed())

const sameOrigin = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

/** Most bytes of publications waiting to be sent; past it (Redis slow or frozen) new ones are dropped and counted. */
export const MAX_BACKLOG_BYTES = 64 * 1024 * 1024

/** Longest `subscribed` waits for a topic's subscription (a slow or frozen Redis must not hold joins for long). */
export const SUBSCRIBE_WAIT_MS = 2_000

/** At most one warning about lost publications per this many milliseconds; the next one says how many were lost. */
const LOST_LOG_INTERVAL_MS = 10_000

const makeRedis: Effect.Effect<BrokerShape, never, RedisClient.RedisClient | Scope.Scope> = Effect.gen(function*() {
  const client = yield* RedisClient.RedisClient
  const origin = randomBytes(PublicationWire.ORIGIN_BYTES)
  let handler: ((publication: Publication) => void) | undefined
  const lostToRedis = yield* HotMetric.counter(Metric.withAttributes(HubMetrics.brokerLost, { reason: "redis" }))
  const lostToBacklog = yield* HotMetric.counter(Metric.withAttributes(HubMetrics.brokerLost, { reason: "backlog" }))
  const gapCounter = yield* HotMetric.counter(HubMetrics.brokerGaps)

  const onMessage = (bytes: Buffer) => {
    const decoded = PublicationWire.decode(bytes)
    // Our own publications were already delivered locally by the hub.
    if (decoded === undefined || sameOrigin(decoded.origin, origin)) return
    handler?.(decoded.publication)
  }

  // Lost publications are logged when they start and then at most every LOST_LOG_INTERVAL_MS, so a Redis outage
  // under load writes a few lines, not one per batch; the recovery line closes the account.
  let lostUnreported = 0
  let lastLostLogAt = Number.NEGATIVE_INFINITY
  let failing = false
  const reportLost = (count: number, why: string) =>
    Effect.gen(function*() {
      failing = true
      lostUnreported += count
      const now = yield* Clock.currentTimeMillis
      if (now - lastLostLogAt < LOST_LOG_INTERVAL_MS) return
      lastLostLogAt = now
      const lost = lostUnreported
      lostUnreported = 0
      yield* Effect.logWarning(`Broker: ${lost} publications not sent to other nodes (${why})`)
    })
  const reportSent = Effect.suspend(() => {
    if (!failing) return Effect.void
    failing = false
    const lost = lostUnreported
    lostUnreported = 0
    lastLostLogAt = Number.NEGATIVE_INFINITY
    return Effect.logInfo(`Broker: publishing to Redis works again${lost > 0 ? ` (${lost} more lost before)` : ""}`)
  })

  // Publishing: one consumer sends whatever accumulated as one pipeline, in publish order. The backlog is bounded in
  // bytes: while Redis is frozen every batch waits out the command timeout, and publications must not pile up.
  const outbox = yield* Queue.make<readonly [channel: string, bytes: Buffer]>()
  let backlogBytes = 0
  const sendBatch = (batch: ReadonlyArray<readonly [string, Buffer]>) => {
    for (const [, bytes] of batch) backlogBytes -= bytes.length
    return client.command("SPUBLISH", (redis) => {
      const pipeline = redis.pipeline()
      for (const [channel, bytes] of batch) pipeline.spublish(channel, bytes)
      return pipeline.exec()
    }).pipe(
      Effect.matchEffect({
        onFailure: (error) => {
          lostToRedis.inc(batch.length)
          return reportLost(batch.length, error.message)
        },
        onSuccess: (replies) => {
          const refused = replies?.filter(([error]) => error !== null).length ?? batch.length
          if (refused === 0) return reportSent
          lostToRedis.inc(refused)
          return reportLost(refused, "refused by Redis")
        }
      })
    )
  }
  yield* Queue.takeAll(outbox).pipe(Effect.flatMap(sendBatch), Effect.forever, Effect.forkScoped)

  // Subscribing: `wanted` counts interests; one reconciler makes the live subscriptions follow it, so
  // a quick leave-and-join of one topic can never race two SSUBSCRIBE/SUNSUBSCRIBE of its own.
  const wanted = new Map<TopicKey, number>()
  const live = new Map<TopicKey, Scope.Closeable>()
  const wake = yield* Queue.make<void>({ capacity: 1, strategy: "dropping" })
  let waiters: Array<Deferred.Deferred<void>> = []
  // `subscribed` callers, by topic, until its subscription is live (or the topic is left).
  const liveWaiters = new Map<TopicKey, Array<Deferred.Deferred<void>>>()
  const releaseLiveWaiters = (key: TopicKey) => {
    const waiting = liveWaiters.get(key)
    if (waiting === undefined) return
    liveWaiters.delete(key)
    for (const waiter of waiting) Deferred.doneUnsafe(waiter, Effect.void)
  }
  // A wait that ran out (or was interrupted) lets go of its waiter: a topic that never goes live must not collect them.
  const forgetLiveWaiter = (key: TopicKey, waiter: Deferred.Deferred<void>) => {
    const waiting = liveWaiters.get(key)
    const index = waiting?.indexOf(waiter) ?? -1
    if (waiting === undefined || index < 0) return
    waiting.splice(index, 1)
    if (waiting.length === 0) liveWaiters.delete(key)
  }

  // The subscriber connection's outages. `gapPending` is set when it drops after having been up and cleared once,
  // with the connection back and every wanted topic live, the held topics were reported to the gap listeners.
  let subscriberUp = false
  let subscriberEverUp = false
  let gapPending = false
  const gapListeners = new Set<(keys: ReadonlyArray<TopicKey>) => void>()
  yield* client.statusChanges.pipe(
    Stream.runForEach((status) =>
      Effect.sync(() => {
        const up = status.subscriber === "connected"
        if (up === subscriberUp) return
        subscriberUp = up
        if (up) subscriberEverUp = true
        else if (subscriberEverUp) gapPending = true
        // Back up: the client has subscribed again to every live channel; the reconciler adds what was joined
        // meanwhile and then reports the gap.
        if (up && gapPending) Queue.offerUnsafe(wake, undefined)
      })
    ),
    Effect.forkScoped
  )

  const reportGap = Effect.suspend(() => {
    gapPending = false
    const keys = [...wanted.keys()]
    if (keys.length === 0) return Effect.void
    gapCounter.inc()
    return Effect.logWarning(
      `Broker: subscriptions restored after an outage; ${keys.length} topics told that messages may have been missed`
    ).pipe(
      Effect.andThen(Effect.sync(() => {
        for (const listener of gapListeners) listener(keys)
      }))
    )
  })

  const subscribe = (key: TopicKey) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const exit = yield* client.ssubscribe(channelOf(key)).pipe(
        Effect.flatMap((stream) =>
          Effect.forkIn(Stream.runForEach(stream, (b) => Effect.sync(() => onMessage(b))), scope)
        ),
        Scope.provide(scope),
        Effect.exit
      )
      if (Exit.isSuccess(exit)) {
        live.set(key, scope)
        releaseLiveWaiters(key)
        return true
      }
      yield* Scope.close(scope, Exit.void)
      // While the subscriber is down every join fails the same way; the outage itself is logged by the client.
      if (subscriberUp || !subscriberEverUp) {
        yield* Effect.logWarning(`Broker: subscribing to ${key} failed`, Cause.pretty(exit.cause))
      }
      return false
    })

  const reconcile = Effect.gen(function*() {
    for (const [key, scope] of [...live]) {
      if (wanted.has(key)) continue
      live.delete(key)
      yield* Scope.close(scope, Exit.void)
    }
    // The live map, not a copy: a topic joined while an earlier one is being subscribed is taken in the same pass.
    let failed = false
    for (const key of wanted.keys()) if (!live.has(key) && !(yield* subscribe(key))) failed = true
    for (const key of [...liveWaiters.keys()]) if (!wanted.has(key)) releaseLiveWaiters(key)
    const inSync = [...wanted.keys()].every((key) => live.has(key))
    if (inSync) {
      if (gapPending && subscriberUp) yield* reportGap
      const done = waiters
      waiters = []
      for (const waiter of done) yield* Deferred.succeed(waiter, undefined)
    } else if (failed) {
      // A failed subscription is retried after a pause; `settled` keeps waiting meanwhile.
      yield* Effect.sleep("1 second")
      Queue.offerUnsafe(wake, undefined)
    } else {
      // Only joins and leaves made during the pass are left: no pause for those.
      Queue.offerUnsafe(wake, undefined)
    }
  })
  yield* Queue.take(wake).pipe(Effect.andThen(reconcile), Effect.forever, Effect.forkScoped)
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...live.values()], (scope) => Scope.close(scope, Exit.void), { discard: true })
  )

  return {
    publish: (publication) =>
      Effect.sync(() => {
        const bytes = PublicationWire.encode(origin, publication)
        if (backlogBytes + bytes.length > MAX_BACKLOG_BYTES) {
          lostToBacklog.inc()
          return
        }
        backlogBytes += bytes.length
        Queue.offerUnsafe(outbox, [client.key(channelOf(keyOf(publication))), bytes])
      }),
    receive: (h) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          handler = h
        }),
        () =>
          Effect.sync(() => {
            if (handler === h) handler = undefined
          })
      ),
    join: (key) => {
      const count = wanted.get(key) ?? 0
      wanted.set(key, count + 1)
      if (count === 0) Queue.offerUnsafe(wake, undefined)
    },
    leave: (key) => {
      const count = wanted.get(key)
      if (count === undefined) return
      if (count > 1) return void wanted.set(key, count - 1)
      wanted.delete(key)
      Queue.offerUnsafe(wake, undefined)
    },
    settled: Effect.suspend(() => {
      const waiter = Deferred.makeUnsafe<void>()
      waiters.push(waiter)
      Queue.offerUnsafe(wake, undefined)
      return Deferred.await(waiter)
    }),
    subscribed: (key) =>
      Effect.suspend(() => {
        if (live.has(key) || !wanted.has(key)) return Effect.succeed(true)
        if (subscriberEverUp && !subscriberUp) return Effect.succeed(false)
        const waiter = Deferred.makeUnsafe<void>()
        const waiting = liveWaiters.get(key)
        if (waiting === undefined) liveWaiters.set(key, [waiter])
        else waiting.push(waiter)
        return Deferred.await(waiter).pipe(
          Effect.timeoutOption(SUBSCRIBE_WAIT_MS),
          Effect.ensuring(Effect.sync(() => forgetLiveWaiter(key, waiter))),
          Effect.map(() => live.has(key) || !wanted.has(key))
        )
      }),
    onGap: (listener) =>
      Effect.acquireRelease(
        Effect.sync(() => gapListeners.add(listener)),
        () => Effect.sync(() => gapListeners.delete(listener))
      ).pipe(Effect.asVoid),
    state: Effect.sync((): BrokerState =>
      !subscriberUp && subscriberEverUp ? "disconnected" : gapPending ? "resubscribing" : "connected"
    )
  }
})

export class Broker extends Context.Service<Broker, BrokerShape>()("@wedsync/hub/Broker") {
  /** Single node: nothing leaves the process. */
  static readonly layerMemory: Layer.Layer<Broker> = Layer.sync(Broker, () => makeMemory(new MemoryBus()))

  /** One node on a shared in-process bus, for tests that run several hubs in one process. */
  static readonly layerMemoryBus = (bus: MemoryBus): Layer.Layer<Broker> => Layer.sync(Broker, () => makeMemory(bus))

  /**
   * Nodes joined by Redis 7 sharded pub/sub: one shard channel per topic (`SSUBSCRIBE` while the
   * topic has local subscribers), publications sent pipelined with `SPUBLISH` and tagged with this
   * node's origin, which drops its own on receipt.
   */
  static readonly layerRedis: Layer.Layer<Broker, never, RedisClient.RedisClient> = Layer.effect(Broker, makeRedis)
}

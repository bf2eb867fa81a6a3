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
 */
import { RedisClient, RedisKey } from "@wedsync/redis"
import { Cause, Context, Deferred, Effect, Exit, Layer, Queue, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { keyOf, type Publication, type TopicKey } from "./Publication.ts"
import * as PublicationWire from "./PublicationWire.ts"

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
    settled: Effect.void
  }
}

/**
 * The shard channel of a topic; colliding names (only for malformed UTF-16) merely share a channel. The topic key is
 * its hash tag, so the channel lives in the Cluster slot of the topic's other keys (presence entries, history stream).
 */
export const channelOf = (key: TopicKey): RedisKey.RedisKey => RedisKey.tagged("broker", key.toWellFormed())

const sameOrigin = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

const makeRedis: Effect.Effect<BrokerShape, never, RedisClient.RedisClient | Scope.Scope> = Effect.gen(function*() {
  const client = yield* RedisClient.RedisClient
  const origin = randomBytes(PublicationWire.ORIGIN_BYTES)
  let handler: ((publication: Publication) => void) | undefined

  const onMessage = (bytes: Buffer) => {
    const decoded = PublicationWire.decode(bytes)
    // Our own publications were already delivered locally by the hub.
    if (decoded === undefined || sameOrigin(decoded.origin, origin)) return
    handler?.(decoded.publication)
  }

  // Publishing: one consumer sends whatever accumulated as one pipeline, in publish order.
  const outbox = yield* Queue.make<readonly [channel: string, bytes: Buffer]>()
  const sendBatch = (batch: ReadonlyArray<readonly [string, Buffer]>) =>
    client.command("SPUBLISH", (redis) => {
      const pipeline = redis.pipeline()
      for (const [channel, bytes] of batch) pipeline.spublish(channel, bytes)
      return pipeline.exec()
    }).pipe(
      Effect.catch((error) => Effect.logWarning(`Broker: ${batch.length} publications lost`, error.message))
    )
  yield* Queue.takeAll(outbox).pipe(Effect.flatMap(sendBatch), Effect.forever, Effect.forkScoped)

  // Subscribing: `wanted` counts interests; one reconciler makes the live subscriptions follow it, so
  // a quick leave-and-join of one topic can never race two SSUBSCRIBE/SUNSUBSCRIBE of its own.
  const wanted = new Map<TopicKey, number>()
  const live = new Map<TopicKey, Scope.Closeable>()
  const wake = yield* Queue.make<void>({ capacity: 1, strategy: "dropping" })
  let waiters: Array<Deferred.Deferred<void>> = []

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
      if (Exit.isSuccess(exit)) return live.set(key, scope)
      yield* Scope.close(scope, Exit.void)
      yield* Effect.logWarning(`Broker: subscribing to ${key} failed`, Cause.pretty(exit.cause))
    })

  const reconcile = Effect.gen(function*() {
    for (const [key, scope] of [...live]) {
      if (wanted.has(key)) continue
      live.delete(key)
      yield* Scope.close(scope, Exit.void)
    }
    for (const key of [...wanted.keys()]) if (!live.has(key)) yield* subscribe(key)
    const inSync = [...wanted.keys()].every((key) => live.has(key))
    if (inSync) {
      const done = waiters
      waiters = []
      for (const waiter of done) yield* Deferred.succeed(waiter, undefined)
    } else {
      // A failed subscription is retried after a pause; `settled` keeps waiting meanwhile.
      yield* Effect.sleep("1 second")
      Queue.offerUnsafe(wake, undefined)
    }
  })
  yield* Queue.take(wake).pipe(Effect.andThen(reconcile), Effect.forever, Effect.forkScoped)
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...live.values()], (scope) => Scope.close(scope, Exit.void), { discard: true })
  )

  return {
    publish: (publication) =>
      Effect.sync(() =>
        void Queue.offerUnsafe(outbox, [
          client.key(channelOf(keyOf(publication))),
          PublicationWire.encode(origin, publication)
        ])
      ),
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
    })
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

/**
 * Carries invalidations between the processes that share a store, so each drops its L1 copy of a key that changed.
 *
 * Contract: an invalidation published by one member reaches every subscribed member, the publisher's own
 * subscription included (receivers must tolerate their own messages), in publish order from one member. Delivery is
 * at most once: a member that was unreachable misses it, which the TTLs bound. A released subscription receives
 * nothing more.
 *
 * `layerMemory` is one bus per layer build, for a single process; `layerMemoryShared(bus)` joins several simulated
 * processes in tests. `layerRedis` is Redis pub/sub on one channel under `REDIS_PREFIX`; it runs the same suite.
 */
import { RedisClient, RedisKey } from "@wedsync/redis"
import { Context, Effect, Layer, Option, Schema, type Scope, Stream } from "effect"
import * as CacheError from "./CacheError.ts"
import * as CacheKind from "./CacheKind.ts"

/**
 * One invalidation: the kind (for metrics), the hashed store key, the version it supersedes (entries of this version
 * or older are dropped) and the id of the cache instance that sent it (so it can skip its own).
 */
export interface Invalidation {
  readonly kind: CacheKind.Name
  readonly key: string
  readonly version: number
  readonly origin: string
}

export interface InvalidationBusShape {
  readonly publish: (invalidation: Invalidation) => Effect.Effect<void, CacheError.CacheError>
  /** Calls `handler` for every invalidation until the scope closes. The handler must not block. */
  readonly subscribe: (
    handler: (invalidation: Invalidation) => void
  ) => Effect.Effect<void, CacheError.CacheError, Scope.Scope>
}

/** The in-process transport shared by the members of one memory bus. */
export class MemoryBus {
  private readonly handlers = new Set<(invalidation: Invalidation) => void>()

  join(handler: (invalidation: Invalidation) => void): () => void {
    // A wrapper per join, so one handler subscribed twice is two members.
    const member = (invalidation: Invalidation) => handler(invalidation)
    this.handlers.add(member)
    return () => this.handlers.delete(member)
  }

  send(invalidation: Invalidation): void {
    for (const handler of [...this.handlers]) handler(invalidation)
  }
}

export const makeMemory = (bus: MemoryBus): InvalidationBusShape => ({
  publish: (invalidation) => Effect.sync(() => bus.send(invalidation)),
  subscribe: (handler) =>
    Effect.acquireRelease(Effect.sync(() => bus.join(handler)), (leave) => Effect.sync(leave)).pipe(Effect.asVoid)
})

/** The channel of every cache sharing one Redis and `REDIS_PREFIX`. */
export const redisChannel: RedisKey.RedisKey = RedisKey.make("cache", "invalidations")

// On the wire: `[kind, key, version, origin]` as JSON. The key is a hashed store key, so nothing here is a secret.
const Wire = Schema.fromJsonString(
  Schema.Tuple([Schema.Literals(CacheKind.names), Schema.String, Schema.Int, Schema.String])
)
const decodeWire = Schema.decodeUnknownOption(Wire)

export const encodeRedisMessage = (invalidation: Invalidation): string =>
  JSON.stringify([invalidation.kind, invalidation.key, invalidation.version, invalidation.origin])

/** The invalidation in a pub/sub message; `None` for a message this bus did not write. */
export const decodeRedisMessage = (message: string): Option.Option<Invalidation> =>
  Option.map(decodeWire(message), ([kind, key, version, origin]) => ({ kind, key, version, origin }))

/**
 * A bus over Redis pub/sub through `client`. Each subscription is a stream of `client`'s subscriber connection,
 * confirmed by Redis before `subscribe` succeeds; messages that do not decode are ignored. The publisher's own
 * messages come back too (`LayeredCache` skips them by `origin`).
 */
export const makeRedis = (client: RedisClient.RedisClientShape): InvalidationBusShape => ({
  publish: (invalidation) =>
    client.publish(redisChannel, encodeRedisMessage(invalidation)).pipe(
      Effect.asVoid,
      Effect.mapError((error) => CacheError.unavailable("cache invalidation publish", error))
    ),
  subscribe: (handler) =>
    Effect.gen(function*() {
      const messages = yield* client.subscribe(redisChannel).pipe(
        Effect.mapError((error) => CacheError.unavailable("cache invalidation subscribe", error))
      )
      yield* Effect.forkScoped(
        Stream.runForEach(messages, (message) =>
          Effect.sync(() => {
            const invalidation = decodeRedisMessage(message)
            if (Option.isSome(invalidation)) handler(invalidation.value)
          }))
      )
    })
})

export class InvalidationBus extends Context.Service<InvalidationBus, InvalidationBusShape>()(
  "@wedsync/cache/InvalidationBus"
) {
  /** A bus of one process. */
  static readonly layerMemory: Layer.Layer<InvalidationBus> = Layer.sync(
    InvalidationBus,
    () => makeMemory(new MemoryBus())
  )

  /** A member of `bus`, for tests that run several caches in one process. */
  static readonly layerMemoryShared = (bus: MemoryBus): Layer.Layer<InvalidationBus> =>
    Layer.sync(InvalidationBus, () => makeMemory(bus))

  /** Redis pub/sub: the bus of every process on one Redis (and `REDIS_PREFIX`). */
  static readonly layerRedis: Layer.Layer<InvalidationBus, never, RedisClient.RedisClient> = Layer.effect(
    InvalidationBus,
    Effect.gen(function*() {
      return makeRedis(yield* RedisClient.RedisClient)
    })
  )
}

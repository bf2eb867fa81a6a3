/**
 * Carries invalidations between the processes that share a store, so each drops its L1 copy of a key that changed.
 *
 * Contract: an invalidation published by one member reaches every subscribed member, the publisher's own
 * subscription included (receivers must tolerate their own messages), in publish order from one member. Delivery is
 * at most once: a member that was unreachable misses it, which the TTLs bound. A released subscription receives
 * nothing more.
 *
 * `layerMemory` is one bus per layer build, for a single process; `layerMemoryShared(bus)` joins several simulated
 * processes in tests. The Redis bus (pub/sub) implements the same contract and runs the same suite.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type * as CacheKind from "./CacheKind.ts"
import type { CacheError } from "./CacheError.ts"

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
  readonly publish: (invalidation: Invalidation) => Effect.Effect<void, CacheError>
  /** Calls `handler` for every invalidation until the scope closes. The handler must not block. */
  readonly subscribe: (handler: (invalidation: Invalidation) => void) => Effect.Effect<void, CacheError, Scope.Scope>
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
}

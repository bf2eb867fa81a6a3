/**
 * Memberships granted by a database table (`MEMBERSHIP_TABLE`), beside those of a token's `app_metadata`: a row
 * (`user_id`, `wedding_id` and/or `supplier_id`) lets the user whose JWT `sub` is `user_id` read that wedding's or
 * supplier's channels and rows.
 *
 * Each decision (user x wedding, user x supplier) is a `LayeredCache` entry of the `user` kind, loaded by one
 * `MembershipSource.lookup` per miss (one indexed query) and shared by every channel and row decision of this
 * process. A source that fails answers "no" for that decision without caching it.
 *
 * Revocation: the owner of the table's change stream calls `granted` for an inserted row (the cached "no" is dropped
 * at once) and `revoked` for a deleted or moved one. `revoked` invalidates the decision on every process sharing the
 * cache's invalidation bus and tells this process's `onRevoke` listeners, which re-decide the user's channels on that
 * wedding or supplier. Other processes only see hashed keys on the bus, so a remote invalidation makes this process
 * re-check the decisions its channels hold through the table (`hold`) that are no longer in L1.
 *
 * `layerNoop` is the gateway without `MEMBERSHIP_TABLE`: nobody is a member through a table, nothing is queried.
 */
import { CacheCodec, CacheKind, InvalidationBus, LayeredCache } from "@wedsync/cache"
import { Context, Duration, Effect, FiberSet, Layer, Schema, type Scope } from "effect"

/** What a membership row grants access to. */
export type ScopeKind = "wedding" | "supplier"

/** One decision: may `userId` read wedding (supplier) `id`? */
export interface Grant {
  readonly userId: string
  readonly scope: ScopeKind
  readonly id: string
}

/** The source of truth could not answer (the database is unreachable, the query failed). */
export class MembershipUnavailable extends Schema.TaggedError<MembershipUnavailable>()("MembershipUnavailable", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

/** The one error of `MembershipSource`. */
export class MembershipError extends Schema.TaggedError<MembershipError>()("MembershipError", {
  reason: MembershipUnavailable
}) {
  override get message(): string {
    return this.reason.message
  }
}

/** Answers one decision from the membership table (the Postgres implementation is `changes`' `MembershipTable`). */
export class MembershipSource extends Context.Service<MembershipSource, {
  readonly lookup: (grant: Grant) => Effect.Effect<boolean, MembershipError>
}>()("@wedsync/auth/MembershipSource") {}

export interface Service {
  /** False when no membership table is configured: every decision is "no" and nothing is queried. */
  readonly enabled: boolean
  /** The decision of `keyOf(grant)` when L1 holds it fresh, else `undefined`: synchronous, for the per-row path. */
  readonly peek: (key: string) => boolean | undefined
  /** The decision, through the cache (one lookup per miss across the process). */
  readonly isMember: (grant: Grant) => Effect.Effect<boolean>
  /** A row granting `grant` appeared: a cached "no" is dropped here and on every process. */
  readonly granted: (grant: Grant) => Effect.Effect<void>
  /** A row granting `grant` went away: the decision is dropped everywhere and this process's listeners are told. */
  readonly revoked: (grant: Grant) => Effect.Effect<void>
  /** Calls `handler` with every decision to re-check (revoked here, or invalidated by another process). */
  readonly onRevoke: (handler: (grant: Grant) => void) => Effect.Effect<void, never, Scope.Scope>
  /** Records that a channel of this process is open on `grant` through the table, so remote revocations reach it. */
  readonly hold: (grant: Grant) => void
}

/** The cache keyspace of decisions: `user` TTLs, `false` is the negative value. */
export const kind: CacheKind.CacheKind<boolean> = CacheKind.make({
  name: "user",
  id: "membership",
  codec: CacheCodec.boolean,
  isNegative: (member) => !member
})

/** The cache key of a decision; NUL cannot occur in a JWT `sub` string sent by a client or in a topic id. */
export const keyOf = (grant: Grant): string => key(grant.userId, grant.scope, grant.id)

/** `keyOf` without a `Grant` object, for the per-row path. */
export const key = (userId: string, scope: ScopeKind, id: string): string =>
  userId + (scope === "wedding" ? "\u0000w\u0000" : "\u0000s\u0000") + id

/**
 * Most held decisions remembered; past it the oldest go first, and a revocation made on another process then stops
 * their rows (decided per change) but does not close their channels. A closed channel's entry leaves when a recheck
 * finds it out of L1.
 */
const MAX_HELD = 100_000

/** How long a burst of remote invalidations is gathered before the held decisions are re-checked. */
const REMOTE_RECHECK_DELAY = Duration.millis(50)

export const make = Effect.gen(function*() {
  const cache = yield* LayeredCache.LayeredCache
  const bus = yield* InvalidationBus.InvalidationBus
  const source = yield* MembershipSource
  const listeners = new Set<(grant: Grant) => void>()
  // Decisions that keep a channel of this process open through the table, by cache key.
  const held = new Map<string, Grant>()

  const notify = (grant: Grant): void => {
    for (const listener of listeners) listener(grant)
  }

  // A failed lookup answers "no" but is not cached as one: it fails through the cache and is caught here.
  const isMember = (grant: Grant): Effect.Effect<boolean> =>
    cache.get(kind, keyOf(grant), source.lookup(grant)).pipe(
      Effect.catch((error) =>
        Effect.as(Effect.logWarning(`membership lookup failed, answering no: ${error.message}`), false)
      )
    )

  // Keys on the bus are hashes: a remote invalidation of a user decision may be any of the held ones. Those no longer
  // fresh in L1 (the cache dropped them on the same message) are handed to the listeners to be decided again.
  let recheckPending = false
  const recheck = Effect.suspend(() => {
    recheckPending = false
    for (const [key, grant] of held) {
      if (cache.getUnsafe(kind, key) === LayeredCache.Miss) {
        held.delete(key)
        notify(grant)
      }
    }
    return Effect.void
  })
  const runFork = yield* FiberSet.makeRuntime<never, void, never>()
  yield* bus.subscribe((invalidation) => {
    if (invalidation.kind !== kind.name || recheckPending) return
    recheckPending = true
    runFork(Effect.delay(recheck, REMOTE_RECHECK_DELAY))
  }).pipe(
    Effect.catch((error) => Effect.logWarning(`membership revocations from other processes are off: ${error.message}`))
  )

  return {
    enabled: true,
    peek: (key) => {
      const value = cache.getUnsafe(kind, key)
      return value === LayeredCache.Miss ? undefined : value
    },
    isMember,
    granted: (grant) => cache.invalidate(kind, keyOf(grant)),
    revoked: (grant) =>
      Effect.andThen(
        cache.invalidate(kind, keyOf(grant)),
        Effect.sync(() => {
          held.delete(keyOf(grant))
          notify(grant)
        })
      ),
    onRevoke: (handler) =>
      Effect.acquireRelease(
        Effect.sync(() => listeners.add(handler)),
        () => Effect.sync(() => listeners.delete(handler))
      ).pipe(Effect.asVoid),
    hold: (grant) => {
      const key = keyOf(grant)
      held.delete(key)
      held.set(key, grant)
      if (held.size > MAX_HELD) held.delete(held.keys().next().value!)
    }
  } satisfies Service
})

const noop: Service = {
  enabled: false,
  peek: () => false,
  isMember: () => Effect.succeed(false),
  granted: () => Effect.void,
  revoked: () => Effect.void,
  onRevoke: () => Effect.void,
  hold: () => undefined
}

/** Memberships from a table, through the layered cache. */
export class Memberships extends Context.Service<Memberships, Service>()("@wedsync/auth/Memberships") {
  /** Over the cache, its invalidation bus and a source (the membership table). */
  static readonly layer: Layer.Layer<
    Memberships,
    never,
    LayeredCache.LayeredCache | InvalidationBus.InvalidationBus | MembershipSource
  > = Layer.effect(Memberships, make)

  /** No membership table: token claims alone decide. */
  static readonly layerNoop: Layer.Layer<Memberships> = Layer.succeed(Memberships, noop)
}

/**
 * The shared (L2) store of the layered cache: versioned, already encoded entries with a TTL, under keys that
 * `LayeredCache` has already hashed. The store does not interpret values; it guarantees only:
 *
 * - `set` keeps the entry with the highest version: a write whose version is not above the stored one (entry or
 *   tombstone) is refused, so a load that finishes late never replaces a newer value.
 * - `delete` leaves a tombstone with its version for `ttlMs`: it reads as absent and refuses older writes. With
 *   `ttlMs` 0 it only removes the entry (used to drop a rejected value without keeping out the reload's write).
 *   Neither removes an entry of a higher version.
 * - An entry (or tombstone) is absent once its TTL has passed, measured on the store's own clock.
 *
 * `layerMemory` keeps entries in a `Map` of this process (time from the Effect `Clock`, so `TestClock` drives it);
 * the Redis store implements the same contract and runs the same suite (`@wedsync/cache/testing`).
 */
import { Clock, Context, Effect, Layer, Option } from "effect"
import type { CacheError } from "./CacheError.ts"

/** A stored value and its version. */
export interface StoreEntry {
  readonly version: number
  readonly value: string
}

export interface CacheStoreShape {
  readonly get: (key: string) => Effect.Effect<Option.Option<StoreEntry>, CacheError>
  /** Writes unless the key holds an entry or tombstone of an equal or higher version; true when written. */
  readonly set: (key: string, entry: StoreEntry, ttlMs: number) => Effect.Effect<boolean, CacheError>
  /** Removes the entry and keeps a tombstone of `version` for `ttlMs`, or none when `ttlMs` is 0 (unless a higher version is stored). */
  readonly delete: (key: string, version: number, ttlMs: number) => Effect.Effect<void, CacheError>
}

interface Slot {
  readonly version: number
  /** `undefined` for a tombstone. */
  readonly value: string | undefined
  readonly expiresAt: number
}

/** A store in a `Map` of this process, reading time from `clock`. Expired slots are removed when they are read. */
export const makeMemory = (clock: Clock.Clock): CacheStoreShape => {
  const slots = new Map<string, Slot>()
  const live = (key: string, now: number): Slot | undefined => {
    const slot = slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= now) {
      slots.delete(key)
      return undefined
    }
    return slot
  }
  return {
    get: (key) =>
      Effect.sync(() => {
        const slot = live(key, clock.currentTimeMillisUnsafe())
        return slot === undefined || slot.value === undefined
          ? Option.none()
          : Option.some({ version: slot.version, value: slot.value })
      }),
    set: (key, entry, ttlMs) =>
      Effect.sync(() => {
        const now = clock.currentTimeMillisUnsafe()
        const slot = live(key, now)
        if (slot !== undefined && slot.version >= entry.version) return false
        slots.set(key, { version: entry.version, value: entry.value, expiresAt: now + ttlMs })
        return true
      }),
    delete: (key, version, ttlMs) =>
      Effect.sync(() => {
        const now = clock.currentTimeMillisUnsafe()
        const slot = live(key, now)
        if (slot !== undefined && slot.version > version) return
        if (ttlMs <= 0) slots.delete(key)
        else slots.set(key, { version, value: undefined, expiresAt: now + ttlMs })
      })
  }
}

export class CacheStore extends Context.Service<CacheStore, CacheStoreShape>()("@wedsync/cache/CacheStore") {
  /** One store per layer build, in this process: the L2 of a single node, and of several simulated nodes in tests. */
  static readonly layerMemory: Layer.Layer<CacheStore> = Layer.effect(
    CacheStore,
    Clock.clockWith((clock) => Effect.succeed(makeMemory(clock)))
  )

  /** No shared store: every read is a miss and every write is discarded (the cache is L1 only). */
  static readonly layerNoop: Layer.Layer<CacheStore> = Layer.succeed(CacheStore, {
    get: () => Effect.succeed(Option.none()),
    set: () => Effect.succeed(false),
    delete: () => Effect.void
  })
}

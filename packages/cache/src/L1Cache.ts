/**
 * The in-process layer: an LRU bounded by entry count and by estimated bytes, each entry with its own fresh and stale
 * deadlines. Plain synchronous code with no Effect in it, so a hit costs a `Map` lookup and a recency bump.
 *
 * Guarantees: `set` never replaces an entry of a higher version; an entry is never returned after its stale
 * deadline; the least recently used entries are evicted first whenever either bound is exceeded, and an entry larger
 * than the byte bound is not kept at all. Expired entries are removed when read or when they reach the LRU end.
 */
import type { Effect } from "effect"
import type * as CacheKind from "./CacheKind.ts"

export interface L1Entry {
  /** The L1 key: `<kind name>:<kind id>:<caller's key>`. */
  readonly key: string
  /** The hashed key in the store and on the bus. */
  readonly storeKey: string
  readonly kind: CacheKind.Name
  readonly version: number
  readonly value: unknown
  /** `Exit.succeed(value)`, built once so that a hit allocates no Effect. */
  readonly exit: Effect.Effect<unknown>
  readonly negative: boolean
  /** Served as fresh until this time (ms). */
  readonly freshUntil: number
  /** Served as stale (and refreshed) until this time (ms); never served after it. */
  readonly staleUntil: number
  readonly bytes: number
  /** When `get` last moved the entry to the most recently used end (ms); see `RECENCY_GRANULARITY_MS`. */
  touchedAt: number
}

/**
 * A hit moves its entry to the most recently used end at most once per this many milliseconds. Moving it is a delete
 * and a re-insert in a `Map` of up to 100,000 entries, whose holes V8 compacts by rehashing the whole table: doing
 * it on every hit of a hot key put a 15-20 µs p99 (and millisecond outliers) on reads that take 2 µs. Eviction order
 * is then exact to within this granularity, which no TTL-bounded cache notices.
 */
export const RECENCY_GRANULARITY_MS = 1_000

export type EvictionReason = "entries" | "bytes" | "expired"

export interface L1Options {
  readonly maxEntries: number
  readonly maxBytes: number
  /** Called for every entry removed by a bound or by expiry (not for `delete` or replacement). */
  readonly onEvict?: ((entry: L1Entry, reason: EvictionReason) => void) | undefined
  /** Called after every change of `size` or `bytes`. */
  readonly onResize?: ((size: number, bytes: number) => void) | undefined
}

export class L1Cache {
  private readonly entries = new Map<string, L1Entry>()
  private readonly byStoreKey = new Map<string, L1Entry>()
  private readonly options: L1Options
  private totalBytes = 0

  constructor(options: L1Options) {
    this.options = options
  }

  get size(): number {
    return this.entries.size
  }

  get bytes(): number {
    return this.totalBytes
  }

  /** The entry of `key` unless it is past its stale deadline at `now`; marks it most recently used. */
  get(key: string, now: number): L1Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (now >= entry.staleUntil) {
      this.remove(entry)
      this.options.onEvict?.(entry, "expired")
      return undefined
    }
    // Map iteration order is insertion order: re-inserting makes this the most recently used entry.
    if (now - entry.touchedAt >= RECENCY_GRANULARITY_MS) {
      entry.touchedAt = now
      this.entries.delete(key)
      this.entries.set(key, entry)
    }
    return entry
  }

  /** The entry stored under a hashed store key, whatever its deadlines, without touching recency. */
  peekByStoreKey(storeKey: string): L1Entry | undefined {
    return this.byStoreKey.get(storeKey)
  }

  /** Keeps `entry` unless an entry of a higher version is there; true when kept. */
  set(entry: L1Entry): boolean {
    const current = this.entries.get(entry.key)
    if (current !== undefined) {
      if (current.version > entry.version) return false
      this.remove(current)
    }
    if (entry.bytes > this.options.maxBytes) {
      this.options.onResize?.(this.entries.size, this.totalBytes)
      return false
    }
    this.entries.set(entry.key, entry)
    this.byStoreKey.set(entry.storeKey, entry)
    this.totalBytes += entry.bytes
    this.evict()
    this.options.onResize?.(this.entries.size, this.totalBytes)
    return true
  }

  /** Removes the entry of `key` when its version is at most `version`; returns it when removed. */
  delete(key: string, version = Number.POSITIVE_INFINITY): L1Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.version > version) return undefined
    this.remove(entry)
    this.options.onResize?.(this.entries.size, this.totalBytes)
    return entry
  }

  clear(): void {
    this.entries.clear()
    this.byStoreKey.clear()
    this.totalBytes = 0
    this.options.onResize?.(0, 0)
  }

  private remove(entry: L1Entry): void {
    this.entries.delete(entry.key)
    if (this.byStoreKey.get(entry.storeKey) === entry) this.byStoreKey.delete(entry.storeKey)
    this.totalBytes -= entry.bytes
  }

  private evict(): void {
    while (this.entries.size > this.options.maxEntries || this.totalBytes > this.options.maxBytes) {
      const reason: EvictionReason = this.entries.size > this.options.maxEntries ? "entries" : "bytes"
      const oldest = this.entries.values().next()
      if (oldest.done === true) return
      this.remove(oldest.value)
      this.options.onEvict?.(oldest.value, reason)
    }
  }
}

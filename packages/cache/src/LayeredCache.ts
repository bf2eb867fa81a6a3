/**
 * The front of the cache: `get(kind, key, loader)` answers from L1 (this process), then from the shared store (L2),
 * then from `loader` (the source of truth), and keeps what it loaded in both.
 *
 * Guarantees:
 * - Single flight: concurrent misses of one key in this process run one L2 read and at most one loader; every caller
 *   gets its result (or its failure, which is not cached).
 * - Stale-while-revalidate: past its TTL, an L1 entry is still served for the kind's stale grace while one background
 *   load refreshes it; after the grace it is a miss.
 * - Negative values (`kind.isNegative`) are cached for the kind's shorter negative TTL.
 * - Versions: every load takes a version when it starts and an invalidation takes a newer one; neither L1 nor the
 *   store lets an older version replace a newer one, so a load that started before an invalidation never brings the
 *   old value back, here or on another process.
 * - Integrity: stored values carry an HMAC over key, version and body; a value that fails it (tampered, or written
 *   under another `CACHE_HMAC_KEY`) or does not decode is a miss, is dropped from the store and is counted. Keys in
 *   the store and on the bus are keyed hashes, never the caller's key.
 * - The store and the bus never fail a caller: each operation is bounded by `storeTimeoutMs`; a failed or slow read
 *   falls through to the loader, a failed write, delete or publish is dropped and counted.
 *
 * It does not refresh entries nobody reads, or retry store writes when the store comes back (the next miss does).
 */
import { HotMetric } from "@wedsync/metrics"
import type { RedisClient } from "@wedsync/redis"
import { Clock, Context, Deferred, Duration, Effect, Exit, FiberSet, Layer, Metric, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { CacheConfig } from "./CacheConfig.ts"
import type { CacheError } from "./CacheError.ts"
import * as CacheKind from "./CacheKind.ts"
import * as CacheMetrics from "./CacheMetrics.ts"
import { CacheStore } from "./CacheStore.ts"
import * as Integrity from "./internal/integrity.ts"
import { InvalidationBus, type Invalidation } from "./InvalidationBus.ts"
import { L1Cache, type L1Entry } from "./L1Cache.ts"

/** What `getUnsafe` returns when L1 has no fresh value. */
export const Miss: unique symbol = Symbol.for("@wedsync/cache/LayeredCache/Miss")
export type Miss = typeof Miss

export interface LayeredCacheShape {
  /**
   * The value of `key` in `kind`: from L1, the store, or `loader` (run once for all concurrent misses).
   *
   * Gotchas: concurrent callers of one key share the first caller's loader and its failure, so every caller of a
   * (kind, key) must pass an equivalent loader. The loader runs in a fiber of the cache (with the first caller's
   * services), so interrupting one caller does not cancel the load for the others.
   */
  readonly get: <A, E, R>(
    kind: CacheKind.CacheKind<A>,
    key: string,
    loader: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /** The fresh L1 value of `key`, or `Miss`: synchronous, no Effect, no metrics, no refresh. */
  readonly getUnsafe: <A>(kind: CacheKind.CacheKind<A>, key: string) => A | Miss
  /**
   * Drops `key` from L1, cancels the caching of loads in flight, deletes it in the store (keeping older writes out
   * for `tombstoneMs`) and tells every other process sharing the bus to drop its L1 copy.
   */
  readonly invalidate: <A>(kind: CacheKind.CacheKind<A>, key: string) => Effect.Effect<void>
  /** Entries and estimated bytes in L1. */
  readonly l1Size: () => { readonly entries: number; readonly bytes: number }
}

interface Flight {
  readonly deferred: Deferred.Deferred<unknown, unknown>
  readonly version: number
  /** Set by an invalidation: the result still reaches the callers already waiting, but is not cached. */
  cancelled: boolean
}

// Fixed part of an entry's size estimate: the entry object, the Map slots and the pre-built Exit.
const ENTRY_OVERHEAD_BYTES = 160

type ByKind<T> = { readonly [K in CacheKind.Name]: T }
const byKind = <T>(f: (kind: CacheKind.Name) => T): ByKind<T> =>
  Object.fromEntries(CacheKind.names.map((kind) => [kind, f(kind)])) as unknown as ByKind<T>

interface StoredBody {
  readonly negative: boolean
  readonly freshUntil: number
  readonly staleUntil: number
  readonly payload: string
}

// `p|n` (positive or negative), fresh deadline, stale deadline (ms since epoch), then the codec's text.
const encodeBody = (negative: boolean, freshUntil: number, staleUntil: number, payload: string): string =>
  `${negative ? "n" : "p"}${freshUntil}:${staleUntil}:${payload}`

const decodeBody = (body: string): StoredBody | undefined => {
  const flag = body.charCodeAt(0)
  if (flag !== 110 /* n */ && flag !== 112 /* p */) return undefined
  const first = body.indexOf(":", 1)
  const second = first < 0 ? -1 : body.indexOf(":", first + 1)
  if (second < 0) return undefined
  const freshUntil = Number(body.slice(1, first))
  const staleUntil = Number(body.slice(first + 1, second))
  if (!Number.isSafeInteger(freshUntil) || !Number.isSafeInteger(staleUntil)) return undefined
  return { negative: flag === 110, freshUntil, staleUntil, payload: body.slice(second + 1) }
}

export const make = Effect.gen(function*() {
  const config = yield* CacheConfig
  const store = yield* CacheStore
  const bus = yield* InvalidationBus
  const clock = yield* Clock.Clock
  const context = yield* Effect.context<never>()
  const runFork = yield* FiberSet.makeRuntime<never, unknown, unknown>()
  const integrity = Integrity.make(Redacted.value(config.hmacKey))
  const origin = randomBytes(9).toString("base64url")
  const storeTimeout = Duration.millis(config.storeTimeoutMs)

  const counter = (metric: HotMetric.CounterMetric, attributes: Record<string, string>) =>
    HotMetric.counterUnsafe(Metric.withAttributes(metric, attributes), context)
  const l1Hits = byKind((kind) => counter(CacheMetrics.hits, { tier: "l1", kind }))
  const l1Misses = byKind((kind) => counter(CacheMetrics.misses, { tier: "l1", kind }))
  const l2Hits = byKind((kind) => counter(CacheMetrics.hits, { tier: "l2", kind }))
  const l2Misses = byKind((kind) => counter(CacheMetrics.misses, { tier: "l2", kind }))
  const staleServed = byKind((kind) => counter(CacheMetrics.staleServed, { kind }))
  const loadFailures = byKind((kind) => counter(CacheMetrics.loadFailures, { kind }))
  const loadDuration = byKind((kind) =>
    HotMetric.histogramUnsafe(Metric.withAttributes(CacheMetrics.loadDuration, { kind }), context)
  )
  const integrityFailures = byKind((kind) => ({
    mac: counter(CacheMetrics.integrityFailures, { kind, reason: "mac" }),
    decode: counter(CacheMetrics.integrityFailures, { kind, reason: "decode" })
  }))
  const invalidations = byKind((kind) => ({
    local: counter(CacheMetrics.invalidations, { kind, event: "local" }),
    remote: counter(CacheMetrics.invalidations, { kind, event: "remote" })
  }))
  const evictions = {
    entries: counter(CacheMetrics.evictions, { reason: "entries" }),
    bytes: counter(CacheMetrics.evictions, { reason: "bytes" }),
    expired: counter(CacheMetrics.evictions, { reason: "expired" })
  }
  const storeFailures = Object.fromEntries(
    CacheMetrics.storeEvents.map((event) => [event, {
      timeout: counter(CacheMetrics.storeFailures, { event, reason: "timeout" }),
      error: counter(CacheMetrics.storeFailures, { event, reason: "error" })
    }])
  ) as {
    readonly [K in (typeof CacheMetrics.storeEvents)[number]]: {
      readonly timeout: HotMetric.HotCounter
      readonly error: HotMetric.HotCounter
    }
  }
  const entriesGauge = HotMetric.gaugeUnsafe(CacheMetrics.l1Entries, context)
  const bytesGauge = HotMetric.gaugeUnsafe(CacheMetrics.l1Bytes, context)

  // The gauges report the last L1 that changed: one cache per process in production.
  const l1 = new L1Cache({
    maxEntries: config.l1MaxEntries,
    maxBytes: config.l1MaxBytes,
    onEvict: (_entry, reason) => evictions[reason].inc(),
    onResize: (entries, bytes) => {
      entriesGauge.set(entries)
      bytesGauge.set(bytes)
    }
  })
  const flights = new Map<string, Flight>()

  // Versions are milliseconds x 1000 plus a sequence, so versions from several processes order by time, and two
  // versions taken in the same millisecond here still differ. Seen versions push it forward, so a process whose clock
  // lags another's still writes above that process's tombstones.
  let lastVersion = 0
  const nextVersion = (): number => {
    lastVersion = Math.max(clock.currentTimeMillisUnsafe() * 1000, lastVersion + 1)
    return lastVersion
  }
  const observeVersion = (version: number): void => {
    if (version > lastVersion && Number.isSafeInteger(version)) lastVersion = version
  }

  const l1KeyOf = (kind: CacheKind.CacheKind<unknown>, key: string): string => kind.name + ":" + kind.id + ":" + key
  const storeKeyOf = (kind: CacheKind.CacheKind<unknown>, key: string): string =>
    `${kind.name}:${kind.id}:${integrity.hashKey(key)}`

  /** Runs a store or bus operation within the timeout; a failure or timeout is counted and becomes `None`. */
  const bounded = <A>(
    event: (typeof CacheMetrics.storeEvents)[number],
    operation: Effect.Effect<A, CacheError>
  ): Effect.Effect<Option.Option<A>> =>
    operation.pipe(
      Effect.timeoutOption(storeTimeout),
      Effect.tap((result) => Effect.sync(() => Option.isNone(result) && storeFailures[event].timeout.inc())),
      Effect.catch(() =>
        Effect.sync(() => {
          storeFailures[event].error.inc()
          return Option.none<A>()
        })
      )
    )

  const entryOf = (
    kind: CacheKind.CacheKind<unknown>,
    l1Key: string,
    storeKey: string,
    version: number,
    value: unknown,
    body: StoredBody
  ): L1Entry => ({
    key: l1Key,
    storeKey,
    kind: kind.name,
    version,
    value,
    exit: Exit.succeed(value),
    negative: body.negative,
    freshUntil: body.freshUntil,
    staleUntil: body.staleUntil,
    bytes: ENTRY_OVERHEAD_BYTES + 2 * (l1Key.length + storeKey.length + body.payload.length),
    // Inserted entries are the most recently used already; the first hit may move one again, once.
    touchedAt: Number.NEGATIVE_INFINITY
  })

  /** A fresh entry of the store, or `undefined`; rejected values are dropped from the store and counted. */
  const readStore = (kind: CacheKind.CacheKind<unknown>, l1Key: string, storeKey: string) =>
    Effect.gen(function*() {
      const read = yield* bounded("read", store.get(storeKey))
      if (Option.isNone(read) || Option.isNone(read.value)) return undefined
      const { version, value } = read.value.value
      const opened = integrity.open(storeKey, version, value)
      const body = opened === undefined ? undefined : decodeBody(opened)
      const decoded = body === undefined ? undefined : kind.codec.decode(body.payload)
      if (body === undefined || decoded === undefined || decoded._tag === "Failure") {
        integrityFailures[kind.name][opened === undefined ? "mac" : "decode"].inc()
        // No tombstone: the reload (a lower version than a forged one, perhaps) must be able to replace it.
        yield* bounded("delete", store.delete(storeKey, version, 0))
        return undefined
      }
      observeVersion(version)
      if (clock.currentTimeMillisUnsafe() >= body.freshUntil) return undefined
      return entryOf(kind, l1Key, storeKey, version, decoded.success, body)
    })

  /** Keeps a loaded value in L1 and writes it to the store. */
  const keep = (kind: CacheKind.CacheKind<unknown>, l1Key: string, storeKey: string, version: number, value: unknown) =>
    Effect.suspend(() => {
      const policy = config.kinds[kind.name]
      const negative = kind.isNegative(value)
      const ttlMs = negative ? policy.negativeTtlMs : policy.ttlMs
      const freshUntil = clock.currentTimeMillisUnsafe() + ttlMs
      const body: StoredBody = {
        negative,
        freshUntil,
        staleUntil: freshUntil + policy.staleMs,
        payload: kind.codec.encode(value)
      }
      l1.set(entryOf(kind, l1Key, storeKey, version, value, body))
      const sealed = integrity.seal(
        storeKey,
        version,
        encodeBody(negative, body.freshUntil, body.staleUntil, body.payload)
      )
      return bounded("write", store.set(storeKey, { version, value: sealed }, ttlMs + policy.staleMs))
    })

  /** Starts the one load of `storeKey`: the store first, then the loader; completes the flight's deferred. */
  const startFlight = <A, E, R>(
    kind: CacheKind.CacheKind<A>,
    l1Key: string,
    storeKey: string,
    loader: Effect.Effect<A, E, R>,
    loaderContext: Context.Context<R>
  ): Flight => {
    const anyKind = kind as CacheKind.CacheKind<unknown>
    const flight: Flight = {
      deferred: Deferred.makeUnsafe<unknown, unknown>(),
      version: nextVersion(),
      cancelled: false
    }
    flights.set(storeKey, flight)
    const load = Effect.gen(function*() {
      const stored = yield* readStore(anyKind, l1Key, storeKey)
      if (stored !== undefined) {
        l2Hits[kind.name].inc()
        if (!flight.cancelled) l1.set(stored)
        return stored.value
      }
      l2Misses[kind.name].inc()
      const started = performance.now()
      const exit = yield* Effect.exit(Effect.provideContext(loader, loaderContext))
      loadDuration[kind.name].observe((performance.now() - started) / 1000)
      if (Exit.isFailure(exit)) {
        loadFailures[kind.name].inc()
        return yield* exit
      }
      if (!flight.cancelled) yield* keep(anyKind, l1Key, storeKey, flight.version, exit.value)
      return exit.value
    })
    runFork(
      load.pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            if (flights.get(storeKey) === flight) flights.delete(storeKey)
            Deferred.doneUnsafe(flight.deferred, exit)
          })
        ),
        Effect.onInterrupt(() => Deferred.interrupt(flight.deferred))
      )
    )
    return flight
  }

  /** Drops L1 entries and cancels flights of `storeKey` older than `version`. */
  const dropLocal = (storeKey: string, version: number): void => {
    const entry = l1.peekByStoreKey(storeKey)
    if (entry !== undefined) l1.delete(entry.key, version)
    const flight = flights.get(storeKey)
    if (flight !== undefined && flight.version < version) {
      flight.cancelled = true
      flights.delete(storeKey)
    }
  }

  const onInvalidation = (invalidation: Invalidation): void => {
    if (invalidation.origin === origin) return
    observeVersion(invalidation.version)
    dropLocal(invalidation.key, invalidation.version)
    if (Object.hasOwn(invalidations, invalidation.kind)) invalidations[invalidation.kind].remote.inc()
  }
  yield* bus.subscribe(onInvalidation).pipe(
    Effect.catch((error) =>
      Effect.andThen(
        Effect.sync(() => storeFailures.subscribe.error.inc()),
        Effect.logWarning(`cache invalidations from other processes are not received: ${error.message}`)
      )
    )
  )

  const get = <A, E, R>(
    kind: CacheKind.CacheKind<A>,
    key: string,
    loader: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const l1Key = kind.name + ":" + kind.id + ":" + key
      const now = clock.currentTimeMillisUnsafe()
      const entry = l1.get(l1Key, now)
      if (entry !== undefined) {
        if (now < entry.freshUntil) {
          l1Hits[kind.name].inc()
          return entry.exit as Effect.Effect<A>
        }
        staleServed[kind.name].inc()
        return Effect.map(Effect.context<R>(), (loaderContext) => {
          const storeKey = storeKeyOf(kind as CacheKind.CacheKind<unknown>, key)
          if (!flights.has(storeKey)) startFlight(kind, l1Key, storeKey, loader, loaderContext)
          return entry.value as A
        })
      }
      l1Misses[kind.name].inc()
      return Effect.flatMap(Effect.context<R>(), (loaderContext) => {
        const storeKey = storeKeyOf(kind as CacheKind.CacheKind<unknown>, key)
        const flight = flights.get(storeKey) ?? startFlight(kind, l1Key, storeKey, loader, loaderContext)
        // The flight of this key was started by a loader of this kind and key, hence of type A and (by the
        // contract of `get`) of an equivalent loader's E.
        return Deferred.await(flight.deferred) as Effect.Effect<A, E>
      })
    })

  const getUnsafe = <A>(kind: CacheKind.CacheKind<A>, key: string): A | Miss => {
    const now = clock.currentTimeMillisUnsafe()
    const entry = l1.get(l1KeyOf(kind as CacheKind.CacheKind<unknown>, key), now)
    return entry !== undefined && now < entry.freshUntil ? (entry.value as A) : Miss
  }

  const invalidate = <A>(kind: CacheKind.CacheKind<A>, key: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const storeKey = storeKeyOf(kind as CacheKind.CacheKind<unknown>, key)
      const version = nextVersion()
      dropLocal(storeKey, version)
      invalidations[kind.name].local.inc()
      return Effect.andThen(
        bounded("delete", store.delete(storeKey, version, config.tombstoneMs)),
        bounded("publish", bus.publish({ kind: kind.name, key: storeKey, version, origin }))
      ).pipe(Effect.asVoid)
    })

  return {
    get,
    getUnsafe,
    invalidate,
    l1Size: () => ({ entries: l1.size, bytes: l1.bytes })
  } satisfies LayeredCacheShape
})

export class LayeredCache extends Context.Service<LayeredCache, LayeredCacheShape>()("@wedsync/cache/LayeredCache") {
  /** Over the given store and bus (`layerRedis` when `REDIS_URL` is set, `layerMemory` otherwise). */
  static readonly layer: Layer.Layer<LayeredCache, never, CacheStore | InvalidationBus | CacheConfig> = Layer.effect(
    LayeredCache,
    make
  )

  /** Over the Redis store and bus of `RedisClient`: L2 and invalidations shared by every process on that Redis. */
  static readonly layerRedis: Layer.Layer<LayeredCache, never, RedisClient.RedisClient | CacheConfig> = LayeredCache
    .layer.pipe(Layer.provide(Layer.merge(CacheStore.layerRedis, InvalidationBus.layerRedis)))

  /** L1 only, for one process: no shared store, invalidations stay in the process. */
  static readonly layerMemory: Layer.Layer<LayeredCache, never, CacheConfig> = LayeredCache.layer.pipe(
    Layer.provide(Layer.merge(CacheStore.layerNoop, InvalidationBus.layerMemory))
  )
}

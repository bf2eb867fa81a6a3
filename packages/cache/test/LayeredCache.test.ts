import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Effect, Fiber, Layer, Metric, Option, Redacted } from "effect"
import { TestClock } from "effect/testing"
import {
  CacheCodec,
  CacheConfig,
  CacheError,
  CacheKind,
  CacheMetrics,
  CacheStore,
  InvalidationBus,
  LayeredCache
} from "../src/index.ts"

const plan = CacheKind.make({ name: "subscription", id: "plan", codec: CacheCodec.string })
const member = CacheKind.make({
  name: "user",
  id: "member",
  codec: CacheCodec.boolean,
  isNegative: (allowed) => !allowed
})
const wedding = CacheKind.make({ name: "wedding", id: "info", codec: CacheCodec.string })
const devices = CacheKind.make({ name: "connection", id: "devices", codec: CacheCodec.string })
const kinds = [plan, wedding, devices] as const

interface Recorded {
  readonly store: CacheStore.CacheStoreShape
  /** Every key written or deleted. */
  readonly keys: Array<string>
}

const recording = (store: CacheStore.CacheStoreShape): Recorded => {
  const keys: Array<string> = []
  return {
    keys,
    store: {
      get: store.get,
      set: (key, entry, ttl) => Effect.andThen(Effect.sync(() => keys.push(key)), store.set(key, entry, ttl)),
      delete: (key, version, ttl) => Effect.andThen(Effect.sync(() => keys.push(key)), store.delete(key, version, ttl))
    }
  }
}

const memoryStore = Clock.clockWith((clock) => Effect.succeed(CacheStore.makeMemory(clock)))

const makeCache = (options: {
  readonly store: CacheStore.CacheStoreShape
  readonly bus?: InvalidationBus.MemoryBus
  readonly hmacKey?: string
  readonly storeTimeoutMs?: number
}) =>
  Effect.gen(function*() {
    const deps = Layer.mergeAll(
      Layer.succeed(CacheStore.CacheStore, options.store),
      InvalidationBus.InvalidationBus.layerMemoryShared(options.bus ?? new InvalidationBus.MemoryBus()),
      CacheConfig.CacheConfig.layer({
        hmacKey: Redacted.make(options.hmacKey ?? "test-hmac-key"),
        storeTimeoutMs: options.storeTimeoutMs ?? 50
      })
    )
    const context = yield* Layer.build(LayeredCache.LayeredCache.layer.pipe(Layer.provide(deps)))
    return Context.get(context, LayeredCache.LayeredCache)
  })

/** A loader that counts its runs and returns the current `truth`. */
const source = <A>(initial: A, delay?: string) => {
  const state = { runs: 0, truth: initial }
  const load = Effect.suspend(() => {
    const run = Effect.sync(() => {
      state.runs++
      return state.truth
    })
    return delay === undefined ? run : Effect.andThen(Effect.sleep(delay as `${number} millis`), run)
  })
  return { state, load }
}

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>, attributes: Record<string, string>) =>
  Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => Number(state.count))

/** Lets forked background loads run to their end (they only wait on the TestClock or on nothing). */
const settle = Effect.repeat(Effect.yieldNow, { times: 20 })

describe("LayeredCache", () => {
  for (const kind of kinds) {
    const policy = CacheConfig.defaults.kinds[kind.name]
    it.effect(`${kind.name}: miss loads, hit does not, expiry after its TTL (${policy.ttlMs / 1000} s) and grace`, () =>
      Effect.gen(function*() {
        const { store } = recording(yield* memoryStore)
        const cache = yield* makeCache({ store })
        const { state, load } = source("v1")
        const l1Hits = yield* count(CacheMetrics.hits, { tier: "l1", kind: kind.name })
        assert.strictEqual(yield* cache.get(kind, "k", load), "v1")
        assert.strictEqual(state.runs, 1)
        yield* TestClock.adjust(policy.ttlMs - 1)
        state.truth = "v2"
        assert.strictEqual(yield* cache.get(kind, "k", load), "v1")
        assert.strictEqual(state.runs, 1)
        assert.strictEqual((yield* count(CacheMetrics.hits, { tier: "l1", kind: kind.name })) - l1Hits, 1)
        // Past the TTL and the stale grace, L1 and the store have both expired.
        yield* TestClock.adjust(policy.staleMs + 2)
        assert.strictEqual(yield* cache.get(kind, "k", load), "v2")
        assert.strictEqual(state.runs, 2)
        // Another process sharing the store gets it from L2 without loading.
        const other = yield* makeCache({ store })
        assert.strictEqual(yield* other.get(kind, "k", load), "v2")
        assert.strictEqual(state.runs, 2)
      }))
  }

  it.effect("user: a negative value is cached for the shorter negative TTL, a positive one for the full TTL", () =>
    Effect.gen(function*() {
      const cache = yield* makeCache({ store: yield* memoryStore })
      const policy = CacheConfig.defaults.kinds.user
      const no = source(false)
      const yes = source(true)
      assert.isFalse(yield* cache.get(member, "u1 x w1", no.load))
      assert.isTrue(yield* cache.get(member, "u2 x w1", yes.load))
      yield* TestClock.adjust(policy.negativeTtlMs - 1)
      assert.isFalse(yield* cache.get(member, "u1 x w1", no.load))
      assert.strictEqual(no.state.runs, 1)
      yield* TestClock.adjust(policy.staleMs + 2)
      no.state.truth = true
      assert.isTrue(yield* cache.get(member, "u1 x w1", no.load))
      assert.strictEqual(no.state.runs, 2)
      assert.isTrue(yield* cache.get(member, "u2 x w1", yes.load))
      assert.strictEqual(yes.state.runs, 1)
    }))

  it.effect("stale-while-revalidate: inside the grace the old value is served while one load refreshes it", () =>
    Effect.gen(function*() {
      const cache = yield* makeCache({ store: yield* memoryStore })
      const policy = CacheConfig.defaults.kinds.wedding
      const { state, load } = source("old", "100 millis")
      const first = yield* Effect.forkChild(cache.get(wedding, "w1", load))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(first), "old")
      const stale = yield* count(CacheMetrics.staleServed, { kind: "wedding" })
      yield* TestClock.adjust(policy.ttlMs)
      state.truth = "new"
      // Served at once, without waiting for the load; three reads start one refresh.
      assert.strictEqual(yield* cache.get(wedding, "w1", load), "old")
      assert.strictEqual(yield* cache.get(wedding, "w1", load), "old")
      assert.strictEqual(yield* cache.get(wedding, "w1", load), "old")
      assert.strictEqual((yield* count(CacheMetrics.staleServed, { kind: "wedding" })) - stale, 3)
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* settle
      assert.strictEqual(state.runs, 2)
      assert.strictEqual(cache.getUnsafe(wedding, "w1"), "new")
      assert.strictEqual(yield* cache.get(wedding, "w1", load), "new")
      // Past the grace an entry is a miss: the caller waits for the load.
      yield* TestClock.adjust(policy.ttlMs + policy.staleMs)
      assert.strictEqual(cache.getUnsafe(wedding, "w1"), LayeredCache.Miss)
      state.truth = "newer"
      const late = yield* Effect.forkChild(cache.get(wedding, "w1", load))
      yield* settle
      assert.isUndefined(late.pollUnsafe())
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(late), "newer")
    }))

  it.effect("single flight: 1,000 concurrent misses of one key run the loader once", () =>
    Effect.gen(function*() {
      const cache = yield* makeCache({ store: yield* memoryStore })
      const { state, load } = source("plan-1", "1000 millis")
      const fiber = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 1000 }, () => cache.get(plan, "binding", load)), { concurrency: "unbounded" })
      )
      yield* settle
      yield* TestClock.adjust("1 second")
      const values = yield* Fiber.join(fiber)
      assert.strictEqual(values.length, 1000)
      assert.isTrue(values.every((v) => v === "plan-1"))
      assert.strictEqual(state.runs, 1)
    }))

  it.effect("single flight: a failure reaches every waiter once and is not cached", () =>
    Effect.gen(function*() {
      const cache = yield* makeCache({ store: yield* memoryStore })
      let runs = 0
      const failing = Effect.andThen(
        Effect.sleep("10 millis"),
        Effect.suspend(() => {
          runs++
          return Effect.fail("database down" as const)
        })
      )
      const fiber = yield* Effect.forkChild(
        Effect.all(Array.from({ length: 10 }, () => Effect.flip(cache.get(plan, "b", failing))), {
          concurrency: "unbounded"
        })
      )
      yield* settle
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), Array.from({ length: 10 }, () => "database down" as const))
      assert.strictEqual(runs, 1)
      assert.strictEqual(yield* cache.get(plan, "b", Effect.succeed("recovered")), "recovered")
    }))

  it.effect("versions: a load that started before an invalidation never replaces the newer value", () =>
    Effect.gen(function*() {
      const { store } = recording(yield* memoryStore)
      const bus = new InvalidationBus.MemoryBus()
      const cache = yield* makeCache({ store, bus })
      let truth = "v1"
      const slow = Effect.andThen(Effect.sleep("10 seconds"), Effect.sync(() => "v1"))
      const fast = Effect.andThen(Effect.sleep("1 second"), Effect.sync(() => truth))
      const early = yield* Effect.forkChild(cache.get(plan, "b", slow))
      yield* settle
      truth = "v2"
      yield* cache.invalidate(plan, "b")
      const fresh = yield* Effect.forkChild(cache.get(plan, "b", fast))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fresh), "v2")
      yield* TestClock.adjust("9 seconds")
      // The early caller asked before the change and gets what it loaded; nobody else sees it again.
      assert.strictEqual(yield* Fiber.join(early), "v1")
      assert.strictEqual(cache.getUnsafe(plan, "b"), "v2")
      const other = yield* makeCache({ store, bus })
      assert.strictEqual(yield* other.get(plan, "b", Effect.die("the store must answer")), "v2")
    }))

  it.effect("versions: a write of an older version than the store's tombstone is refused", () =>
    Effect.gen(function*() {
      const { store } = recording(yield* memoryStore)
      const a = yield* makeCache({ store })
      const b = yield* makeCache({ store })
      // b invalidates while a's load (started earlier) is still running: a keeps its answer out of the store.
      const aLoad = yield* Effect.forkChild(
        a.get(plan, "k", Effect.andThen(Effect.sleep("1 second"), Effect.succeed("old")))
      )
      yield* settle
      yield* TestClock.adjust("1 millis")
      yield* b.invalidate(plan, "k")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(aLoad), "old")
      assert.strictEqual(yield* b.get(plan, "k", Effect.succeed("new")), "new")
    }))

  it.effect("integrity: a tampered or foreign store value is a miss, dropped and counted", () =>
    Effect.gen(function*() {
      const recorded = recording(yield* memoryStore)
      const writer = yield* makeCache({ store: recorded.store })
      assert.strictEqual(yield* writer.get(plan, "b", Effect.succeed("genuine")), "genuine")
      const key = recorded.keys[0]!
      const stored = Option.getOrThrow(yield* recorded.store.get(key))
      const tampered = stored.value.replace("genuine", "attack!")
      assert.notStrictEqual(tampered, stored.value)
      yield* recorded.store.set(key, { version: stored.version + 1, value: tampered }, 60_000)

      const failures = yield* count(CacheMetrics.integrityFailures, { kind: "subscription", reason: "mac" })
      const reader = yield* makeCache({ store: recorded.store })
      assert.strictEqual(yield* reader.get(plan, "b", Effect.succeed("reloaded")), "reloaded")
      assert.strictEqual(
        (yield* count(CacheMetrics.integrityFailures, { kind: "subscription", reason: "mac" })) - failures,
        1
      )
      // The tampered value is gone; the reload's value replaced it.
      const third = yield* makeCache({ store: recorded.store })
      assert.strictEqual(yield* third.get(plan, "b", Effect.die("must come from the store")), "reloaded")

      // A value authenticated under another HMAC key (another deployment) is foreign: same handling.
      const foreign = yield* makeCache({ store: recorded.store, hmacKey: "another-deployment" })
      yield* foreign.get(plan, "b", Effect.succeed("theirs"))
      const theirs = Option.getOrThrow(yield* recorded.store.get(recorded.keys.at(-1)!))
      assert.notStrictEqual(recorded.keys.at(-1), key)
      yield* recorded.store.set(key, { version: theirs.version + 10, value: theirs.value }, 60_000)
      const fourth = yield* makeCache({ store: recorded.store })
      assert.strictEqual(yield* fourth.get(plan, "b", Effect.succeed("mine")), "mine")
      assert.strictEqual(
        (yield* count(CacheMetrics.integrityFailures, { kind: "subscription", reason: "mac" })) - failures,
        2
      )
    }))

  it.effect("keys and bus messages never carry the caller's key in plain text", () =>
    Effect.gen(function*() {
      const recorded = recording(yield* memoryStore)
      const bus = new InvalidationBus.MemoryBus()
      const seen: Array<string> = []
      bus.join((invalidation) => seen.push(JSON.stringify(invalidation)))
      const cache = yield* makeCache({ store: recorded.store, bus })
      const secret = "user-3f2a@example.com"
      yield* cache.get(member, secret, Effect.succeed(true))
      yield* cache.invalidate(member, secret)
      assert.isAbove(recorded.keys.length, 1)
      assert.isAbove(seen.length, 0)
      for (const text of [...recorded.keys, ...seen]) {
        assert.notInclude(text, "3f2a")
        assert.notInclude(text, "example")
      }
      assert.match(recorded.keys[0]!, /^user:member:[A-Za-z0-9_-]{22}$/)
    }))

  it.effect("a slow store: reads fall back to the loader within the timeout, writes are dropped and counted", () =>
    Effect.gen(function*() {
      const never: CacheStore.CacheStoreShape = {
        get: () => Effect.never,
        set: () => Effect.never,
        delete: () => Effect.never
      }
      const cache = yield* makeCache({ store: never, storeTimeoutMs: 50 })
      const readTimeouts = yield* count(CacheMetrics.storeFailures, { event: "read", reason: "timeout" })
      const writeTimeouts = yield* count(CacheMetrics.storeFailures, { event: "write", reason: "timeout" })
      const { state, load } = source("from-db")
      const fiber = yield* Effect.forkChild(cache.get(plan, "b", load))
      yield* settle
      yield* TestClock.adjust("50 millis")
      yield* settle
      assert.strictEqual(state.runs, 1)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "from-db")
      assert.strictEqual(
        (yield* count(CacheMetrics.storeFailures, { event: "read", reason: "timeout" })) - readTimeouts,
        1
      )
      assert.strictEqual(
        (yield* count(CacheMetrics.storeFailures, { event: "write", reason: "timeout" })) - writeTimeouts,
        1
      )
      // L1 still serves.
      assert.strictEqual(yield* cache.get(plan, "b", Effect.die("L1 must answer")), "from-db")
      // An invalidation against the dead store returns within the timeouts too.
      const inv = yield* Effect.forkChild(cache.invalidate(plan, "b"))
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(inv)
    }))

  it.effect("a failing store: every operation's error is absorbed and counted", () =>
    Effect.gen(function*() {
      const down = Effect.fail(CacheError.unavailable("connect", new Error("ECONNREFUSED")))
      const failing: CacheStore.CacheStoreShape = { get: () => down, set: () => down, delete: () => down }
      const cache = yield* makeCache({ store: failing })
      const readErrors = yield* count(CacheMetrics.storeFailures, { event: "read", reason: "error" })
      assert.strictEqual(yield* cache.get(plan, "b", Effect.succeed("ok")), "ok")
      yield* cache.invalidate(plan, "b")
      assert.strictEqual((yield* count(CacheMetrics.storeFailures, { event: "read", reason: "error" })) - readErrors, 1)
    }))

  it.effect("two instances on one store and bus: an invalidation on one drops the other's L1", () =>
    Effect.gen(function*() {
      const store = yield* memoryStore
      const bus = new InvalidationBus.MemoryBus()
      const a = yield* makeCache({ store, bus })
      const b = yield* makeCache({ store, bus })
      const { state, load } = source("v1")
      assert.strictEqual(yield* a.get(wedding, "w9", load), "v1")
      assert.strictEqual(yield* b.get(wedding, "w9", load), "v1")
      assert.strictEqual(state.runs, 1)
      assert.strictEqual(b.getUnsafe(wedding, "w9"), "v1")
      const remote = yield* count(CacheMetrics.invalidations, { kind: "wedding", event: "remote" })
      state.truth = "v2"
      yield* TestClock.adjust("1 millis")
      yield* a.invalidate(wedding, "w9")
      assert.strictEqual(b.getUnsafe(wedding, "w9"), LayeredCache.Miss)
      assert.strictEqual(a.getUnsafe(wedding, "w9"), LayeredCache.Miss)
      assert.strictEqual((yield* count(CacheMetrics.invalidations, { kind: "wedding", event: "remote" })) - remote, 1)
      assert.strictEqual(yield* b.get(wedding, "w9", load), "v2")
      assert.strictEqual(yield* a.get(wedding, "w9", load), "v2")
      assert.strictEqual(state.runs, 2)
    }))

  it.effect("layerMemory: L1 only, and the same answers", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        LayeredCache.LayeredCache.layerMemory.pipe(Layer.provide(CacheConfig.CacheConfig.layer()))
      )
      const cache = Context.get(context, LayeredCache.LayeredCache)
      const { state, load } = source("x")
      assert.strictEqual(yield* cache.get(devices, "supplier-1", load), "x")
      assert.strictEqual(yield* cache.get(devices, "supplier-1", load), "x")
      assert.strictEqual(state.runs, 1)
      yield* cache.invalidate(devices, "supplier-1")
      assert.strictEqual(yield* cache.get(devices, "supplier-1", load), "x")
      assert.strictEqual(state.runs, 2)
      assert.strictEqual(cache.l1Size().entries, 1)
    }))
})

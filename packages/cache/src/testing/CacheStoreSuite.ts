/**
 * The contract every `CacheStore` and every `InvalidationBus` must meet, run on the real clock so that a store with
 * its own clock (Redis) answers to the same tests as the memory one: versioned writes (an older or equal version
 * never replaces a newer entry or tombstone), tombstones, TTLs, values kept byte for byte; for the bus, delivery to
 * every member (the publisher's own subscription included), publish order, and silence after release.
 *
 * Waits for bus deliveries fail with a clear message after `timeoutMs` of real time. TTL tests sleep a little longer
 * than the TTL: expiry is the one thing there is no event for.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { CacheStore, type CacheStoreShape } from "../CacheStore.ts"
import { InvalidationBus, type Invalidation, type InvalidationBusShape } from "../InvalidationBus.ts"

export interface SuiteOptions {
  /** Real-time limit of each wait for a delivery; default 2000 ms. */
  readonly timeoutMs?: number
}

/** Registers the store suite. `makeStore()` is called once per test: each test gets an empty store (or prefix). */
export const CacheStoreSuite = <E>(name: string, makeStore: () => Layer.Layer<CacheStore, E>) => {
  const build = Effect.gen(function*() {
    const context = yield* Layer.build(Layer.fresh(makeStore()))
    return Context.get(context, CacheStore)
  })
  const value = (store: CacheStoreShape, key: string) =>
    Effect.map(store.get(key), Option.map((entry) => [entry.version, entry.value] as const))

  describe(`CacheStoreSuite (${name})`, () => {
    it.live("a missing key reads as absent; a written entry reads back with its version, byte for byte", () =>
      Effect.gen(function*() {
        const store = yield* build
        assert.isTrue(Option.isNone(yield* store.get("k:missing")))
        const text = 'mac.p1:2:{"a":"ü ☃ \\n :","b":[1,2]}\u0000end'
        assert.isTrue(yield* store.set("k:one", { version: 7, value: text }, 10_000))
        assert.deepStrictEqual(yield* value(store, "k:one"), Option.some([7, text] as const))
        assert.isTrue(Option.isNone(yield* store.get("k:other")))
      }))

    it.live("a write of an older or equal version is refused; a newer one replaces", () =>
      Effect.gen(function*() {
        const store = yield* build
        assert.isTrue(yield* store.set("k:v", { version: 10, value: "ten" }, 10_000))
        assert.isFalse(yield* store.set("k:v", { version: 9, value: "nine" }, 10_000))
        assert.isFalse(yield* store.set("k:v", { version: 10, value: "ten again" }, 10_000))
        assert.deepStrictEqual(yield* value(store, "k:v"), Option.some([10, "ten"] as const))
        assert.isTrue(yield* store.set("k:v", { version: 11, value: "eleven" }, 10_000))
        assert.deepStrictEqual(yield* value(store, "k:v"), Option.some([11, "eleven"] as const))
      }))

    it.live("delete leaves a tombstone: absent, and older writes stay out until it expires", () =>
      Effect.gen(function*() {
        const store = yield* build
        yield* store.set("k:t", { version: 5, value: "five" }, 10_000)
        yield* store.delete("k:t", 8, 10_000)
        assert.isTrue(Option.isNone(yield* store.get("k:t")))
        assert.isFalse(yield* store.set("k:t", { version: 7, value: "late" }, 10_000))
        assert.isFalse(yield* store.set("k:t", { version: 8, value: "same" }, 10_000))
        assert.isTrue(Option.isNone(yield* store.get("k:t")))
        assert.isTrue(yield* store.set("k:t", { version: 9, value: "nine" }, 10_000))
        assert.deepStrictEqual(yield* value(store, "k:t"), Option.some([9, "nine"] as const))
        // A tombstone of a missing key also keeps older writes out.
        yield* store.delete("k:never", 3, 10_000)
        assert.isFalse(yield* store.set("k:never", { version: 2, value: "old" }, 10_000))
      }))

    it.live("delete of an older version than the stored entry leaves the entry", () =>
      Effect.gen(function*() {
        const store = yield* build
        yield* store.set("k:d", { version: 20, value: "twenty" }, 10_000)
        yield* store.delete("k:d", 19, 10_000)
        yield* store.delete("k:d", 19, 0)
        assert.deepStrictEqual(yield* value(store, "k:d"), Option.some([20, "twenty"] as const))
      }))

    it.live("delete with no tombstone removes the entry and lets any later write in", () =>
      Effect.gen(function*() {
        const store = yield* build
        yield* store.set("k:z", { version: 50, value: "fifty" }, 10_000)
        yield* store.delete("k:z", 50, 0)
        assert.isTrue(Option.isNone(yield* store.get("k:z")))
        assert.isTrue(yield* store.set("k:z", { version: 3, value: "three" }, 10_000))
        assert.deepStrictEqual(yield* value(store, "k:z"), Option.some([3, "three"] as const))
      }))

    it.live("entries and tombstones are gone after their TTL", () =>
      Effect.gen(function*() {
        const store = yield* build
        yield* store.set("k:short", { version: 1, value: "short" }, 50)
        yield* store.set("k:long", { version: 1, value: "long" }, 10_000)
        yield* store.delete("k:tomb", 100, 50)
        yield* Effect.sleep("150 millis")
        assert.isTrue(Option.isNone(yield* store.get("k:short")))
        assert.deepStrictEqual(yield* value(store, "k:long"), Option.some([1, "long"] as const))
        assert.isTrue(yield* store.set("k:tomb", { version: 1, value: "after" }, 10_000))
        assert.isTrue(yield* store.set("k:short", { version: 1, value: "again" }, 10_000))
      }))
  })
}

class Inbox {
  readonly received: Array<Invalidation> = []
  private readonly waiters = new Set<() => void>()
  private readonly label: string
  private readonly timeoutMs: number

  constructor(label: string, timeoutMs: number) {
    this.label = label
    this.timeoutMs = timeoutMs
  }

  readonly push = (invalidation: Invalidation): void => {
    this.received.push(invalidation)
    for (const waiter of [...this.waiters]) waiter()
  }

  keys(): Array<string> {
    return this.received.map((i) => i.key)
  }

  until(what: string, predicate: (received: ReadonlyArray<Invalidation>) => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (predicate(this.received)) return resume(Effect.void)
      const check = () => {
        if (!predicate(this.received)) return
        cleanup()
        resume(Effect.void)
      }
      const timer = setTimeout(() => {
        cleanup()
        resume(
          Effect.die(new Error(`${this.label}: timed out waiting for ${what}; received [${this.keys().join(", ")}]`))
        )
      }, this.timeoutMs)
      const cleanup = () => {
        this.waiters.delete(check)
        clearTimeout(timer)
      }
      this.waiters.add(check)
      return Effect.sync(cleanup)
    })
  }
}

interface Member {
  readonly bus: InvalidationBusShape
  readonly inbox: Inbox
  readonly release: Effect.Effect<void>
}

const invalidation = (key: string, version = 1): Invalidation => ({ kind: "user", key, version, origin: "suite" })

/**
 * Registers the bus suite. `makeBuses(n)` is called once per test and returns the layers of `n` members of one
 * fresh bus (a new `MemoryBus`, or a new Redis channel prefix).
 */
export const InvalidationBusSuite = <E>(
  name: string,
  makeBuses: (members: number) => ReadonlyArray<Layer.Layer<InvalidationBus, E>>,
  options: SuiteOptions = {}
) => {
  const timeoutMs = options.timeoutMs ?? 2000
  const members = (count: number) =>
    Effect.gen(function*() {
      const layers = makeBuses(count)
      assert.strictEqual(layers.length, count, "makeBuses must return one layer per member")
      const out: Array<Member> = []
      for (const [i, layer] of layers.entries()) {
        const bus = Context.get(yield* Layer.build(Layer.fresh(layer)), InvalidationBus)
        const inbox = new Inbox(`member ${String.fromCharCode(65 + i)}`, timeoutMs)
        const scope = yield* Scope.make()
        yield* bus.subscribe(inbox.push).pipe(Scope.provide(scope))
        out.push({ bus, inbox, release: Scope.close(scope, Exit.void) })
      }
      return out
    })

  describe(`InvalidationBusSuite (${name})`, () => {
    it.live("an invalidation reaches every member, the publisher included, with every field", () =>
      Effect.gen(function*() {
        const [a, b, c] = yield* members(3)
        const sent: Invalidation = {
          kind: "wedding",
          key: "wedding:w1:Zm9vYmFy",
          version: 1_700_000_000_000_123,
          origin: "node-a"
        }
        yield* a!.bus.publish(sent)
        for (const member of [a!, b!, c!]) {
          yield* member.inbox.until("the invalidation", (r) => r.length >= 1)
          assert.deepStrictEqual(member.inbox.received, [sent])
        }
      }))

    it.live("invalidations from one member arrive in publish order", () =>
      Effect.gen(function*() {
        const [a, b] = yield* members(2)
        const count = 100
        for (let n = 0; n < count; n++) yield* a!.bus.publish(invalidation(`k${n}`, n + 1))
        yield* b!.inbox.until(`${count} invalidations`, (r) => r.length >= count)
        assert.deepStrictEqual(b!.inbox.keys(), Array.from({ length: count }, (_, n) => `k${n}`))
      }))

    it.live("a released subscription receives nothing more; the others still do", () =>
      Effect.gen(function*() {
        const [a, b, c] = yield* members(3)
        yield* a!.bus.publish(invalidation("before"))
        yield* b!.inbox.until("the first", (r) => r.length >= 1)
        yield* c!.inbox.until("the first", (r) => r.length >= 1)
        yield* b!.release
        yield* a!.bus.publish(invalidation("after"))
        yield* a!.bus.publish(invalidation("marker"))
        yield* c!.inbox.until("the marker", (r) => r.some((i) => i.key === "marker"))
        assert.deepStrictEqual(c!.inbox.keys(), ["before", "after", "marker"])
        assert.deepStrictEqual(b!.inbox.keys(), ["before"])
      }))
  })
}

import { assert, describe, it } from "vitest"
import { Exit } from "effect"
import { L1Cache } from "../src/index.ts"

const entry = (
  key: string,
  options: { version?: number; bytes?: number; staleUntil?: number } = {}
): L1Cache.L1Entry => ({
  key,
  storeKey: `s:${key}`,
  kind: "user",
  version: options.version ?? 1,
  value: key,
  exit: Exit.succeed(key),
  negative: false,
  freshUntil: 100,
  staleUntil: options.staleUntil ?? 200,
  bytes: options.bytes ?? 10,
  touchedAt: Number.NEGATIVE_INFINITY
})

const make = (maxEntries: number, maxBytes: number) => {
  const evicted: Array<string> = []
  const cache = new L1Cache.L1Cache({
    maxEntries,
    maxBytes,
    onEvict: (e, reason) => evicted.push(`${e.key}:${reason}`)
  })
  return { cache, evicted }
}

describe("L1Cache", () => {
  it("moves a hit entry to the recent end at most once per RECENCY_GRANULARITY_MS", () => {
    const { cache, evicted } = make(2, 1000)
    cache.set(entry("a", { staleUntil: 10_000 }))
    cache.set(entry("b", { staleUntil: 10_000 }))
    cache.get("a", 0) // first hit: a becomes the most recent
    cache.get("b", 1) // first hit: b becomes the most recent
    cache.get("a", 2) // within the granularity of a's last move: order stays b, a → a is older
    cache.set(entry("c", { staleUntil: 10_000 }))
    assert.deepStrictEqual(evicted, ["a:entries"])
    cache.get("b", 1 + L1Cache.RECENCY_GRANULARITY_MS) // a full granularity later: b moves after c
    cache.set(entry("d", { staleUntil: 10_000 }))
    assert.deepStrictEqual(evicted, ["a:entries", "c:entries"])
  })

  it("evicts the least recently used entry past the entry bound", () => {
    const { cache, evicted } = make(2, 1000)
    cache.set(entry("a"))
    cache.set(entry("b"))
    cache.get("a", 0)
    cache.set(entry("c"))
    assert.deepStrictEqual(evicted, ["b:entries"])
    assert.isDefined(cache.get("a", 0))
    assert.isUndefined(cache.get("b", 0))
    assert.strictEqual(cache.size, 2)
  })

  it("evicts past the byte bound and does not keep an entry larger than the bound", () => {
    const { cache, evicted } = make(100, 25)
    cache.set(entry("a"))
    cache.set(entry("b"))
    cache.set(entry("c"))
    assert.deepStrictEqual(evicted, ["a:bytes"])
    assert.strictEqual(cache.bytes, 20)
    assert.isFalse(cache.set(entry("huge", { bytes: 26 })))
    assert.isUndefined(cache.get("huge", 0))
    assert.strictEqual(cache.bytes, 20)
  })

  it("never returns an entry at or past its stale deadline", () => {
    const { cache, evicted } = make(10, 1000)
    cache.set(entry("a", { staleUntil: 50 }))
    assert.isDefined(cache.get("a", 49))
    assert.isUndefined(cache.get("a", 50))
    assert.deepStrictEqual(evicted, ["a:expired"])
    assert.strictEqual(cache.size, 0)
    assert.strictEqual(cache.bytes, 0)
  })

  it("keeps the higher version: an older set is refused, delete honours the version", () => {
    const { cache } = make(10, 1000)
    assert.isTrue(cache.set(entry("a", { version: 5 })))
    assert.isFalse(cache.set(entry("a", { version: 4 })))
    assert.strictEqual(cache.get("a", 0)?.version, 5)
    assert.isTrue(cache.set(entry("a", { version: 6 })))
    assert.isUndefined(cache.delete("a", 5))
    assert.strictEqual(cache.peekByStoreKey("s:a")?.version, 6)
    assert.strictEqual(cache.delete("a", 6)?.version, 6)
    assert.isUndefined(cache.peekByStoreKey("s:a"))
    assert.strictEqual(cache.bytes, 0)
  })
})

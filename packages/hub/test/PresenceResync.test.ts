import { assert, describe, it } from "@effect/vitest"
import { PresenceResync } from "../src/index.ts"

interface E {
  readonly ref: string
  readonly meta: string
}
const e = (ref: string, meta = ref): E => ({ ref, meta })
const refs = (entries: Iterable<E>) => [...entries].map((entry) => entry.ref).sort()
const byRef = (...entries: Array<E>) => new Map(entries.map((entry) => [entry.ref, entry] as const))

describe("PresenceResync", () => {
  it("replay: diffs read before or after the snapshot give the same entries (a ref applies once)", () => {
    const diffs = [{ joins: [e("b")], leaves: ["a"] }, { joins: [e("c")], leaves: [] }]
    // The snapshot was read before the diffs were written to Redis, after them, or between the two.
    const before = PresenceResync.replay([e("a"), e("x")], diffs)
    const after = PresenceResync.replay([e("b"), e("c"), e("x")], diffs)
    const between = PresenceResync.replay([e("b"), e("x")], diffs)
    for (const result of [before, after, between]) assert.deepStrictEqual(refs(result.values()), ["b", "c", "x"])
    // A leave after its join, both while the snapshot was read: gone whether or not the snapshot had it.
    const churn = [{ joins: [e("d")], leaves: [] }, { joins: [], leaves: ["d"] }]
    assert.deepStrictEqual(refs(PresenceResync.replay([e("d")], churn).values()), [])
    assert.deepStrictEqual(refs(PresenceResync.replay([], churn).values()), [])
  })

  it("difference: the entries missed on either side, by ref; the same entries give no change at all", () => {
    const current = byRef(e("kept"), e("ghost"))
    const target = byRef(e("kept", "as read"), e("missed"))
    const change = PresenceResync.difference(current, target)
    assert.deepStrictEqual(refs(change.joins), ["missed"])
    assert.deepStrictEqual(change.leaves, [e("ghost")])
    // No flapping: nothing changed, nothing to send (a ref's meta never changes, so `kept` is not re-sent).
    assert.deepStrictEqual(PresenceResync.difference(current, byRef(e("kept"), e("ghost"))), { joins: [], leaves: [] })
    assert.deepStrictEqual(PresenceResync.difference(new Map(), new Map()), { joins: [], leaves: [] })
  })
})

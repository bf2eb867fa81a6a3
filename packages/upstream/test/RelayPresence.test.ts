/**
 * A relay's presence aggregate: this process's entries become one upstream entry, another relay's aggregate is
 * unpacked into its entries (joins and leaves as it changes), this process's own is skipped, and an aggregate sent by
 * a stranger is read only in its shape, bounded, with prototype-named keys as plain keys.
 */
import { assert, describe, it } from "@effect/vitest"
import * as RelayPresence from "../src/RelayPresence.ts"
import type { PresenceEntries } from "../src/UpstreamPool.ts"

const ME = "node-me"
const OTHER = "node-other"

const group = (key: string, ...metas: ReadonlyArray<Record<string, unknown>>): PresenceEntries => {
  const out: PresenceEntries = Object.create(null)
  out[key] = { metas }
  return out
}
const none: PresenceEntries = Object.create(null)

/** An aggregate meta as the upstream sends it back, under the relay channel's own ref. */
const aggregate = (node: string, ref: string, entries: ReadonlyArray<readonly [string, string]>) => ({
  [RelayPresence.RELAY_FIELD]: node,
  entries: entries.map(([key, entryRef]) => [key, { phx_ref: entryRef, who: key }]),
  phx_ref: ref
})

const keysOf = (metas: Record<string, unknown> | undefined) => Object.keys(metas ?? {}).sort()

describe("RelayPresence", () => {
  it("this process's diffs make its aggregate; none once its entries are gone", () => {
    const p = new RelayPresence.TopicPresence()
    assert.strictEqual(p.aggregate(ME), undefined)
    const joins = JSON.stringify({ joins: { alice: { metas: [{ phx_ref: "r1", who: "alice" }] } }, leaves: {} })
    assert.isTrue(p.applyLocal(joins))
    assert.deepStrictEqual(p.aggregate(ME), {
      [RelayPresence.RELAY_FIELD]: ME,
      entries: [["alice", { phx_ref: "r1", who: "alice" }]]
    })
    assert.isFalse(p.applyLocal("not json"))
    assert.isTrue(p.applyLocal(JSON.stringify({ joins: {}, leaves: { alice: { metas: [{ phx_ref: "r1" }] } } })))
    assert.strictEqual(p.aggregate(ME), undefined)
  })

  it("another relay's aggregate is unpacked; this process's own is skipped", () => {
    const p = new RelayPresence.TopicPresence()
    assert.strictEqual(p.applyUpstream(ME, group("k-me", aggregate(ME, "a1", [["alice", "r1"]])), none), undefined)
    const diff = p.applyUpstream(ME, group("k-other", aggregate(OTHER, "b1", [["bob", "r2"]])), none)
    assert.deepStrictEqual(keysOf(diff?.joins), ["bob"])
    assert.deepStrictEqual(keysOf(p.state(group("k-other", aggregate(OTHER, "b1", [["bob", "r2"]])))), ["bob"])
    // A plain upstream entry (a phone on the project) passes as it is.
    const phone = p.applyUpstream(ME, group("phone", { phx_ref: "p1", who: "phone" }), none)
    assert.deepStrictEqual(keysOf(phone?.joins), ["phone"])
  })

  it("an aggregate replaced upstream yields only what changed; its old meta's leave is no leave; its last one is", () => {
    const p = new RelayPresence.TopicPresence()
    p.applyUpstream(ME, group("k", aggregate(OTHER, "b1", [["bob", "r2"], ["carol", "r3"]])), none)
    const replaced = p.applyUpstream(ME, group("k", aggregate(OTHER, "b2", [["carol", "r3"], ["dave", "r4"]])), none)
    assert.deepStrictEqual(keysOf(replaced?.joins), ["dave"])
    assert.deepStrictEqual(keysOf(replaced?.leaves), ["bob"])
    assert.strictEqual(p.applyUpstream(ME, none, group("k", aggregate(OTHER, "b1", []))), undefined)
    const gone = p.applyUpstream(ME, none, group("k", aggregate(OTHER, "b2", [])))
    assert.deepStrictEqual(keysOf(gone?.leaves), ["carol", "dave"])
    assert.deepStrictEqual(keysOf(p.state(none)), [])
  })

  it("a stranger's aggregate is read in its shape only, bounded, prototype names as plain keys", () => {
    const p = new RelayPresence.TopicPresence()
    const entries: Array<unknown> = [
      ["__proto__", { phx_ref: "x1" }],
      ["constructor", { phx_ref: "x2" }],
      ["no-ref", {}],
      [42, { phx_ref: "x3" }],
      "not an entry",
      ["valid", { phx_ref: "x4" }]
    ]
    for (let i = 0; i < RelayPresence.MAX_RELAYED_ENTRIES + 10; i++) entries.push([`k${i}`, { phx_ref: `f${i}` }])
    const meta = { [RelayPresence.RELAY_FIELD]: OTHER, entries, phx_ref: "s1" }
    const diff = p.applyUpstream(ME, group("stranger", meta), none)
    const joined = diff?.joins ?? {}
    assert.strictEqual(Object.getPrototypeOf(joined), null)
    assert.deepStrictEqual(Object.keys(joined).slice(0, 3), ["__proto__", "constructor", "valid"])
    assert.strictEqual(Object.keys(joined).length, RelayPresence.MAX_RELAYED_ENTRIES)
    assert.isUndefined(joined["no-ref"])
  })
})

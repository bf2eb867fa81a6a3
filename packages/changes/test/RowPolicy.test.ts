import { assert, describe, it } from "@effect/vitest"
import { Memberships } from "@wedsync/auth"
import { Effect } from "effect"
import { RowPolicy, sameScope, scopeOf } from "../src/RowPolicy.ts"

const access = (role: string, weddingIds: ReadonlyArray<string> = [], supplierIds: ReadonlyArray<string> = []) => ({
  role,
  weddingIds: new Set(weddingIds),
  supplierIds: new Set(supplierIds)
})

/** A membership set that counts lookups, to show decisions are cached. */
class CountingSet extends Set<string> {
  lookups = 0
  override has(value: string): boolean {
    this.lookups++
    return super.has(value)
  }
}

const timeline = new Set(["id", "wedding_id", "title"])
const supplierTasks = new Set(["id", "supplier_id", "task"])
const notes = new Set(["id", "body"])

describe("scopeOf", () => {
  it("scopes a row by wedding_id, else supplier_id, else not at all", () => {
    assert.deepStrictEqual(scopeOf(timeline, { id: 1, wedding_id: "w-1" }), { _tag: "Wedding", id: "w-1" })
    assert.deepStrictEqual(scopeOf(timeline, { id: 1, wedding_id: 42 }), { _tag: "Wedding", id: "42" })
    assert.deepStrictEqual(scopeOf(supplierTasks, { id: 1, supplier_id: "s-9" }), { _tag: "Supplier", id: "s-9" })
    assert.deepStrictEqual(scopeOf(notes, { id: 1, body: "x" }), { _tag: "Unscoped" })
  })

  it("is Unknown when a scoped table's row image lacks the column (a DELETE with the PK only)", () => {
    assert.deepStrictEqual(scopeOf(timeline, { id: 1 }), { _tag: "Unknown" })
    assert.deepStrictEqual(scopeOf(timeline, undefined), { _tag: "Unknown" })
    assert.deepStrictEqual(scopeOf(timeline, { id: 1, wedding_id: null }), { _tag: "Unknown" })
  })
})

describe("RowPolicy", () => {
  const policy = new RowPolicy("service_role")

  it("lets members of the row's wedding or supplier see it, restricted; everyone else is denied", () => {
    assert.strictEqual(policy.decide(access("authenticated", ["w-1"]), { _tag: "Wedding", id: "w-1" }), "restricted")
    assert.strictEqual(policy.decide(access("authenticated", ["w-2"]), { _tag: "Wedding", id: "w-1" }), "denied")
    assert.strictEqual(
      policy.decide(access("authenticated", [], ["s-9"]), { _tag: "Supplier", id: "s-9" }),
      "restricted"
    )
    assert.strictEqual(policy.decide(access("authenticated", ["s-9"]), { _tag: "Supplier", id: "s-9" }), "denied")
    assert.strictEqual(policy.decide(access("anon"), { _tag: "Wedding", id: "w-1" }), "denied")
  })

  it("gives service_role everything in full, including rows whose scope is unknown", () => {
    assert.strictEqual(policy.decide(access("service_role"), { _tag: "Wedding", id: "w-1" }), "full")
    assert.strictEqual(policy.decide(access("service_role"), { _tag: "Unknown" }), "full")
    assert.strictEqual(policy.decide(access("service_role"), { _tag: "Unscoped" }), "full")
    assert.strictEqual(policy.decide(access("authenticated", ["w-1"]), { _tag: "Unknown" }), "denied")
  })

  it("applies the configured rule to unscoped tables", () => {
    const user = access("authenticated")
    assert.strictEqual(new RowPolicy("service_role").decide(user, { _tag: "Unscoped" }), "denied")
    assert.strictEqual(new RowPolicy("authenticated").decide(user, { _tag: "Unscoped" }), "restricted")
    assert.strictEqual(new RowPolicy("authenticated").decide(access("anon"), { _tag: "Unscoped" }), "denied")
    assert.strictEqual(new RowPolicy("all").decide(access("anon"), { _tag: "Unscoped" }), "restricted")
  })

  it("decides once per (token, wedding): the cached decision is reused", () => {
    const cached = new RowPolicy("service_role")
    const weddingIds = new CountingSet(["w-1"])
    const counting = { role: "authenticated", supplierIds: new Set<string>(), weddingIds }
    for (let i = 0; i < 200; i++)
      assert.strictEqual(cached.decide(counting, { _tag: "Wedding", id: "w-1" }), "restricted")
    assert.strictEqual(cached.decide(counting, { _tag: "Wedding", id: "w-2" }), "denied")
    assert.strictEqual(weddingIds.lookups, 2)
  })

  it("tells a row that moved to another wedding or supplier from one that stayed", () => {
    const before = scopeOf(timeline, { id: 1, wedding_id: "B" })
    assert.strictEqual(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: "B", title: "x" })), true)
    assert.strictEqual(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: "A" })), false)
    assert.strictEqual(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: null })), false)
    assert.strictEqual(
      sameScope(scopeOf(supplierTasks, { supplier_id: "s-1" }), scopeOf(supplierTasks, { supplier_id: "s-2" })),
      false
    )
    assert.strictEqual(sameScope({ _tag: "Wedding", id: "1" }, { _tag: "Supplier", id: "1" }), false)
    assert.strictEqual(sameScope(scopeOf(notes, { id: 1 }), scopeOf(notes, { id: 2 })), true)
  })
})

describe("RowPolicy and token expiry", () => {
  it("denies every row to an access whose exp has passed at the transaction's time; before it, the membership decides", () => {
    const policy = new RowPolicy("all")
    const guest = { ...access("authenticated", ["w-1"]), exp: 100 }
    const service = { ...access("service_role"), exp: 100 }
    const wedding = { _tag: "Wedding", id: "w-1" } as const
    policy.setNow(99_000)
    assert.strictEqual(policy.decide(guest, wedding), "restricted")
    assert.strictEqual(policy.decide(service, wedding), "full")
    policy.setNow(100_000)
    assert.strictEqual(policy.decide(guest, wedding), "denied")
    assert.strictEqual(policy.decide(guest, { _tag: "Unscoped" }), "denied")
    assert.strictEqual(policy.decide(service, wedding), "denied")
    // Without exp (opaque keys) nothing expires.
    assert.strictEqual(policy.decide(access("service_role"), wedding), "full")
  })
})

describe("RowPolicy with memberships", () => {
  /** Memberships whose L1 holds `known` (key → decision); everything else is a miss. */
  const memberships = (known: Map<string, boolean>): Memberships.Service => ({
    enabled: true,
    peek: (key) => known.get(key),
    isMember: () => Effect.succeed(false),
    granted: () => Effect.void,
    revoked: () => Effect.void,
    onRevoke: () => Effect.void,
    hold: () => undefined
  })
  const user = (sub: string, weddingIds: ReadonlyArray<string> = []) => ({
    ...access("authenticated", weddingIds),
    sub
  })
  const w1 = { _tag: "Wedding", id: "w-1" } as const

  it("asks L1 only when the claims refuse, records misses and answers them once resolved for the transaction", () => {
    const known = new Map([[Memberships.key("alice", "wedding", "w-1"), true]])
    const policy = new RowPolicy("service_role", memberships(known))
    assert.strictEqual(policy.decide(user("alice"), w1), "restricted")
    assert.strictEqual(policy.decide(user("carol", ["w-1"]), w1), "restricted")
    assert.strictEqual(policy.missing.size, 0)
    // Bob: not in L1. Denied for now, and recorded to be loaded before delivery.
    assert.strictEqual(policy.decide(user("bob"), w1), "denied")
    assert.deepStrictEqual([...policy.missing.values()], [{ userId: "bob", scope: "wedding", id: "w-1" }])
    policy.resolve(Memberships.key("bob", "wedding", "w-1"), true)
    assert.strictEqual(policy.missing.size, 0)
    assert.strictEqual(policy.decide(user("bob"), w1), "restricted")
    // A new transaction forgets what was resolved (L1 decides again).
    policy.setNow(0)
    assert.strictEqual(policy.decide(user("bob"), w1), "denied")
    // A token without sub, and a gateway without a table, never ask.
    policy.missing.clear()
    assert.strictEqual(policy.decide(access("authenticated"), w1), "denied")
    assert.strictEqual(policy.missing.size, 0)
    const off = new RowPolicy("service_role", { ...memberships(known), enabled: false })
    assert.strictEqual(off.decide(user("alice"), w1), "denied")
    assert.isFalse(off.usesMemberships)
  })
})

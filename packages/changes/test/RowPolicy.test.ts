import { describe, expect, it } from "vitest"
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
    expect(scopeOf(timeline, { id: 1, wedding_id: "w-1" })).toEqual({ _tag: "Wedding", id: "w-1" })
    expect(scopeOf(timeline, { id: 1, wedding_id: 42 })).toEqual({ _tag: "Wedding", id: "42" })
    expect(scopeOf(supplierTasks, { id: 1, supplier_id: "s-9" })).toEqual({ _tag: "Supplier", id: "s-9" })
    expect(scopeOf(notes, { id: 1, body: "x" })).toEqual({ _tag: "Unscoped" })
  })

  it("is Unknown when a scoped table's row image lacks the column (a DELETE with the PK only)", () => {
    expect(scopeOf(timeline, { id: 1 })).toEqual({ _tag: "Unknown" })
    expect(scopeOf(timeline, undefined)).toEqual({ _tag: "Unknown" })
    expect(scopeOf(timeline, { id: 1, wedding_id: null })).toEqual({ _tag: "Unknown" })
  })
})

describe("RowPolicy", () => {
  const policy = new RowPolicy("service_role")

  it("lets members of the row's wedding or supplier see it, restricted; everyone else is denied", () => {
    expect(policy.decide(access("authenticated", ["w-1"]), { _tag: "Wedding", id: "w-1" })).toBe("restricted")
    expect(policy.decide(access("authenticated", ["w-2"]), { _tag: "Wedding", id: "w-1" })).toBe("denied")
    expect(policy.decide(access("authenticated", [], ["s-9"]), { _tag: "Supplier", id: "s-9" })).toBe("restricted")
    expect(policy.decide(access("authenticated", ["s-9"]), { _tag: "Supplier", id: "s-9" })).toBe("denied")
    expect(policy.decide(access("anon"), { _tag: "Wedding", id: "w-1" })).toBe("denied")
  })

  it("gives service_role everything in full, including rows whose scope is unknown", () => {
    expect(policy.decide(access("service_role"), { _tag: "Wedding", id: "w-1" })).toBe("full")
    expect(policy.decide(access("service_role"), { _tag: "Unknown" })).toBe("full")
    expect(policy.decide(access("service_role"), { _tag: "Unscoped" })).toBe("full")
    expect(policy.decide(access("authenticated", ["w-1"]), { _tag: "Unknown" })).toBe("denied")
  })

  it("applies the configured rule to unscoped tables", () => {
    const user = access("authenticated")
    expect(new RowPolicy("service_role").decide(user, { _tag: "Unscoped" })).toBe("denied")
    expect(new RowPolicy("authenticated").decide(user, { _tag: "Unscoped" })).toBe("restricted")
    expect(new RowPolicy("authenticated").decide(access("anon"), { _tag: "Unscoped" })).toBe("denied")
    expect(new RowPolicy("all").decide(access("anon"), { _tag: "Unscoped" })).toBe("restricted")
  })

  it("decides once per (token, wedding): the cached decision is reused", () => {
    const cached = new RowPolicy("service_role")
    const weddingIds = new CountingSet(["w-1"])
    const counting = { role: "authenticated", supplierIds: new Set<string>(), weddingIds }
    for (let i = 0; i < 200; i++) expect(cached.decide(counting, { _tag: "Wedding", id: "w-1" })).toBe("restricted")
    expect(cached.decide(counting, { _tag: "Wedding", id: "w-2" })).toBe("denied")
    expect(weddingIds.lookups).toBe(2)
  })

  it("tells a row that moved to another wedding or supplier from one that stayed", () => {
    const before = scopeOf(timeline, { id: 1, wedding_id: "B" })
    expect(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: "B", title: "x" }))).toBe(true)
    expect(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: "A" }))).toBe(false)
    expect(sameScope(before, scopeOf(timeline, { id: 1, wedding_id: null }))).toBe(false)
    expect(sameScope(scopeOf(supplierTasks, { supplier_id: "s-1" }), scopeOf(supplierTasks, { supplier_id: "s-2" }))).toBe(false)
    expect(sameScope({ _tag: "Wedding", id: "1" }, { _tag: "Supplier", id: "1" })).toBe(false)
    expect(sameScope(scopeOf(notes, { id: 1 }), scopeOf(notes, { id: 2 }))).toBe(true)
  })
})

describe("RowPolicy and token expiry", () => {
  it("denies every row to an access whose exp has passed at the transaction's time; before it, the membership decides", () => {
    const policy = new RowPolicy("all")
    const guest = { ...access("authenticated", ["w-1"]), exp: 100 }
    const service = { ...access("service_role"), exp: 100 }
    const wedding = { _tag: "Wedding", id: "w-1" } as const
    policy.setNow(99_000)
    expect(policy.decide(guest, wedding)).toBe("restricted")
    expect(policy.decide(service, wedding)).toBe("full")
    policy.setNow(100_000)
    expect(policy.decide(guest, wedding)).toBe("denied")
    expect(policy.decide(guest, { _tag: "Unscoped" })).toBe("denied")
    expect(policy.decide(service, wedding)).toBe("denied")
    // Without exp (opaque keys) nothing expires.
    expect(policy.decide(access("service_role"), wedding)).toBe("full")
  })
})

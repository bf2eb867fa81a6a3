import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { Principal } from "../src/index.ts"

const principal = (claims: Record<string, unknown>) => Principal.make({ claims, token: "t" })

describe("Principal.make", () => {
  it("reads role, sub and exp", () => {
    const p = principal({ role: "authenticated", sub: "user-1", exp: 1700000000, email: "a@b.c" })
    assert.strictEqual(p.role, "authenticated")
    assert.strictEqual(p.sub, "user-1")
    assert.strictEqual(p.exp, 1700000000)
    assert.strictEqual(p.claims["email"], "a@b.c")
    assert.strictEqual(p.token, "t")
  })

  it("leaves sub and exp undefined when absent or of the wrong type", () => {
    const p = principal({ role: "anon", sub: 42, exp: "soon" })
    assert.strictEqual(p.sub, undefined)
    assert.strictEqual(p.exp, undefined)
  })

  it("rounds decimal exp and iat in the claims too", () => {
    const p = principal({ role: "anon", exp: 1700000000.6, iat: 1699990000.2 })
    assert.strictEqual(p.exp, 1700000001)
    assert.strictEqual(p.claims["exp"], 1700000001)
    assert.strictEqual(p.claims["iat"], 1699990000)
  })

  it("reads wedding and supplier ids from app_metadata, numbers as strings", () => {
    const p = principal({
      role: "authenticated",
      app_metadata: { wedding_ids: ["w-1", 2, "w-3"], supplier_ids: [10, "s-20"] }
    })
    assert.deepStrictEqual([...p.weddingIds].sort(), ["2", "w-1", "w-3"])
    assert.deepStrictEqual([...p.supplierIds].sort(), ["10", "s-20"])
  })

  it("skips ids that are neither strings nor finite numbers", () => {
    const p = principal({ role: "authenticated", app_metadata: { wedding_ids: ["ok", null, {}, [], true, "", 1.5] } })
    assert.deepStrictEqual([...p.weddingIds].sort(), ["1.5", "ok"])
  })

  it("gives empty sets for missing or malformed memberships, never a crash", () => {
    const shapes: ReadonlyArray<unknown> = [undefined, null, "w-1", 7, [], ["w-1"], { wedding_ids: "w-1" }]
    for (const appMetadata of shapes) {
      const p = principal({ role: "authenticated", app_metadata: appMetadata })
      assert.strictEqual(p.supplierIds.size, 0)
      assert.strictEqual(p.weddingIds.size, 0, JSON.stringify(appMetadata))
    }
  })

  it("ignores memberships in user_metadata, which users can edit themselves", () => {
    const p = principal({ role: "authenticated", user_metadata: { wedding_ids: ["w-1"] } })
    assert.strictEqual(p.weddingIds.size, 0)
  })

  it("never throws on arbitrary claims", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue(), (claims, appMetadata) => {
        const p = principal({ ...claims, app_metadata: appMetadata })
        return [...p.weddingIds, ...p.supplierIds].every((id) => typeof id === "string" && id.length > 0)
      }),
      { numRuns: 500 }
    )
  })
})

describe("Principal.isServiceRole", () => {
  it("is true only for the service_role role", () => {
    assert.isTrue(Principal.isServiceRole(principal({ role: "service_role" })))
    assert.isFalse(Principal.isServiceRole(principal({ role: "authenticated" })))
    assert.isFalse(Principal.isServiceRole(principal({ role: "anon" })))
  })
})

describe("Principal.fromApiKey", () => {
  it("has a role and the key, no expiry and no memberships", () => {
    const p = Principal.fromApiKey("service_role", "sb_secret_x")
    assert.strictEqual(p.role, "service_role")
    assert.strictEqual(p.exp, undefined)
    assert.strictEqual(p.sub, undefined)
    assert.strictEqual(p.token, "sb_secret_x")
    assert.strictEqual(p.weddingIds.size, 0)
  })
})

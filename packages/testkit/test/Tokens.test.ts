import { assert, describe, it } from "@effect/vitest"
import { decodeProtectedHeader, jwtVerify } from "jose"
import { Tokens } from "../src/index.ts"

const secret = "super-secret-jwt-token-with-at-least-32-characters"
const key = new TextEncoder().encode(secret)

describe("Tokens", () => {
  it("signs an HS256 token with Supabase-shaped claims", async () => {
    const token = await Tokens.signToken(secret, { sub: "u-1", claims: { email: "a@b.c" } })
    const { payload } = await jwtVerify(token, key)
    assert.strictEqual(decodeProtectedHeader(token).alg, "HS256")
    assert.strictEqual(payload.role, "authenticated")
    assert.strictEqual(payload.sub, "u-1")
    assert.strictEqual(payload["email"], "a@b.c")
    assert.approximately(payload.exp! - payload.iat!, 3600, 1)
  })

  it("can make expired and non-expiring tokens", async () => {
    const expired = await Tokens.signToken(secret, { expiresInSeconds: -10 })
    await jwtVerify(expired, key).then(() => assert.fail("accepted an expired token"), (e: Error) => {
      assert.match(e.message, /exp/)
    })
    const forever = await Tokens.signToken(secret, { noExpiry: true, role: "anon" })
    const { payload } = await jwtVerify(forever, key)
    assert.isUndefined(payload.exp)
    assert.strictEqual(payload.role, "anon")
  })
})

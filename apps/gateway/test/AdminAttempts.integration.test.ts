/**
 * Wrong admin tokens are limited per client address, on the bearer endpoints and on the dashboard's login form: the
 * eleventh attempt within a minute from one address is refused with 429 and `Retry-After`, the right token included,
 * while another address (told apart through `TRUSTED_PROXIES` and `X-Forwarded-For`) still gets in with it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const ADMIN_TOKEN = "attempts-admin-token-for-tests-0123456789"

let gateway: RunningGateway
beforeAll(async () => {
  gateway = await startGateway({
    gateway: { adminToken: Redacted.make(ADMIN_TOKEN), trustedProxies: ["127.0.0.1", "::1"] }
  })
})
afterAll(async () => {
  await gateway.stop()
})

const scaling = (from: string, token: string) =>
  fetch(`${gateway.url}/admin/scaling`, { headers: { authorization: `Bearer ${token}`, "x-forwarded-for": from } })

const login = (from: string, token: string) =>
  fetch(`${gateway.url}/dashboard/session`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-forwarded-for": from },
    body: new URLSearchParams({ token })
  })

describe("wrong admin tokens", () => {
  it("/admin: ten wrong tokens from one address, then 429 with Retry-After even for the right one; others get in", async () => {
    assert.strictEqual((await scaling("203.0.113.7", ADMIN_TOKEN)).status, 200)
    for (let i = 0; i < 10; i++) assert.strictEqual((await scaling("203.0.113.7", `wrong-${i}`)).status, 401)
    const blocked = await scaling("203.0.113.7", ADMIN_TOKEN)
    assert.strictEqual(blocked.status, 429)
    const retryAfter = Number(blocked.headers.get("retry-after"))
    assert.isTrue(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    assert.match(
      ((await blocked.json()) as { message: string }).message,
      /^Too many wrong admin tokens from this address; try again in \d+ seconds$/
    )
    // Another address still gets in with it.
    assert.strictEqual((await scaling("203.0.113.8", ADMIN_TOKEN)).status, 200)
    // The login form keeps its own count: the address locked out of /admin still logs in there.
    assert.strictEqual((await login("203.0.113.7", ADMIN_TOKEN)).status, 303)
  })

  it("the dashboard login: ten wrong tokens from one address, then 429; another address logs in", async () => {
    for (let i = 0; i < 10; i++) assert.strictEqual((await login("198.51.100.1", `wrong-${i}`)).status, 401)
    const blocked = await login("198.51.100.1", ADMIN_TOKEN)
    assert.strictEqual(blocked.status, 429)
    assert.isNotNull(blocked.headers.get("retry-after"))
    assert.isNull(blocked.headers.get("set-cookie"))
    const other = await login("198.51.100.2", ADMIN_TOKEN)
    assert.strictEqual(other.status, 303)
    assert.isNotNull(other.headers.get("set-cookie"))
  })

  it("a missing bearer token is refused 401 without counting as a guess", async () => {
    for (let i = 0; i < 12; i++) {
      const response = await fetch(`${gateway.url}/admin/scaling`, { headers: { "x-forwarded-for": "192.0.2.9" } })
      assert.strictEqual(response.status, 401)
    }
    assert.strictEqual((await scaling("192.0.2.9", ADMIN_TOKEN)).status, 200)
  })
})

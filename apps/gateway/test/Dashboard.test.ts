/** The dashboard's pure parts: windowed quantiles from cumulative histogram buckets, and the session cookie. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { scalingReader } from "../src/Dashboard.ts"
import { windowQuantile } from "../src/DashboardSampler.ts"
import * as DashboardSession from "../src/DashboardSession.ts"

describe("windowQuantile", () => {
  const at = (counts: ReadonlyArray<number>) =>
    [0.001, 0.01, 0.1, Number.POSITIVE_INFINITY].map((b, i) => [b, counts[i]!] as const)

  it("reads the quantile of the observations between two samples only", () => {
    // Before: 100 fast observations; since: 10 in (0.01, 0.1].
    const before = at([100, 100, 100, 100])
    const now = at([100, 100, 110, 110])
    assert.closeTo(windowQuantile(now, before, 0.5)!, 0.055, 1e-9)
    assert.closeTo(windowQuantile(now, before, 0.99)!, 0.0991, 1e-9)
    // Over everything, the old fast ones dominate the median.
    assert.isBelow(windowQuantile(now, undefined, 0.5)!, 0.001)
  })

  it("is null without observations and the open bucket's lower bound above the last boundary", () => {
    assert.isNull(windowQuantile(at([5, 5, 5, 5]), at([5, 5, 5, 5]), 0.99))
    assert.strictEqual(windowQuantile(at([0, 0, 0, 3]), undefined, 0.99), 0.1)
  })
})

describe("DashboardSession", () => {
  const sessions = DashboardSession.make(Redacted.make("the-admin-token"))
  const now = 1_800_000_000_000

  it("accepts its own unexpired session and refuses expired, altered, foreign and missing ones", () => {
    const cookie = sessions.issue(now)
    assert.isTrue(sessions.verify(cookie, now + 1000))
    assert.notInclude(cookie, "the-admin-token")
    assert.isFalse(sessions.verify(cookie, now + DashboardSession.ttlMs))
    const [expires, mac] = cookie.split(".")
    assert.isFalse(sessions.verify(`${Number(expires) + 60_000}.${mac}`, now))
    assert.isFalse(sessions.verify(DashboardSession.make(Redacted.make("another-token")).issue(now), now))
    assert.isFalse(sessions.verify(undefined, now))
    assert.isFalse(sessions.verify("x".repeat(4096), now))
  })
})

describe("scalingReader", () => {
  it("shows the scaling endpoint's JSON, and 'not available' where it answers 404", async () => {
    const { createServer } = await import("node:http")
    const server = createServer((request, response) => {
      if (request.headers.authorization !== "Bearer tok") return void response.writeHead(401).end()
      if (request.url === "/admin/scaling") {
        return void response.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({ decision: { replicas: 3 }, reason: "connections" })
        )
      }
      response.writeHead(404).end()
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const read = (path: string) =>
        Effect.runPromise(scalingReader(`http://127.0.0.1:${port}${path}`, Redacted.make("tok")))
      assert.deepStrictEqual(await read("/admin/scaling"), {
        available: true,
        body: { decision: { replicas: 3 }, reason: "connections" }
      })
      assert.deepStrictEqual(await read("/elsewhere"), { available: false, reason: "not available" })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

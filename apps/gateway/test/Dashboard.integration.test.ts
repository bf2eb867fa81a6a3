/**
 * Issue 10, item 4: `/dashboard` in headless Chromium (Debian's `chromium`, installed by `tools/src/prepareServices.ts`)
 * driven by playwright-core, against a gateway in this process with `ADMIN_TOKEN`. Without a session the page shows
 * the login form (401) and the stream answers 401, beside the accepted case; a wrong token is refused and a right
 * one logs in without the token ever reaching a URL; the figures then change under real supabase-js traffic. Without
 * `ADMIN_TOKEN` the dashboard does not exist. The screenshot goes to `apps/gateway/.vitest/dashboard.png`
 * (and, with a stand-in `/admin/scaling` answer that carries a forecast, `dashboard-scaling.png`).
 */
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients, waitUntil } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, closeAll } = SupabaseClients

const ADMIN_TOKEN = "admin-token-for-the-dashboard-test"
const CHROMIUM = "/usr/bin/chromium"
const outputDir = join(import.meta.dirname, "..", ".vitest")

let gateway: RunningGateway
let closed: RunningGateway
let browser: Browser
const clients: Array<SupabaseClient> = []
const urlsSeen: Array<string> = []

beforeAll(async () => {
  ;[gateway, closed] = await Promise.all([
    // An SLO no delivery can meet, so the alert shows as soon as there is traffic.
    startGateway({ gateway: { adminToken: Redacted.make(ADMIN_TOKEN), dashboardSloMs: 0.001 } }),
    startGateway()
  ])
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
})
afterAll(async () => {
  await closeAll(clients.splice(0))
  await browser?.close()
  await Promise.all([gateway, closed].map((g) => g?.stop()))
})

const openPage = async (): Promise<Page> => {
  const page = await browser.newPage()
  page.on("request", (request) => urlsSeen.push(request.url()))
  return page
}

const text = (page: Page, id: string) => page.locator(`#${id}`).textContent()

const logIn = async (page: Page, token: string) => {
  await page.goto(`${gateway.url}/dashboard`)
  await page.fill("#token", token)
  await Promise.all([page.waitForURL(`${gateway.url}/dashboard`), page.click("button[type=submit]")])
}

describe("GET /dashboard", () => {
  it("shows the login form and refuses the stream without a session, and accepts the admin token", {
    timeout: 30_000
  }, async () => {
    const page = await openPage()
    const first = await page.goto(`${gateway.url}/dashboard`)
    assert.strictEqual(first?.status(), 401)
    assert.isTrue(await page.locator("form#login").isVisible())
    assert.match(first?.headers()["content-security-policy"] ?? "", /script-src 'self'/)
    assert.strictEqual((await fetch(`${gateway.url}/dashboard/stream`)).status, 401)

    await logIn(page, `${ADMIN_TOKEN}x`)
    assert.isTrue(await page.locator("#refused").isVisible())
    assert.strictEqual(await page.locator("#connections").count(), 0)

    await logIn(page, ADMIN_TOKEN)
    assert.strictEqual(await page.locator("form#login").count(), 0)
    const cookies = await page.context().cookies()
    const session = cookies.find((c) => c.name === "wedsync_dashboard")
    assert.isDefined(session)
    assert.isTrue(session?.httpOnly)
    assert.strictEqual(session?.sameSite, "Strict")
    assert.strictEqual(session?.path, "/dashboard")
    assert.notInclude(session?.value ?? "", ADMIN_TOKEN)
    // The cookie opens the stream; the browser sent it, and a fetch with it gets the event stream.
    const stream = await fetch(`${gateway.url}/dashboard/stream`, {
      headers: { cookie: `wedsync_dashboard=${session?.value}` }
    })
    assert.strictEqual(stream.status, 200)
    assert.strictEqual(stream.headers.get("content-type"), "text/event-stream")
    await stream.body?.cancel()
    await page.close()
  })

  it("shows live figures that change under supabase-js traffic", { timeout: 60_000 }, async () => {
    const page = await openPage()
    await logIn(page, ADMIN_TOKEN)
    await waitUntil("the first snapshot", () => page.locator("#status").textContent(), (s) => s === "live", {
      timeoutMs: 10_000,
      intervalMs: 100
    })
    const before = Number(await text(page, "connections"))
    const deliveriesBefore = Number(await text(page, "deliveries-total"))

    const anonKey = await TestTokens.anonToken()
    const topic = `dashboard-${Date.now()}`
    for (let i = 0; i < 3; i++) {
      const client = makeSupabaseClient(gateway.url, anonKey)
      clients.push(client)
      await subscribe(client.channel(topic))
    }
    await waitUntil(
      "the connections figure to count the clients",
      () => text(page, "connections"),
      (t) => Number(t) >= before + 3,
      { timeoutMs: 10_000, intervalMs: 100 }
    )

    const sender = clients[0]!.channel(topic)
    await waitUntil(
      "the deliveries figure to grow",
      async () => {
        await sender.send({ type: "broadcast", event: "load", payload: { n: 1 } })
        return Number(await text(page, "deliveries-total"))
      },
      (n) => n > deliveriesBefore,
      { timeoutMs: 15_000, intervalMs: 200 }
    )
    await waitUntil("a delivery latency", () => text(page, "delivery-p99"), (t) => t !== "–" && t !== null, {
      timeoutMs: 15_000,
      intervalMs: 200
    })
    await waitUntil(
      "the SLO alert",
      () => text(page, "alerts"),
      (t) => /delivery p99 .* above the 0.001 ms SLO/.test(t ?? ""),
      {
        timeoutMs: 5_000,
        intervalMs: 200
      }
    )
    // The gateway's own `/admin/scaling` (its ScalingController, no calendar): the decision and its reason.
    await waitUntil("the scaling decision", () => text(page, "scaling"), (t) => (t ?? "").includes("desiredReplicas"), {
      timeoutMs: 10_000
    })
    assert.match((await text(page, "scaling-reason")) ?? "", /^(hold at|up|down) \d/)
    assert.match((await text(page, "backend")) ?? "", /Redisnot configured/)

    mkdirSync(outputDir, { recursive: true })
    await page.screenshot({ path: join(outputDir, "dashboard.png"), fullPage: true })
    await page.close()
    assert.isTrue(urlsSeen.length > 0)
    for (const url of urlsSeen) assert.notInclude(url, ADMIN_TOKEN)
  })

  it("shows the scaling decision, its reason and the day's forecast when /admin/scaling answers", {
    timeout: 30_000
  }, async () => {
    const page = await openPage()
    await logIn(page, ADMIN_TOKEN)
    const cookie = (await page.context().cookies()).find((c) => c.name === "wedsync_dashboard")!
    // A real snapshot of this gateway (its /admin/scaling has no calendar, so no forecast), given a stand-in answer
    // with one.
    const response = await fetch(`${gateway.url}/dashboard/stream`, {
      headers: { cookie: `wedsync_dashboard=${cookie.value}` }
    })
    const reader = response.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    await reader.cancel()
    const snapshot = JSON.parse(first.slice("data: ".length)) as { slow: Record<string, unknown> }
    const now = Date.now()
    const forecast = [0, 1, 2, 3].map((h) => ({ at: now - 3_600_000 + h * 1_800_000, connections: 100 * h }))
    const body = { decision: { replicas: 3 }, reason: "delivery p99 above target", forecast }
    const fake = { ...snapshot, slow: { ...snapshot.slow, scaling: { available: true, body } } }
    // Green pixels on the day chart: the forecast's colour.
    // Runs in the page (a string: this package's TypeScript has no DOM types).
    const forecastPixels = () =>
      page.evaluate<number>(`(() => {
        const canvas = document.getElementById("chart-day")
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data
        let green = 0
        for (let i = 0; i < data.length; i += 4) if (data[i + 1] > 180 && data[i] < 150) green++
        return green
      })()`)
    await waitUntil("a real snapshot", () => text(page, "scaling"), (t) => (t ?? "").includes("desiredReplicas"), {
      timeoutMs: 10_000
    })
    assert.strictEqual(await forecastPixels(), 0)

    await page.route(
      "**/dashboard/stream",
      (route) =>
        route.fulfill({ status: 200, contentType: "text/event-stream", body: `data: ${JSON.stringify(fake)}\n\n` })
    )
    await page.reload()
    await waitUntil("the scaling reason", () => text(page, "scaling-reason"), (t) => t === body.reason, {
      timeoutMs: 10_000
    })
    assert.include(await text(page, "scaling"), `"replicas": 3`)
    assert.notInclude(await text(page, "scaling"), "forecast")
    assert.isAbove(await forecastPixels(), 50)
    mkdirSync(outputDir, { recursive: true })
    await page.screenshot({ path: join(outputDir, "dashboard-scaling.png"), fullPage: true })
    await page.close()
  })

  it(
    "logs in over plain HTTP with a form body, and ends the stream when the gateway stops",
    { timeout: 15_000 },
    async () => {
      const own = await startGateway({ gateway: { adminToken: Redacted.make(ADMIN_TOKEN) } })
      try {
        const oversized = await fetch(`${own.url}/dashboard/session`, {
          method: "POST",
          body: new URLSearchParams({ token: ADMIN_TOKEN.padEnd(5000, "x") })
        })
        assert.strictEqual(oversized.status, 413)
        assert.isNull(oversized.headers.get("set-cookie"))
        const login = await fetch(`${own.url}/dashboard/session`, {
          method: "POST",
          body: new URLSearchParams({ token: ADMIN_TOKEN }),
          redirect: "manual"
        })
        assert.strictEqual(login.status, 303)
        assert.strictEqual(login.headers.get("location"), "/dashboard")
        const cookie = login.headers.get("set-cookie") ?? ""
        assert.match(cookie, /HttpOnly/i)
        assert.match(cookie, /SameSite=Strict/i)
        const stream = await fetch(`${own.url}/dashboard/stream`, { headers: { cookie: cookie.split(";")[0]! } })
        assert.strictEqual(stream.status, 200)
        const reader = stream.body!.getReader()
        const first = new TextDecoder().decode((await reader.read()).value)
        assert.match(first, /^data: \{"at":/)
        // Eight streams at most: seven more are accepted, the ninth refused.
        const open = (headers: Record<string, string>) => fetch(`${own.url}/dashboard/stream`, { headers })
        const more = await Promise.all(Array.from({ length: 7 }, () => open({ cookie: cookie.split(";")[0]! })))
        assert.deepStrictEqual(more.map((r) => r.status), Array(7).fill(200))
        assert.isFalse((await more[6]!.body!.getReader().read()).done)
        assert.strictEqual((await open({ cookie: cookie.split(";")[0]! })).status, 503)
        const stopped = own.stop()
        // The stream ends with the gateway's scope (cleanly, or by the socket closing) instead of holding the shutdown
        // open: were it left running, this read would never return and the test would time out.
        const ended = await (async () => {
          try {
            while (!(await reader.read()).done) continue
            return "ended"
          } catch {
            return "closed"
          }
        })()
        assert.oneOf(ended, ["ended", "closed"])
        await stopped
      } finally {
        await own.stop()
      }
    }
  )

  it("does not exist without ADMIN_TOKEN", async () => {
    for (const path of ["/dashboard", "/dashboard/stream", "/dashboard/app.js"]) {
      assert.strictEqual((await fetch(`${closed.url}${path}`)).status, 404)
    }
    assert.strictEqual(
      (await fetch(`${closed.url}/dashboard/session`, { method: "POST", body: new URLSearchParams({ token: "x" }) }))
        .status,
      404
    )
    assert.strictEqual((await fetch(`${gateway.url}/dashboard/app.js`)).status, 200)
  })
})

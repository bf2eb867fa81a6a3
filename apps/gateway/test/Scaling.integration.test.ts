/**
 * Issue 10 item 2: `GET /admin/scaling` behind the admin token (refused without it or with another, absent without
 * `ADMIN_TOKEN`) answers the decision with its reason, and the decision is exported as gauges; with a wedding
 * calendar the predicted connections are above 0 ahead of a wedding and the calendar drives the recommendation.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients, waitUntil } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ScalingConfig } from "@wedsync/scaling"
import { afterAll, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import { getText } from "./support/Http.ts"
import { valueOf } from "./support/Processes.ts"

const { makeSupabaseClient, subscribe, closeAll } = SupabaseClients

const ADMIN_TOKEN = "scaling-admin-token-for-tests-0123456789"

interface Snapshot {
  readonly observation: { readonly connections: number; readonly memoryBytes: number }
  readonly decision: {
    readonly desiredReplicas: number
    readonly currentReplicas: number
    readonly direction: string
    readonly drivenBy: string
    readonly reason: string
  }
  readonly headroom: number
  readonly calendar?: { readonly weddings: number; readonly predictedConnections: number }
  readonly forecast?: ReadonlyArray<{ readonly at: number; readonly connections: number }>
}

/** `token` null: no `Authorization` header. */
const scaling = async (gateway: RunningGateway, token: string | null = ADMIN_TOKEN) => {
  const response = await fetch(`${gateway.url}/admin/scaling`, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` }
  })
  return { status: response.status, body: (await response.json().catch(() => undefined)) as unknown }
}

const snapshot = async (gateway: RunningGateway) => {
  const { status, body } = await scaling(gateway)
  assert.strictEqual(status, 200, JSON.stringify(body))
  return body as Snapshot
}

const scrape = async (gateway: RunningGateway) => (await getText(`${gateway.url}/metrics`)).text

/** A shared test machine's CPU and event loop spike at start, and vitest's workers share one process's memory: only
 * connections are left to decide. */
const capacity = {
  ...ScalingConfig.defaults.capacity,
  cpu: 1000,
  eventLoopP99Ms: 60_000,
  deliveryP99Ms: 60_000,
  memoryBytes: 2 ** 50
}
const withAdmin = { adminToken: Redacted.make(ADMIN_TOKEN), scalingSampleMs: 200 }

// One suite after the other: the gauges live in the process's one metric registry, which gateways running side by side
// in a test process would share.
describe("ScalingController without a calendar", () => {
  let plain: RunningGateway
  let closed: RunningGateway
  const clients: Array<SupabaseClient> = []

  beforeAll(async () => {
    ;[plain, closed] = await Promise.all([startGateway({ gateway: withAdmin, scaling: { capacity } }), startGateway()])
  })
  afterAll(async () => {
    await closeAll(clients.splice(0))
    await Promise.all([plain.stop(), closed.stop()])
  })

  it("refuses /admin/scaling without or with a wrong token, and answers the decision and its reason with it", async () => {
    const missing = await scaling(plain, null)
    assert.strictEqual(missing.status, 401)
    assert.deepStrictEqual(missing.body, { message: "Authorization: Bearer <ADMIN_TOKEN> is required" })
    const wrong = await scaling(plain, `${ADMIN_TOKEN}x`)
    assert.strictEqual(wrong.status, 401)
    assert.deepStrictEqual(wrong.body, { message: "The bearer token is not the admin token" })

    const client = makeSupabaseClient(plain.url, await TestTokens.anonToken())
    clients.push(client)
    await subscribe(client.channel("scaling-room"))
    // The next sample sees the socket.
    const seen = await waitUntil(
      "a sample with the connected socket",
      () => snapshot(plain),
      (s) => s.observation.connections === 1
    )
    assert.strictEqual(seen.decision.currentReplicas, 1)
    assert.strictEqual(seen.decision.desiredReplicas, 1)
    assert.strictEqual(seen.decision.direction, "hold")
    assert.match(seen.decision.reason, /^hold at 1: \w+ [0-9.]+ per process against target /)
    assert.isAbove(seen.observation.memoryBytes, 0)
    assert.isAbove(seen.headroom, 0)
    assert.isUndefined(seen.calendar)
    assert.isUndefined(seen.forecast)

    const metrics = await scrape(plain)
    assert.strictEqual(valueOf(metrics, "wedsync_scaling_desired_replicas"), 1)
    assert.strictEqual(valueOf(metrics, "wedsync_scaling_predicted_connections"), 0)
  })

  it("does not exist without ADMIN_TOKEN", async () => {
    assert.strictEqual((await scaling(closed)).status, 404)
    assert.strictEqual((await scaling(closed, null)).status, 404)
  })
})

describe("ScalingController with a wedding calendar", () => {
  let calendar: RunningGateway

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "wedsync-scaling-"))
    const calendarFile = join(dir, "calendar.json")
    // Starts in one hour: inside the two-hour ramp, so devices are predicted now; 15,000 devices need two processes
    // at 8,000 each (10,000 less the 20% headroom).
    const start = new Date(Date.now() + 3_600_000).toISOString()
    writeFileSync(calendarFile, JSON.stringify({ weddings: [{ id: "w-ahead", start, suppliers: 5000 }] }))
    calendar = await startGateway({ gateway: withAdmin, scaling: { capacity, calendarFile } })
  })
  afterAll(async () => {
    await calendar.stop()
  })

  it("predicts connections ahead of a wedding and lets the calendar drive the recommendation", async () => {
    const metrics = await scrape(calendar)
    assert.isAbove(valueOf(metrics, "wedsync_scaling_predicted_connections") ?? 0, 0)
    assert.strictEqual(valueOf(metrics, "wedsync_scaling_predicted_replicas"), 2)
    assert.strictEqual(valueOf(metrics, "wedsync_scaling_desired_replicas"), 2)
    const s = await snapshot(calendar)
    assert.strictEqual(s.calendar?.weddings, 1)
    assert.isAbove(s.calendar?.predictedConnections ?? 0, 0)
    assert.strictEqual(s.decision.drivenBy, "calendar")
    assert.strictEqual(s.decision.desiredReplicas, 2)
    assert.match(s.decision.reason, /^up 1 → 2: calendar predicts 2 replicas/)
    // The day's curve around now: nothing a day ago, the wedding's 15,000 devices at its start an hour from now.
    const forecast = s.forecast ?? []
    assert.isAbove(forecast.length, 200)
    assert.strictEqual(forecast[0]?.connections, 0)
    assert.strictEqual(Math.max(...forecast.map((p) => p.connections)), 15_000)
  })
})

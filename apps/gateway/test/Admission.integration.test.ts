/**
 * Issue 10 item 1 through unmodified supabase-js clients: above `ADMISSION_MAX_CONNECTIONS` a new socket gets 503 with
 * `Retry-After` and its reason before the upgrade, while the clients already connected keep exchanging broadcasts; below
 * it, a socket is accepted again. `wedsync_admission_shed_total` counts the sheds by reason from the first scrape.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients, waitUntil } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import { getText, tryUpgradeWithHeaders } from "./support/Http.ts"
import { valueOf } from "./support/Processes.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll } = SupabaseClients

const SHED_CONNECTIONS = `wedsync_admission_shed_total{reason="connections"}`

describe("admission control at the upgrade", () => {
  let gateway: RunningGateway
  let anonKey: string
  const clients: Array<SupabaseClient> = []

  beforeAll(async () => {
    gateway = await startGateway({
      scaling: { admissionMaxConnections: 2, retryAfterMinSeconds: 7, retryAfterMaxSeconds: 9 }
    })
    anonKey = await TestTokens.anonToken()
  })
  afterAll(async () => {
    await closeAll(clients.splice(0))
    await gateway.stop()
  })

  const scrape = async () => (await getText(`${gateway.url}/metrics`)).text
  const openSockets = async () => valueOf(await scrape(), "wedsync_connection_open") ?? 0

  it("sheds a new socket with 503 and Retry-After at capacity; connected clients keep working; below it, accepts", async () => {
    // Declared before the first shed, for every reason.
    const first = await scrape()
    for (const reason of ["connections", "delivery-latency", "event-loop-delay"]) {
      assert.strictEqual(valueOf(first, `wedsync_admission_shed_total{reason="${reason}"}`), 0, reason)
    }

    // Below capacity: accepted.
    const [a, b] = [makeSupabaseClient(gateway.url, anonKey), makeSupabaseClient(gateway.url, anonKey)]
    clients.push(a, b)
    const channelA = a.channel("admission-room")
    const channelB = b.channel("admission-room")
    const heard = inbox<{ readonly payload: { readonly n: number } }>("a broadcast on the connected client")
    channelB.on("broadcast", { event: "msg" }, heard.push)
    await subscribe(channelA)
    await subscribe(channelB)
    await waitUntil("both sockets registered", openSockets, (n) => n === 2)

    // At capacity: refused before the upgrade, with a jittered Retry-After in the configured bounds and the reason.
    const shed = await tryUpgradeWithHeaders(`${gateway.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)
    assert.strictEqual(shed.status, 503)
    const retryAfter = Number(shed.headers["retry-after"])
    assert.isTrue(retryAfter >= 7 && retryAfter <= 9, `Retry-After ${shed.headers["retry-after"]}`)
    const body = JSON.parse(shed.body) as { error: string; reason: string; retry_after: number }
    assert.strictEqual(body.reason, "connections")
    assert.strictEqual(body.retry_after, retryAfter)
    assert.match(body.error, /^Server at capacity \(too many connections\), retry after \d seconds$/)
    assert.strictEqual(valueOf(await scrape(), SHED_CONNECTIONS), 1)

    // Those already connected are untouched: a broadcast still goes from one to the other.
    assert.strictEqual(await channelA.send({ type: "broadcast", event: "msg", payload: { n: 1 } }), "ok")
    assert.strictEqual((await heard.next((m) => m.payload.n === 1)).payload.n, 1)
    assert.strictEqual(await openSockets(), 2)

    // One leaves: below capacity again, a new socket is accepted (and is not counted as shed).
    await closeAll([a])
    await waitUntil("the socket left", openSockets, (n) => n === 1)
    const c = makeSupabaseClient(gateway.url, anonKey)
    clients.push(c)
    await subscribe(c.channel("admission-room"))
    assert.strictEqual(valueOf(await scrape(), SHED_CONNECTIONS), 1)
  })

  it(
    "sheds on the event-loop delay guard while the same process's other gateway, with a high guard, accepts",
    async () => {
      await closeAll(clients.splice(0))
      await waitUntil("the first case's sockets left", openSockets, (n) => n === 0)
      const strict = await startGateway({ scaling: { admissionMaxEventLoopP99Ms: 0.001 } })
      try {
        // The process's event-loop p99 (one 5-second window) is above 0.001 ms as soon as a window has any tick.
        await waitUntil(
          "an event-loop window measured",
          async () => valueOf(await scrape(), "nodejs_eventloop_lag_p99_seconds") ?? 0,
          (p99) => p99 > 0,
          { timeoutMs: 15_000 }
        )
        const shed = await tryUpgradeWithHeaders(`${strict.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)
        assert.strictEqual(shed.status, 503)
        assert.strictEqual((JSON.parse(shed.body) as { reason: string }).reason, "event-loop-delay")
        assert.isDefined(shed.headers["retry-after"])
        // The first gateway keeps the default-for-tests guard and has room: accepted.
        const accepted = makeSupabaseClient(gateway.url, anonKey)
        clients.push(accepted)
        await subscribe(accepted.channel("admission-latency"))
      } finally {
        await strict.stop()
      }
    },
    30_000
  )
})

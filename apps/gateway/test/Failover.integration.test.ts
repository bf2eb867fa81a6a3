/**
 * Issue 9, item 5, end to end: a `WORKERS=2` gateway on one Redis loses a worker (SIGKILL, or a SIGTERM drain) while a
 * wedding's private channel is busy. The killed worker's supabase-js clients reconnect by themselves (to the port: the surviving worker,
 * or the restarted one), rejoin with the same `replay` config and so resume through the shared Redis history: every
 * broadcast acknowledged before, during and after the kill reaches every client (de-duplicated by `meta.id`, as an app
 * resuming with `since` does), and the dead worker's presence entries are swept (SIGKILL) or left (drain), so no client keeps a ghost.
 */
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { redisUrl, SupabaseClients, uniquePrefix, waitUntil } from "@wedsync/testkit"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, vi } from "vitest"
import * as Processes from "./support/Processes.ts"

const { makeSupabaseClient, waitFor, closeAll } = SupabaseClients

vi.setConfig({ testTimeout: 60_000, hookTimeout: 30_000 })

interface Broadcast {
  readonly payload: { readonly n: number }
  readonly meta?: { readonly id?: string; readonly replayed?: boolean }
}

const clients: Array<SupabaseClient> = []
afterEach(async () => {
  await closeAll(clients.splice(0), 500)
})
afterAll(() => Processes.stopAll())

/** A member's client on a private wedding channel that replays from `since` and tracks itself on every (re)join. */
const member = async (gateway: Processes.GatewayProcess, wedding: string, name: string, since: number) => {
  const token = await TestTokens.userToken({ sub: name, weddingIds: [wedding] })
  const client = makeSupabaseClient(gateway.url, token, { accessToken: token, heartbeatIntervalMs: 1_000 })
  clients.push(client)
  const ids = new Map<string, number>()
  let joins = 0
  const channel: RealtimeChannel = client.channel(`wedding:${wedding}`, {
    config: { private: true, presence: { key: name }, broadcast: { replay: { since, limit: 1_000 } } }
  })
  // A presence listener turns presence on for the join (supabase-js sets `presence.enabled`).
  channel.on("presence", { event: "sync" }, () => {})
  channel.on("broadcast", { event: "n" }, (message: Broadcast) => {
    const id = message.meta?.id
    if (id !== undefined) ids.set(id, message.payload.n)
  })
  // supabase-js does not track again after a rejoin by itself; an app does it on SUBSCRIBED, as here.
  await waitFor<void>(
    (resolve, reject) =>
      channel.subscribe((status, error) => {
        if (status === "SUBSCRIBED") {
          joins++
          void channel.track({ name })
          resolve()
        } else if (joins === 0 && status !== "CLOSED") reject(error ?? new Error(status))
      }),
    15_000,
    `${name} to join`
  )
  return { name, channel, ids, joins: () => joins, numbers: () => new Set(ids.values()) }
}

type Member = Awaited<ReturnType<typeof member>>

/** `presence_state` as supabase-js holds it: key → metas. */
const metasByKey = (channel: RealtimeChannel): Record<string, number> =>
  Object.fromEntries(Object.entries(channel.presenceState()).map(([key, metas]) => [key, metas.length]))

describe.each(
  [
    ["killed outright (SIGKILL)", "SIGKILL"],
    ["drained (SIGTERM)", "SIGTERM"]
  ] as const
)("a worker %s under load", (_, signal) => {
  it("its clients reconnect by themselves, resume through replay with nothing lost, and leave no presence ghost", async () => {
    const gateway = await Processes.start({
      WORKERS: "2",
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: uniquePrefix("failover"),
      PRESENCE_HEARTBEAT_MS: "300"
    })
    const wedding = `failover-${process.pid}-${Date.now()}`
    const since = Date.now()
    const members: Array<Member> = []
    for (let i = 0; i < 12; i++) members.push(await member(gateway, wedding, `guest-${i}`, since))
    const byWorker = await Processes.scrapeWorkers(gateway.url, 2)
    const open = (scrape: Processes.WorkerScrape) => Processes.valueOf(scrape.text, "wedsync_connection_open") ?? 0
    const victim = byWorker.get("2")!
    assert.isAbove(open(victim), 0, "the worker to kill holds some of the clients")
    assert.isAbove(open(byWorker.get("1")!), 0, "the other worker holds the rest")

    // The publisher posts over REST to the port: each request may reach either worker. Only what was acknowledged
    // (202, so appended to the history) must arrive; a request cut by the kill is not counted.
    const publisherToken = await TestTokens.userToken({ sub: "planner", weddingIds: [wedding] })
    const acknowledged: Array<number> = []
    let n = 0
    let publishing = true
    const publish = async () => {
      while (publishing) {
        const next = ++n
        const answer = await fetch(`${gateway.url}/realtime/v1/api/broadcast`, {
          method: "POST",
          headers: {
            apikey: publisherToken,
            authorization: `Bearer ${publisherToken}`,
            "content-type": "application/json"
          },
          body: JSON.stringify({
            messages: [{ topic: `wedding:${wedding}`, event: "n", private: true, payload: { n } }]
          })
        }).catch(() => undefined)
        if (answer?.status === 202) acknowledged.push(next)
        await new Promise<void>((resolve) => setTimeout(resolve, 15))
      }
    }
    const publisher = publish()
    await waitUntil("a few acknowledged broadcasts", () => acknowledged.length, (count) => count >= 10)

    process.kill(victim.pid, signal)
    await gateway.line((l) => /worker 2 exited .*starting it again/.test(l), "worker 2's restart")
    // The killed worker's clients join again by themselves; the others never left.
    await waitUntil(
      "the killed worker's clients to rejoin",
      () => members.filter((m) => m.joins() > 1).length,
      (rejoined) => rejoined === open(victim),
      { timeoutMs: 20_000 }
    )
    const afterRejoin = acknowledged.length
    await waitUntil("more broadcasts after the rejoin", () => acknowledged.length, (count) => count >= afterRejoin + 10)
    publishing = false
    await publisher

    // Nothing acknowledged is missing anywhere: replayed (after the rejoin) or live.
    const missing = () =>
      members.map((m) => ({ name: m.name, missing: acknowledged.filter((k) => !m.numbers().has(k)) }))
        .filter((m) => m.missing.length > 0)
    await waitUntil("every client to hold every acknowledged broadcast", missing, (left) => left.length === 0, {
      timeoutMs: 10_000
    })
    // No ghost: the dead worker's entries were swept, and every member is present exactly once on every client.
    await waitUntil(
      "every client's presence to show each member once",
      () => members.map((m) => metasByKey(m.channel)),
      (states) =>
        states.every((state) =>
          Object.keys(state).length === members.length && Object.values(state).every((c) => c === 1)
        ),
      { timeoutMs: 15_000 }
    )
  })
})

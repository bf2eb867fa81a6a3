/**
 * Several real gateway processes joined by Redis, driven by unmodified supabase-js: broadcasts cross processes
 * exactly once and in order (socket and REST), `WORKERS=2` serves one port from two processes (refused without
 * `REDIS_URL`), a SIGTERMed worker's clients come back by themselves, and a Redis restart under load crashes nothing,
 * tells the clients that messages may have been missed and lets broadcasts flow again.
 */
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { Reply } from "@wedsync/protocol"
import {
  databaseUrl,
  Postgres,
  RedisServer,
  redisUrl,
  SupabaseClients,
  uniquePrefix,
  uniqueSqlName,
  waitUntil
} from "@wedsync/testkit"
import pg from "pg"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll, vi } from "vitest"
import * as Processes from "./support/Processes.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll } = SupabaseClients

// Process starts dominate: each takes a few seconds on a loaded 2-core machine.
vi.setConfig({ testTimeout: 45_000, hookTimeout: 45_000 })

interface Numbered {
  readonly payload: { readonly n: number | string }
}

interface System {
  readonly extension: string
  readonly status: string
  readonly message: string
  readonly channel: string
}

const clients: Array<SupabaseClient> = []
let anonKey = ""
beforeAll(async () => {
  anonKey = await TestTokens.anonToken()
})
afterEach(async () => {
  await closeAll(clients.splice(0), 500)
})
afterAll(() => Processes.stopAll())

const clientOf = (gateway: { readonly url: string }) => {
  const client = makeSupabaseClient(gateway.url, anonKey, { heartbeatIntervalMs: 1_000 })
  clients.push(client)
  return client
}

let topics = 0
const uniqueTopic = (label: string) => `${label}-${process.pid}-${++topics}`

/** A subscribed channel on `client` that collects `n` broadcasts and system messages. */
const listen = async (client: SupabaseClient, topic: string) => {
  const messages = inbox<Numbered>(`broadcasts on ${topic}`)
  const system = inbox<System>(`system messages on ${topic}`)
  const channel = client.channel(topic).on("broadcast", { event: "n" }, messages.push).on("system", {}, system.push)
  await subscribe(channel)
  return { channel, messages, system, numbers: () => messages.received.map((m) => m.payload.n) }
}

const send = (channel: RealtimeChannel, n: number | string) =>
  channel.send({ type: "broadcast", event: "n", payload: { n } })

describe("three processes on one Redis", () => {
  let gateways: Array<Processes.GatewayProcess> = []
  beforeAll(async () => {
    gateways = await Processes.startMany(3, { REDIS_URL: redisUrl(), REDIS_PREFIX: uniquePrefix("cluster") })
  })

  it("a broadcast from a client on process 1 reaches clients on processes 2 and 3 exactly once, in order", async () => {
    const [one, two, three] = gateways as [Processes.GatewayProcess, Processes.GatewayProcess, Processes.GatewayProcess]
    const topic = uniqueTopic("cross")
    const sender = await listen(clientOf(one), topic)
    const local = await listen(clientOf(one), topic)
    const onTwo = await listen(clientOf(two), topic)
    const onThree = [await listen(clientOf(three), topic), await listen(clientOf(three), topic)]
    const sent = Array.from({ length: 30 }, (_, i) => i + 1)
    for (const n of sent) await send(sender.channel, n)
    // The marker goes last on the same topic from the same process: a duplicate of any earlier one would be before it.
    await send(sender.channel, "end")
    for (const receiver of [local, onTwo, ...onThree]) {
      await receiver.messages.next((m) => m.payload.n === "end", 10_000)
      assert.deepStrictEqual(receiver.numbers(), [...sent, "end"])
    }
    // The sender does not hear itself (self: false), from its own process or back from another.
    assert.deepStrictEqual(sender.numbers(), [])
  })

  it("a REST broadcast to process 2 reaches the clients of process 3", async () => {
    const [, two, three] = gateways as [Processes.GatewayProcess, Processes.GatewayProcess, Processes.GatewayProcess]
    const topic = uniqueTopic("rest")
    const onThree = await listen(clientOf(three), topic)
    const response = await fetch(`${two.url}/realtime/v1/api/broadcast`, {
      method: "POST",
      headers: { apikey: anonKey, authorization: `Bearer ${anonKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        messages: [{ topic, event: "n", payload: { n: 1 } }, { topic, event: "n", payload: { n: 2 } }]
      })
    })
    assert.strictEqual(response.status, 202)
    await onThree.messages.next((m) => m.payload.n === 2)
    assert.deepStrictEqual(onThree.numbers(), [1, 2])
  })
})

describe("WORKERS", () => {
  it("WORKERS=2 is refused without REDIS_URL (exit 78, one message) and serves one port with it", async () => {
    const refused = Processes.start({ WORKERS: "2" })
    const failure = await refused.then(
      () => assert.fail("WORKERS=2 without REDIS_URL started"),
      (error: Error) => error.message
    )
    assert.match(failure, /gateway exited \(78\)/)
    assert.include(failure, `WORKERS="2" (2 processes): needs REDIS_URL`)

    const gateway = await Processes.start({
      WORKERS: "2",
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: uniquePrefix("workers")
    })
    const topic = uniqueTopic("workers")
    const receivers = await Promise.all(Array.from({ length: 16 }, () => listen(clientOf(gateway), topic)))
    // Every scrape is a new connection; the kernel spreads them (and the clients' sockets) over both workers.
    const open = (scrape: Processes.WorkerScrape) => Processes.valueOf(scrape.text, "wedsync_connection_open") ?? 0
    const byWorker = await Processes.scrapeWorkers(gateway.url, 2)
    assert.deepStrictEqual([...byWorker.keys()].sort(), ["1", "2"])
    assert.strictEqual([...byWorker.values()].reduce((sum, scrape) => sum + open(scrape), 0), 16)
    assert.isTrue([...byWorker.values()].every((scrape) => open(scrape) > 0), "both workers hold clients")
    const sender = receivers[0]!
    await send(sender.channel, "across")
    for (const receiver of receivers.slice(1)) await receiver.messages.next((m) => m.payload.n === "across")

    // SIGTERM of one worker under load: its clients are drained, reconnect by themselves to the port, rejoin, and
    // hear broadcasts again; the primary starts the worker again.
    const victim = byWorker.get("2")!
    const victimClients = open(victim)
    let load = 0
    const loadTimer = setInterval(() => void send(sender.channel, `load-${++load}`), 20)
    try {
      process.kill(victim.pid, "SIGTERM")
      await gateway.line((l) => l.includes("worker 2 exited with code 0; starting it again"), "worker 2's restart")
      const restarted = await Processes.scrapeWorkers(gateway.url, 2, (s) => s.worker !== "2" || s.pid !== victim.pid)
      assert.notStrictEqual(restarted.get("2")!.pid, victim.pid)
    } finally {
      clearInterval(loadTimer)
    }
    assert.isAbove(victimClients, 0)
    // Exactly the clients that were on worker 2 were asked to leave by its drain.
    const drained = receivers.filter((r) => r.system.received.some((m) => m.message === "Server requested disconnect"))
    assert.strictEqual(drained.length, victimClients)
    // Clients that were on worker 2 rejoin (the first reconnect waits about a second); then every receiver hears.
    const after = async () => {
      await send(sender.channel, "after")
      return receivers.slice(1).filter((r) => !r.messages.received.some((m) => m.payload.n === "after")).length
    }
    await waitUntil("every receiver to hear a broadcast after the restart", after, (deaf) => deaf === 0, {
      timeoutMs: 15_000,
      intervalMs: 500
    })
    assert.isTrue(gateway.child.exitCode === null, "the primary keeps running")
    const stopped = await gateway.terminate()
    assert.deepStrictEqual(stopped, { code: 0, signal: null })
    assert.isTrue(gateway.lines.some((l) => l.includes("worker 1 stopped with code 0")))
  })
})

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("WORKERS: a primary killed outright", () => {
  it("leaves no worker behind: each drains and exits when its primary is gone", async () => {
    const gateway = await Processes.start({
      WORKERS: "2",
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: uniquePrefix("orphans")
    })
    const pids = [...(await Processes.scrapeWorkers(gateway.url, 2)).values()].map((scrape) => scrape.pid)
    assert.isTrue(pids.every(alive))
    await gateway.kill()
    await waitUntil("both workers to exit", () => pids.filter(alive).length, (n) => n === 0, { timeoutMs: 10_000 })
  })
})

describe("WORKERS with DATABASE_URL", () => {
  it("every worker streams Postgres Changes from a slot of its own, so all of them are ready", async () => {
    const slot = uniqueSqlName("workers")
    const publication = uniqueSqlName("workers_pub")
    const db = new pg.Client({ connectionString: databaseUrl() })
    await db.connect()
    try {
      const gateway = await Processes.start({
        WORKERS: "2",
        REDIS_URL: redisUrl(),
        REDIS_PREFIX: uniquePrefix("workers-pg"),
        DATABASE_URL: databaseUrl(),
        REPLICATION_SLOT: slot,
        REPLICATION_PUBLICATION: publication,
        REPLICATION_START_DELAY_MS: "0"
      })
      const ready = new Map<number, number>()
      await waitUntil(
        "both workers ready",
        async () => {
          const answer = await Processes.getFresh(`${gateway.url}/ready`)
          ready.set((JSON.parse(answer.body) as { readonly worker: number }).worker, answer.status)
          return ready
        },
        (seen) => seen.get(1) === 200 && seen.get(2) === 200,
        { timeoutMs: 20_000, intervalMs: 20 }
      )
      const { rows } = await db.query<{ slot_name: string }>(
        "select slot_name from pg_replication_slots where slot_name like $1 order by slot_name",
        [`${slot}%`]
      )
      assert.deepStrictEqual(rows.map((r) => r.slot_name), [slot, `${slot}_w2`])
      assert.deepStrictEqual(await gateway.terminate(), { code: 0, signal: null })
    } finally {
      await Processes.stopAll()
      for (const name of [slot, `${slot}_w2`]) await Postgres.dropReplicationSlot(db, name)
      await db.query(`drop publication if exists ${publication}`)
      await db.end()
    }
  })
})

describe("a Redis restart under load", () => {
  it("crashes nothing, keeps local delivery, tells every channel that messages may have been missed, then flows again", async () => {
    const redis = await RedisServer.start()
    try {
      const env = { REDIS_URL: redis.url, REDIS_PREFIX: uniquePrefix("restart") }
      const [one, two] = (await Processes.startMany(2, env)) as [Processes.GatewayProcess, Processes.GatewayProcess]
      const topic = uniqueTopic("restart")
      const sender = await listen(clientOf(one), topic)
      const local = await listen(clientOf(one), topic)
      const remote = await listen(clientOf(two), topic)
      let load = 0
      const loadTimer = setInterval(() => void send(sender.channel, ++load), 10)
      try {
        await remote.messages.next((m) => m.payload.n === 5)
        await redis.kill()
        const ready = await waitUntil(
          "process 2 to report its broker disconnected",
          async () => JSON.parse((await Processes.getFresh(`${two.url}/ready`)).body) as Record<string, unknown>,
          (body) => body["broker"] === "disconnected"
        )
        assert.strictEqual(ready["ready"], true, "a process without Redis stays ready (degraded)")
        // Local fan-out goes on while Redis is down.
        const during = load
        await local.messages.next((m) => typeof m.payload.n === "number" && m.payload.n > during + 5)
        await redis.restart()
        const notice = await remote.system.next((m) => m.extension === "broadcast", 15_000)
        assert.deepStrictEqual(notice, {
          extension: "broadcast",
          status: "error",
          message: Reply.MESSAGES_MAY_HAVE_BEEN_MISSED,
          channel: topic
        })
        // After the notice, broadcasts from process 1 reach process 2 again.
        const resumed = load
        await remote.messages.next((m) => typeof m.payload.n === "number" && m.payload.n > resumed, 10_000)
      } finally {
        clearInterval(loadTimer)
      }
      // One notice per channel on each process, and the local receiver's stream has no hole.
      assert.lengthOf(remote.system.received.filter((m) => m.extension === "broadcast"), 1)
      const localNumbers = local.numbers().filter((n): n is number => typeof n === "number")
      assert.deepStrictEqual(localNumbers, Array.from({ length: localNumbers.length }, (_, i) => i + 1))
      const received = remote.numbers().filter((n): n is number => typeof n === "number")
      assert.deepStrictEqual(received, [...received].sort((a, b) => a - b), "in order, no duplicates")
      assert.strictEqual(new Set(received).size, received.length)
      for (const gateway of [one, two]) {
        assert.strictEqual(gateway.child.exitCode, null, "no crash")
        assert.strictEqual((await Processes.getFresh(`${gateway.url}/ready`)).status, 200)
        const metrics = (await Processes.getFresh(`${gateway.url}/metrics`)).body
        assert.match(metrics, /^wedsync_hub_broker_gaps_total [1-9]/m)
      }
      assert.match(
        (await Processes.getFresh(`${one.url}/metrics`)).body,
        /^wedsync_hub_broker_lost_total\{reason="redis"\} [1-9]/m
      )
    } finally {
      await Processes.stopAll()
      await redis.stop()
    }
  })
})

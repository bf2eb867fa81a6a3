/**
 * Upstream mode end to end: one gateway process plays hosted Supabase, another runs in upstream mode
 * (`SUPABASE_URL` pointing at the first, `SUPABASE_SERVICE_ROLE_KEY` a service key of it), and unmodified supabase-js
 * clients sit on both sides. Broadcasts flow both ways exactly once (no echo through the upstream), upstream presence
 * reaches local clients, the local channel policy still holds, the upstream's `/metrics` shows one pooled socket, a
 * restarted upstream is reported to local clients with a `system` message, and without `DATABASE_URL` Postgres Changes
 * come from the upstream with the local row policy applied; a wedding calendar (file or query) pre-warms the channels of
 * the weddings ramping up.
 */
import type { SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { Reply } from "@wedsync/protocol"
import { databaseUrl, PostgresCluster, RawClient, SupabaseClients, uniqueSqlName, waitUntil } from "@wedsync/testkit"
import { Redacted } from "effect"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll, vi } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import * as Processes from "./support/Processes.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll } = SupabaseClients

vi.setConfig({ testTimeout: 45_000, hookTimeout: 45_000 })

/** Different secrets: the local gateway's users are not the project's, only the pool holds a project key. */
const HOSTED_SECRET = "hosted-project-secret-0123456789abcdef0123"
const LOCAL_SECRET = "local-gateway-secret-0123456789abcdef01234"

interface Numbered {
  readonly payload: { readonly n: number; readonly from: string }
}

let hosted: Processes.GatewayProcess
let local: Processes.GatewayProcess
let hostedAnon: string
let localAnon: string
const clients: Array<SupabaseClient> = []

beforeAll(async () => {
  hosted = await Processes.start({ JWT_SECRET: HOSTED_SECRET })
  const serviceKey = await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET })
  local = await Processes.start({
    JWT_SECRET: LOCAL_SECRET,
    SUPABASE_URL: hosted.url,
    SUPABASE_SERVICE_ROLE_KEY: serviceKey,
    UPSTREAM_IDLE_GRACE: "200 millis"
  })
  hostedAnon = await TestTokens.anonToken({ secret: HOSTED_SECRET })
  localAnon = await TestTokens.anonToken({ secret: LOCAL_SECRET })
})
afterEach(async () => {
  await closeAll(clients.splice(0))
})
afterAll(async () => {
  await Processes.stopAll()
})

const client = (gateway: Processes.GatewayProcess, key: string) => {
  const c = makeSupabaseClient(gateway.url, key)
  clients.push(c)
  return c
}

const hostedMetrics = async () => {
  const text = (await Processes.getFresh(`${hosted.url}/metrics`)).body
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1])
  return { open: value("wedsync_connection_open"), channels: value("wedsync_connection_channels") }
}

describe("upstream mode", () => {
  it("broadcasts cross between local and upstream-side clients exactly once each way", async () => {
    const topic = `room-${Date.now()}`
    const boxes = {
      local1: inbox<Numbered>("local 1"),
      local2: inbox<Numbered>("local 2"),
      phone: inbox<Numbered>("upstream phone")
    }
    const local1 = client(local, localAnon).channel(topic).on("broadcast", { event: "msg" }, boxes.local1.push)
    const local2 = client(local, localAnon).channel(topic).on("broadcast", { event: "msg" }, boxes.local2.push)
    const phone = client(hosted, hostedAnon).channel(topic).on("broadcast", { event: "msg" }, boxes.phone.push)
    await Promise.all([subscribe(local1), subscribe(local2), subscribe(phone)])
    // Two local subscribers, one pooled upstream socket and channel; plus the phone's.
    assert.deepStrictEqual(await hostedMetrics(), { open: 2, channels: 2 })

    await local1.send({ type: "broadcast", event: "msg", payload: { n: 1, from: "local" } })
    await phone.send({ type: "broadcast", event: "msg", payload: { n: 2, from: "phone" } })
    // A last message from each side: once they are in, anything sent twice (or echoed back) would be in too.
    await local2.send({ type: "broadcast", event: "msg", payload: { n: 3, from: "local" } })
    await phone.send({ type: "broadcast", event: "msg", payload: { n: 4, from: "phone" } })
    await Promise.all([
      boxes.local1.next((m) => m.payload.n === 3),
      boxes.local1.next((m) => m.payload.n === 4),
      boxes.local2.next((m) => m.payload.n === 4),
      boxes.phone.next((m) => m.payload.n === 3)
    ])
    // supabase-js's default is `self: false`: a sender does not get its own broadcast. Each sender's messages keep
    // their order; two senders' messages have none between them.
    const ns = (box: { received: ReadonlyArray<Numbered> }) => box.received.map((m) => m.payload.n).sort()
    assert.deepStrictEqual(ns(boxes.local1), [2, 3, 4])
    assert.deepStrictEqual(ns(boxes.local2), [1, 2, 4])
    assert.deepStrictEqual(ns(boxes.phone), [1, 3])
    // A REST broadcast on the local gateway goes upstream too, once.
    const rest = await fetch(`${local.url}/realtime/v1/api/broadcast`, {
      method: "POST",
      headers: { apikey: localAnon, authorization: `Bearer ${localAnon}`, "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ topic, event: "msg", payload: { n: 5, from: "rest" } }] })
    })
    assert.strictEqual(rest.status, 202)
    await boxes.phone.next((m) => m.payload.n === 5)
    await boxes.local1.next((m) => m.payload.n === 5)
    await phone.send({ type: "broadcast", event: "msg", payload: { n: 6, from: "phone" } })
    await boxes.local2.next((m) => m.payload.n === 6)
    assert.deepStrictEqual(ns(boxes.phone), [1, 3, 5])
    assert.deepStrictEqual(ns(boxes.local2), [1, 2, 4, 5, 6])
  })

  it("a REST batch to 500 topics nobody here listens to joins no upstream channel; the project still gets each", async () => {
    const localMetric = async (name: string) => {
      const text = (await Processes.getFresh(`${local.url}/metrics`)).body
      return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN)
    }
    const stamp = Date.now()
    const topics = Array.from({ length: 500 }, (_, i) => `rest-only-${stamp}-${i}`)
    // A project-side phone on two of the topics; a local subscriber on a third, whose topic is held as before.
    const phoneBox = inbox<Numbered>("the project side")
    const phone = client(hosted, hostedAnon)
    const watched = [topics[17]!, topics[499]!].map((topic) =>
      phone.channel(topic).on("broadcast", { event: "msg" }, phoneBox.push)
    )
    await Promise.all(watched.map((channel) => subscribe(channel)))
    const localBox = inbox<Numbered>("the local subscriber")
    const held = client(local, localAnon).channel(topics[250]!).on("broadcast", { event: "msg" }, localBox.push)
    await subscribe(held)
    const channelsBefore = await localMetric("wedsync_upstream_channels")
    const rest = await fetch(`${local.url}/realtime/v1/api/broadcast`, {
      method: "POST",
      headers: { apikey: localAnon, authorization: `Bearer ${localAnon}`, "content-type": "application/json" },
      body: JSON.stringify({
        messages: topics.map((topic, n) => ({ topic, event: "msg", payload: { n, from: "rest" } }))
      })
    })
    assert.strictEqual(rest.status, 202)
    await phoneBox.next((m) => m.payload.n === 17)
    await phoneBox.next((m) => m.payload.n === 499)
    assert.deepStrictEqual((await localBox.next()).payload, { n: 250, from: "rest" })
    // Before: 499 upstream channels joined (and held through the idle grace) for one message each.
    assert.strictEqual(await localMetric("wedsync_upstream_channels"), channelsBefore)
    assert.deepStrictEqual(phoneBox.received.map((m) => m.payload.n).sort((a, b) => a - b), [17, 499])
  })

  it("a project client's broadcasts that realtime-js cannot handle are dropped and counted; the relay goes on", async () => {
    const dropped = async () => {
      const text = (await Processes.getFresh(`${local.url}/metrics`)).body
      return Number(/^wedsync_upstream_messages_dropped_total (\S+)$/m.exec(text)?.[1] ?? Number.NaN)
    }
    const before = await dropped()
    const topic = `hostile-${Date.now()}`
    const box = inbox<Numbered>("the well-formed broadcast")
    const localChannel = client(local, localAnon).channel(topic).on("broadcast", { event: "msg" }, box.push)
    await subscribe(localChannel)
    const hostile = await RawClient.connect(
      `${hosted.url.replace("http", "ws")}/realtime/v1/websocket?apikey=${hostedAnon}&vsn=2.0.0`
    )
    try {
      const joinRef = hostile.makeRef()
      hostile.send(RawClient.v2(joinRef, joinRef, `realtime:${topic}`, "phx_join", { config: { private: false } }))
      await hostile.next(RawClient.isReplyTo(joinRef))
      const push = (payload: unknown) =>
        hostile.send(RawClient.v2(joinRef, hostile.makeRef(), `realtime:${topic}`, "broadcast", payload))
      // A top-level `ids` makes realtime-js take the broadcast for a Postgres change and throw in the socket's
      // message handler (before the guard: an uncaught exception that ended the gateway); no `event` at all.
      push({ type: "broadcast", event: "msg", payload: { n: 1, from: "hostile" }, ids: [1] })
      push({ type: "broadcast", payload: { n: 2, from: "hostile" } })
      push({ type: "broadcast", event: "msg", payload: { n: 3, from: "project" } })
      assert.deepStrictEqual((await box.next()).payload, { n: 3, from: "project" })
      assert.deepStrictEqual(box.received.map((m) => m.payload.n), [3])
      await waitUntil("both hostile frames counted", dropped, (n) => n - before === 2)
    } finally {
      await hostile.close()
    }
  })

  it("binary broadcasts cross both ways byte for byte; a JSON one beside them stays JSON", async () => {
    const topic = `bytes-${Date.now()}`
    interface Received {
      readonly event: string
      readonly payload: unknown
    }
    const boxes = { local: inbox<Received>("local"), phone: inbox<Received>("upstream phone") }
    const mine = client(local, localAnon).channel(topic).on("broadcast", { event: "*" }, boxes.local.push)
    const phone = client(hosted, hostedAnon).channel(topic).on("broadcast", { event: "*" }, boxes.phone.push)
    await Promise.all([subscribe(mine), subscribe(phone)])
    const bytesOf = (payload: unknown) => [...new Uint8Array(payload as ArrayBuffer)]
    // Bytes that are not valid UTF-8 or JSON: relayed as text, they would be mangled.
    await mine.send({ type: "broadcast", event: "up", payload: new Uint8Array([0, 255, 1, 254, 2]).buffer })
    await phone.send({ type: "broadcast", event: "down", payload: new Uint8Array([9, 128, 0, 7]).buffer })
    await mine.send({ type: "broadcast", event: "json", payload: { n: 1 } })
    const up = await boxes.phone.next((m) => m.event === "up")
    const down = await boxes.local.next((m) => m.event === "down")
    assert.instanceOf(up.payload, ArrayBuffer)
    assert.deepStrictEqual(bytesOf(up.payload), [0, 255, 1, 254, 2])
    assert.instanceOf(down.payload, ArrayBuffer)
    assert.deepStrictEqual(bytesOf(down.payload), [9, 128, 0, 7])
    const json = await boxes.phone.next((m) => m.event === "json")
    assert.deepStrictEqual(json.payload, { n: 1 })
    // Once each: the local sender does not hear its own back through the upstream.
    assert.deepStrictEqual(boxes.local.received.map((m) => m.event), ["down"])
    assert.deepStrictEqual(boxes.phone.received.map((m) => m.event), ["up", "json"])
  })

  it("the project's private broadcasts are in the local history: a local client coming back replays them", async () => {
    const wedding = `w-up-${Date.now()}`
    const topic = `wedding:${wedding}`
    interface Received {
      readonly payload: { readonly n: number }
      readonly meta?: { readonly id?: string; readonly replayed?: boolean }
    }
    const userClient = async () => {
      const token = await TestTokens.userToken({ sub: `u-${wedding}`, weddingIds: [wedding], secret: LOCAL_SECRET })
      const c = makeSupabaseClient(local.url, token, { accessToken: token })
      clients.push(c)
      return c
    }
    const since = Date.now()
    const live = inbox<Received>("live")
    const holder = (await userClient()).channel(topic, { config: { private: true } }).on(
      "broadcast",
      { event: "n" },
      live.push
    )
    await subscribe(holder)
    // On the project: a private channel of its own service key (the project lets service_role into any topic).
    const hostedService = await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET })
    const phone = client(hosted, hostedService).channel(topic, { config: { private: true } })
    await subscribe(phone)
    for (let n = 1; n <= 3; n++) await phone.send({ type: "broadcast", event: "n", payload: { n } })
    await live.next((m) => m.payload.n === 3)
    assert.deepStrictEqual(live.received.map((m) => m.payload.n), [1, 2, 3])
    const ids = live.received.map((m) => m.meta?.id)
    for (const id of ids) assert.match(id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/)

    const replayed = inbox<Received>("replayed")
    const back = (await userClient()).channel(topic, {
      config: { private: true, broadcast: { replay: { since, limit: 25 } } }
    }).on("broadcast", { event: "n" }, replayed.push)
    await subscribe(back)
    await replayed.next((m) => m.payload.n === 3)
    assert.deepStrictEqual(replayed.received.map((m) => [m.payload.n, m.meta?.replayed, m.meta?.id]), [
      [1, true, ids[0]],
      [2, true, ids[1]],
      [3, true, ids[2]]
    ])
    // A public topic has no history: nothing to replay, and its broadcasts carry no local id.
    const open = inbox<Received>("public")
    const publicTopic = `open-${wedding}`
    const listener = client(local, localAnon).channel(publicTopic).on("broadcast", { event: "n" }, open.push)
    const publicPhone = client(hosted, hostedAnon).channel(publicTopic)
    await Promise.all([subscribe(listener), subscribe(publicPhone)])
    await publicPhone.send({ type: "broadcast", event: "n", payload: { n: 9 } })
    const plain = await open.next((m) => m.payload.n === 9)
    assert.isUndefined(plain.meta?.id)
  })

  it("200 local sockets on 20 topics hold one upstream socket and 20 upstream channels; each gets a broadcast once", async () => {
    const stamp = Date.now()
    const topics = Array.from({ length: 20 }, (_, i) => `realtime:many-${stamp}-${i}`)
    const url = `${local.url.replace("http", "ws")}/realtime/v1/websocket?apikey=${localAnon}&vsn=2.0.0`
    const sockets = await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(url)))
    try {
      await Promise.all(sockets.map(async (socket, i) => {
        const ref = socket.makeRef()
        socket.send(RawClient.v2(ref, ref, topics[i % 20]!, "phx_join", { config: { private: false } }))
        await socket.next(RawClient.isReplyTo(ref))
      }))
      // The phone of the broadcast test may still be leaving: wait for this test's numbers.
      await waitUntil(
        "one pooled socket, 20 upstream channels",
        hostedMetrics,
        (m) => m.open === 1 && m.channels === 20
      )
      const phone = client(hosted, hostedAnon).channel(topics[7]!.slice("realtime:".length))
      await subscribe(phone)
      await phone.send({ type: "broadcast", event: "msg", payload: { n: 1, from: "phone" } })
      await phone.send({ type: "broadcast", event: "msg", payload: { n: 2, from: "phone" } })
      const onTopic = sockets.filter((_, i) => i % 20 === 7)
      await Promise.all(onTopic.map((socket) => socket.next(RawClient.isEvent("broadcast"), 10_000)))
      await Promise.all(onTopic.map((socket) => socket.next(RawClient.isEvent("broadcast"), 10_000)))
      for (const socket of sockets) {
        const broadcasts = socket.received.filter(RawClient.isEvent("broadcast"))
        assert.strictEqual(broadcasts.length, sockets.indexOf(socket) % 20 === 7 ? 2 : 0)
      }
    } finally {
      await Promise.all(sockets.map((socket) => socket.close()))
    }
  })

  it("one client joining 40 channels at once has them subscribed upstream in one batch, not 40 one after another", async () => {
    const batches = async () => {
      const text = (await Processes.getFresh(`${local.url}/metrics`)).body
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0)
      return {
        count: value("wedsync_upstream_batches_total"),
        sum: value("wedsync_upstream_batched_channels_total")
      }
    }
    const before = await batches()
    const stamp = Date.now()
    const phone = client(local, localAnon)
    const received = inbox<Numbered>("the project's broadcast")
    const channels = Array.from(
      { length: 40 },
      (_, i) => phone.channel(`batch-${stamp}-${i}`).on("broadcast", { event: "msg" }, received.push)
    )
    await Promise.all(channels.map((channel) => subscribe(channel)))
    const after = await batches()
    assert.strictEqual(after.sum - before.sum, 40, "every topic went upstream")
    // Joined one at a time, each topic would be a batch of its own (40). Together, the joins begun in one turn of the
    // event loop are one batch: usually one or two, a few more when the frames arrive in several reads (a loaded CI).
    assert.isAtMost(after.count - before.count, 10, `batches: ${after.count - before.count}`)
    // And the upstream channels are live: the project's broadcast on the last topic reaches the client.
    const project = client(hosted, hostedAnon).channel(`batch-${stamp}-39`)
    await subscribe(project)
    await project.send({ type: "broadcast", event: "msg", payload: { n: 1, from: "project" } })
    assert.deepStrictEqual((await received.next()).payload, { n: 1, from: "project" })
  })

  it("the project's presence reaches local clients; the local channel policy still refuses", async () => {
    const topic = `presence-${Date.now()}`
    const phone = client(hosted, hostedAnon).channel(topic)
    await subscribe(phone)
    await phone.track({ who: "phone" })
    const localChannel = client(local, localAnon).channel(topic, { config: { presence: { enabled: true } } })
    localChannel.on("presence", { event: "sync" }, () => {})
    await subscribe(localChannel)
    await waitUntil(
      "the phone in the local presence",
      () => Object.values(localChannel.presenceState()).flat().map((p) => (p as { who?: string }).who),
      (who) => who.includes("phone")
    )
    // Later joins arrive as diffs.
    const second = client(hosted, hostedAnon).channel(topic)
    await subscribe(second)
    await second.track({ who: "tablet" })
    await waitUntil(
      "the tablet in the local presence",
      () => Object.values(localChannel.presenceState()).flat().map((p) => (p as { who?: string }).who),
      (who) => who.includes("tablet") && who.includes("phone")
    )

    // Presence keys are any client's strings: project clients named after Object.prototype members are in a local
    // joiner's presence_state too (realtime-js's own presenceState() drops `__proto__`; the relay reads phoenix's).
    for (const key of ["__proto__", "constructor"]) {
      const odd = client(hosted, hostedAnon).channel(topic, { config: { presence: { key } } })
      await subscribe(odd)
      await odd.track({ who: key })
    }
    const url = `${local.url.replace("http", "ws")}/realtime/v1/websocket?apikey=${localAnon}&vsn=2.0.0`
    const raw = await RawClient.connect(url)
    try {
      const keysSeen = await waitUntil("the odd keys in a local presence_state", async () => {
        const ref = raw.makeRef()
        raw.send(RawClient.v2(ref, ref, `realtime:${topic}`, "phx_join", { config: { presence: { enabled: true } } }))
        const state = await raw.next((frame) =>
          RawClient.isEvent("presence_state")(frame) && (frame as Array<unknown>)[0] === ref
        )
        return Object.keys((state as [unknown, unknown, unknown, unknown, object])[4]).sort()
      }, (keys) => keys.includes("__proto__") && keys.includes("constructor"))
      assert.includeMembers(keysSeen, ["__proto__", "constructor"])
    } finally {
      await raw.close()
    }

    // An anon user may not join a private wedding channel on the local gateway, whatever the pool's key could do.
    const refused = client(local, localAnon).channel("wedding:w-1", { config: { private: true } })
    const error = await subscribe(refused).then(() => undefined, (e: Error) => e)
    assert.ok(error?.message.includes("Unauthorized"), String(error))
  })

  it("a killed and restarted upstream: local subscribers are told messages may have been missed, then hear it again", async () => {
    const topic = `restart-${Date.now()}`
    const system = inbox<{ readonly status: string; readonly message: string }>("system message")
    const box = inbox<Numbered>("local")
    const localChannel = client(local, localAnon).channel(topic)
      .on("broadcast", { event: "msg" }, box.push)
      .on("system", {}, system.push)
    await subscribe(localChannel)
    await hosted.kill()
    hosted = await Processes.start({ JWT_SECRET: HOSTED_SECRET, PORT: String(hosted.port) })
    const told = await system.next((m) => m.message.startsWith(Reply.MESSAGES_MAY_HAVE_BEEN_MISSED), 20_000)
    assert.strictEqual(told.status, "error")
    const phone = client(hosted, hostedAnon).channel(topic)
    await subscribe(phone)
    await phone.send({ type: "broadcast", event: "msg", payload: { n: 1, from: "phone" } })
    await box.next((m) => m.payload.n === 1)
    await phone.send({ type: "broadcast", event: "msg", payload: { n: 2, from: "phone" } })
    await box.next((m) => m.payload.n === 2)
    assert.deepStrictEqual(box.received.map((m) => m.payload.n), [1, 2])
  })
})

describe("upstream mode with two relay processes", () => {
  let project: Processes.GatewayProcess
  let relay1: Processes.GatewayProcess
  let relay2: Processes.GatewayProcess

  beforeAll(async () => {
    project = await Processes.start({ JWT_SECRET: HOSTED_SECRET })
    const relayEnv = {
      JWT_SECRET: LOCAL_SECRET,
      SUPABASE_URL: project.url,
      SUPABASE_SERVICE_ROLE_KEY: await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET })
    }
    ;[relay1, relay2] = await Promise.all([Processes.start(relayEnv), Processes.start(relayEnv)])
  })
  afterAll(async () => {
    await Promise.all([relay1?.terminate(), relay2?.terminate(), project?.terminate()])
  })

  type Who = { readonly who?: string }
  /** The `who` of every meta in a channel's presence, sorted. */
  const whoIn = (channel: ReturnType<SupabaseClient["channel"]>) =>
    Object.values(channel.presenceState()).flat().map((p) => (p as Who).who ?? "?").sort()

  it("local presence crosses between relays through the project, once each, and leaves with its client", async () => {
    const topic = `relayed-presence-${Date.now()}`
    const join = async (gateway: Processes.GatewayProcess, key: string) => {
      const channel = client(gateway, localAnon).channel(topic, { config: { presence: { key } } })
      channel.on("presence", { event: "sync" }, () => {})
      await subscribe(channel)
      return channel
    }
    const alice = await join(relay1, "alice")
    await alice.track({ who: "alice" })
    const bob = await join(relay2, "bob")
    await bob.track({ who: "bob" })
    // Each sees the other (relayed) and itself (local), once: a relay skips its own aggregate coming back.
    await waitUntil("bob seen on relay 1", () => whoIn(alice), (who) => who.join() === "alice,bob")
    await waitUntil("alice seen on relay 2", () => whoIn(bob), (who) => who.join() === "alice,bob")
    assert.deepStrictEqual(Object.keys(bob.presenceState()).sort(), ["alice", "bob"])
    // A second client on relay 1 is relayed too; a client straight on the project sees one entry per relay.
    const carol = await join(relay1, "carol")
    await carol.track({ who: "carol" })
    await waitUntil("carol seen on relay 2", () => whoIn(bob), (who) => who.join() === "alice,bob,carol")
    const phone = client(project, hostedAnon).channel(topic)
    phone.on("presence", { event: "sync" }, () => {})
    await subscribe(phone)
    const aggregates = await waitUntil(
      "both relays' aggregates on the project",
      () => Object.values(phone.presenceState()).flat() as ReadonlyArray<Record<string, unknown>>,
      (metas) => metas.length === 2
    )
    const relayed = aggregates.map((meta) =>
      (meta["entries"] as ReadonlyArray<readonly [string, Who]>).map(([key]) => key).sort().join()
    ).sort()
    assert.deepStrictEqual(relayed, ["alice,carol", "bob"])
    // Alice leaves: relay 2's clients see her go, and carol stay.
    await alice.unsubscribe()
    await waitUntil("alice gone on relay 2", () => whoIn(bob), (who) => who.join() === "bob,carol")
  })
})

describe("upstream mode without DATABASE_URL", () => {
  let cluster: PostgresCluster.Cluster
  let db: pg.Client
  let project: Processes.GatewayProcess
  let relay: Processes.GatewayProcess

  beforeAll(async () => {
    // A throwaway cluster (logical replication from its start) so the shared server's settings do not matter.
    cluster = await PostgresCluster.start()
    db = new pg.Client({ connectionString: cluster.url })
    await db.connect()
    await db.query("create table public.timeline_items (id serial primary key, wedding_id text not null, title text)")
    await db.query("alter table public.timeline_items replica identity full")
    await db.query("create publication wedsync_upstream for table public.timeline_items")
    project = await Processes.start({
      JWT_SECRET: HOSTED_SECRET,
      DATABASE_URL: cluster.url,
      REPLICATION_PUBLICATION: "wedsync_upstream",
      REPLICATION_START_DELAY_MS: "0"
    })
    relay = await Processes.start({
      JWT_SECRET: LOCAL_SECRET,
      SUPABASE_URL: project.url,
      SUPABASE_SERVICE_ROLE_KEY: await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET })
    })
  })
  afterAll(async () => {
    await project?.terminate()
    await relay?.terminate()
    await db?.end()
    await cluster?.stop()
  })

  it("Postgres Changes come from the upstream, authorized by the local row policy", async () => {
    const token = await TestTokens.userToken({ weddingIds: ["w-1"], secret: LOCAL_SECRET })
    const c = makeSupabaseClient(relay.url, localAnon, { accessToken: token })
    clients.push(c)
    const changes = inbox<{ readonly eventType: string; readonly new: { readonly title?: string } }>("change")
    const subscribed = inbox<{ readonly extension: string; readonly status: string; readonly message: string }>(
      "system"
    )
    const channel = c.channel("timeline")
      .on("postgres_changes", { event: "*", schema: "public", table: "timeline_items" }, changes.push)
      .on("system", {}, subscribed.push)
    await subscribe(channel)
    await subscribed.next((m) => m.extension === "postgres_changes" && m.status === "ok")
    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-2', 'not yours'), ('w-1', 'vows')")
    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-1', 'cake')")
    await changes.next((m) => m.new.title === "cake")
    assert.deepStrictEqual(changes.received.map((m) => [m.eventType, m.new.title]), [["INSERT", "vows"], [
      "INSERT",
      "cake"
    ]])

    // The project restarts: what is committed while it is away is lost upstream, and the subscriber is told so once
    // the changes flow again; the rows after that arrive.
    await project.kill()
    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-1', 'while away')")
    project = await Processes.start({
      JWT_SECRET: HOSTED_SECRET,
      DATABASE_URL: cluster.url,
      REPLICATION_PUBLICATION: "wedsync_upstream",
      REPLICATION_START_DELAY_MS: "0",
      PORT: String(project.port)
    })
    const told = await subscribed.next((m) => m.extension === "postgres_changes" && m.status === "error", 20_000)
    assert.strictEqual(told.message, Reply.CHANGES_MAY_HAVE_BEEN_MISSED)
    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-1', 'first dance')")
    await changes.next((m) => m.new.title === "first dance", 20_000)
  })
})

describe("upstream mode with a wedding calendar", () => {
  let project: Processes.GatewayProcess
  let relay: Processes.GatewayProcess
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "upstream-calendar-"))
    const file = join(dir, "calendar.json")
    const hour = 3_600_000
    await writeFile(
      file,
      JSON.stringify({
        weddings: [
          // Ramping up now (the ramp is 2 hours by default): warm.
          { id: "w-today", start: new Date(Date.now() + hour).toISOString(), suppliers: 5 },
          // Tomorrow: not yet.
          { id: "w-tomorrow", start: new Date(Date.now() + 24 * hour).toISOString(), suppliers: 5 }
        ]
      })
    )
    project = await Processes.start({ JWT_SECRET: HOSTED_SECRET })
    relay = await Processes.start({
      JWT_SECRET: LOCAL_SECRET,
      SUPABASE_URL: project.url,
      SUPABASE_SERVICE_ROLE_KEY: await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET }),
      WEDDING_CALENDAR_FILE: file
    })
  })
  afterAll(async () => {
    await project?.terminate()
    await relay?.terminate()
    await rm(dir, { recursive: true, force: true })
  })

  it("holds the upstream channel of today's wedding before any phone joins, and a local join reuses it", async () => {
    const metrics = async () => {
      const text = (await Processes.getFresh(`${project.url}/metrics`)).body
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1])
      return { open: value("wedsync_connection_open"), channels: value("wedsync_connection_channels") }
    }
    await waitUntil("the warm channel upstream", metrics, (m) => m.open === 1 && m.channels === 1)

    const token = await TestTokens.userToken({ weddingIds: ["w-today"], secret: LOCAL_SECRET })
    const c = makeSupabaseClient(relay.url, localAnon, { accessToken: token })
    clients.push(c)
    const box = inbox<Numbered>("wedding broadcast")
    const local = c.channel("wedding:w-today", { config: { private: true } })
      .on("broadcast", { event: "msg" }, box.push)
    await subscribe(local)
    assert.deepStrictEqual(await metrics(), { open: 1, channels: 1 })

    const serviceKey = await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET })
    const planner = client(project, serviceKey).channel("wedding:w-today", { config: { private: true } })
    await subscribe(planner)
    await planner.send({ type: "broadcast", event: "msg", payload: { n: 1, from: "planner" } })
    await box.next((m) => m.payload.n === 1)
  })
})

describe("upstream mode with WEDDING_CALENDAR_SQL", () => {
  const schema = uniqueSqlName("upcal")
  const db = new pg.Client({ connectionString: databaseUrl() })
  let project: Processes.GatewayProcess
  let relay: RunningGateway

  beforeAll(async () => {
    await db.connect()
    await db.query(`create schema ${schema}`)
    await db.query(`create table ${schema}.weddings (wedding_id text, starts_at timestamptz)`)
    // Ramping up now (the ramp is 2 hours by default), and one next week.
    await db.query(
      `insert into ${schema}.weddings values ('w-sql', now() + interval '1 hour'), ('w-next-week', now() + interval '7 days')`
    )
    project = await Processes.start({ JWT_SECRET: HOSTED_SECRET })
    // In this process: the calendar query needs no replication, so no DATABASE_URL-wide change feed either.
    relay = await startGateway({
      auth: { jwtSecret: Redacted.make(LOCAL_SECRET) },
      upstream: {
        url: project.url,
        apiKey: Redacted.make(await TestTokens.serviceRoleToken({ secret: HOSTED_SECRET }))
      },
      calendar: {
        _tag: "Sql",
        databaseUrl: Redacted.make(databaseUrl()),
        sql: `select wedding_id, starts_at from ${schema}.weddings where starts_at between $1 and $2`
      }
    })
  })
  afterAll(async () => {
    await relay?.stop()
    await project?.terminate()
    await db.query(`drop schema if exists ${schema} cascade`)
    await db.end()
  })

  it("holds the channel of the wedding the query says is ramping up, and only that one", async () => {
    const metrics = async () => {
      const text = (await Processes.getFresh(`${project.url}/metrics`)).body
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1])
      return { open: value("wedsync_connection_open"), channels: value("wedsync_connection_channels") }
    }
    await waitUntil("the warm channel upstream", metrics, (m) => m.open === 1 && m.channels === 1)
    const token = await TestTokens.userToken({ weddingIds: ["w-sql"], secret: LOCAL_SECRET })
    const c = makeSupabaseClient(relay.url, localAnon, { accessToken: token })
    clients.push(c)
    await subscribe(c.channel("wedding:w-sql", { config: { private: true } }))
    assert.deepStrictEqual(await metrics(), { open: 1, channels: 1 })
  })
})

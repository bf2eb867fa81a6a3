/**
 * Issue 9, item 3 against a running gateway with unmodified supabase-js: private broadcasts carry `meta.id`, a client
 * that comes back with `replay` gets exactly what it missed (`meta.replayed`) and then the live messages, with no gap
 * and no duplicate even while messages are being published during its join; a replay reaching past the retention
 * ends with one explicit `system` message; REST broadcasts to private topics are kept; refusals (public channel,
 * invalid parameters) beside their accepted cases. Everything runs twice: history in memory, and in Redis.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RawClient, RedisServer, redisUrl, SupabaseClients, uniquePrefix, waitUntil } from "@wedsync/testkit"
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll, SubscribeError } = SupabaseClients
const { isReplyTo, v2 } = RawClient

interface Broadcast {
  readonly event: string
  readonly payload: { readonly n: number }
  readonly meta?: { readonly id?: string; readonly replayed?: boolean }
}

interface System {
  readonly extension: string
  readonly status: string
  readonly message: string
}

/** The milliseconds of a UUIDv7. */
const timeOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16)

let seq = 0
const unique = (name: string) => `${name}-${++seq}-${Date.now()}`

const failureOf = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e)

const replaySuite = (name: string, start: () => Promise<RunningGateway>) =>
  describe(`replay (${name})`, () => {
    let gateway: RunningGateway
    const clients: Array<SupabaseClient> = []
    const raws: Array<RawClient.RawClient> = []

    beforeAll(async () => {
      gateway = await start()
    })
    afterEach(async () => {
      await closeAll(clients.splice(0))
      await Promise.all(raws.splice(0).map((c) => c.close()))
    })
    afterAll(async () => {
      await gateway.stop()
    })

    /** A supabase-js client of a user who belongs to `wedding`. */
    const userClient = async (wedding: string) => {
      const token = await TestTokens.userToken({ sub: unique("u"), weddingIds: [wedding] })
      const client = makeSupabaseClient(gateway.url, token, { accessToken: token })
      clients.push(client)
      return { client, token }
    }

    /** A subscribed private channel that sends with `ack`, so a resolved send is published and kept. */
    const publisher = async (wedding: string) => {
      const { client, token } = await userClient(wedding)
      const channel = client.channel(`wedding:${wedding}`, { config: { private: true, broadcast: { ack: true } } })
      await subscribe(channel)
      const send = async (n: number) => {
        const result = await channel.send({ type: "broadcast", event: "n", payload: { n } })
        assert.strictEqual(result, "ok", `send ${n}`)
      }
      return { channel, send, token }
    }

    /** Subscribes with `replay` and collects broadcasts and system messages. */
    const replayer = async (wedding: string, replay: { readonly since: number; readonly limit?: number }) => {
      const { client } = await userClient(wedding)
      const broadcasts = inbox<Broadcast>("broadcasts")
      const systems = inbox<System>("system messages")
      const channel: RealtimeChannel = client
        .channel(`wedding:${wedding}`, { config: { private: true, broadcast: { replay } } })
        .on("broadcast", { event: "n" }, broadcasts.push)
        .on("system", {}, systems.push)
      await subscribe(channel)
      return { client, channel, broadcasts, systems }
    }

    it("live private broadcasts carry meta.id; after a disconnect, replay gives exactly the missed ones, then live", async () => {
      const wedding = unique("w")
      const pub = await publisher(wedding)
      const { client: first, broadcasts: seenLive } = await replayerWithoutReplay(wedding)
      for (let n = 1; n <= 3; n++) await pub.send(n)
      const third = await seenLive.next((b) => b.payload.n === 3)
      assert.deepStrictEqual(seenLive.received.map((b) => b.payload.n), [1, 2, 3])
      for (const b of seenLive.received) {
        assert.match(b.meta?.id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        assert.isUndefined(b.meta?.replayed)
      }
      await closeAll([first])
      for (let n = 4; n <= 6; n++) await pub.send(n)
      // Resume from the last id seen: `since` is inclusive, so a client drops what it already has by id.
      const seenIds = new Set(seenLive.received.map((b) => b.meta?.id))
      const back = await replayer(wedding, { since: timeOf(third.meta!.id!), limit: 25 })
      // The join is answered before the history is read: once #6 is here the replay is out, and #7 is live.
      await back.broadcasts.next((b) => b.payload.n === 6)
      await pub.send(7)
      await back.broadcasts.next((b) => b.payload.n === 7)
      const fresh = back.broadcasts.received.filter((b) => !seenIds.has(b.meta?.id))
      assert.deepStrictEqual(fresh.map((b) => [b.payload.n, b.meta?.replayed ?? false]), [
        [4, true],
        [5, true],
        [6, true],
        [7, false]
      ])
      // `since` has millisecond resolution: #2, sent in the same millisecond as #3, is legitimately at `since`.
      const since = timeOf(third.meta!.id!)
      assert.isTrue(back.broadcasts.received.every((b) => timeOf(b.meta!.id!) >= since), "nothing before `since`")
      assert.deepStrictEqual(back.systems.received.filter((s) => s.status === "error"), [])
    })

    it("messages published while the client joins arrive once each, in order, replayed then live", async () => {
      const wedding = unique("w")
      const pub = await publisher(wedding)
      const since = Date.now()
      const total = 60
      // The publisher keeps sending while the replaying client joins: some messages land in the history before the
      // read, some during it, some after it.
      const sending = (async () => {
        for (let n = 1; n <= total; n++) await pub.send(n)
      })()
      const back = await replayer(wedding, { since, limit: 1000 })
      await sending
      await back.broadcasts.next((b) => b.payload.n === total, 10_000)
      const ns = back.broadcasts.received.map((b) => b.payload.n)
      assert.deepStrictEqual(ns, Array.from({ length: total }, (_, i) => i + 1))
      const flags = back.broadcasts.received.map((b) => b.meta?.replayed === true)
      // Replayed ones first, then live ones: one seam.
      assert.deepStrictEqual(flags, [...flags].sort((a, b) => Number(b) - Number(a)))
      assert.deepStrictEqual(back.systems.received.filter((s) => s.status === "error"), [])
    })

    it("a replay reaching past the retention ends with one system message; a replay within it has none", async () => {
      const wedding = unique("w")
      const pub = await publisher(wedding)
      const since = Date.now()
      for (let n = 1; n <= 3; n++) await pub.send(n)
      const within = await replayer(wedding, { since })
      await within.broadcasts.next((b) => b.payload.n === 3)
      // `since` an hour and more ago is older than HISTORY_TTL (1 hour by default).
      const past = await replayer(wedding, { since: since - 2 * 3_600_000 })
      const system = await past.systems.next((s) => s.status === "error")
      assert.strictEqual(system.extension, "broadcast")
      assert.match(system.message, /^Replay is incomplete: messages are kept for 3600 seconds/)
      assert.deepStrictEqual(past.broadcasts.received.map((b) => [b.payload.n, b.meta?.replayed]), [
        [1, true],
        [2, true],
        [3, true]
      ])
      // The marker after both replays: by then any system message of `within` would have arrived.
      await pub.send(4)
      await within.broadcasts.next((b) => b.payload.n === 4)
      await past.broadcasts.next((b) => b.payload.n === 4)
      assert.deepStrictEqual(within.systems.received.filter((s) => s.status === "error"), [])
      assert.strictEqual(past.systems.received.filter((s) => s.status === "error").length, 1)
    })

    it("more than `limit` matches: the last `limit`, then the system message", async () => {
      const wedding = unique("w")
      const pub = await publisher(wedding)
      const since = Date.now()
      for (let n = 1; n <= 4; n++) await pub.send(n)
      const back = await replayer(wedding, { since, limit: 2 })
      const system = await back.systems.next((s) => s.status === "error")
      assert.strictEqual(
        system.message,
        "Replay is incomplete: more than 2 messages matched; only the last 2 were replayed"
      )
      assert.deepStrictEqual(back.broadcasts.received.map((b) => b.payload.n), [3, 4])
    })

    it("REST broadcasts to a private topic (batch and single) are kept and replayed", async () => {
      const wedding = unique("w")
      const { token } = await userClient(wedding)
      const since = Date.now()
      const headers = { authorization: `Bearer ${token}`, apikey: token, "content-type": "application/json" }
      const batch = await fetch(`${gateway.url}/realtime/v1/api/broadcast`, {
        method: "POST",
        headers,
        body: JSON.stringify({
          messages: [{ topic: `wedding:${wedding}`, event: "n", payload: { n: 1 }, private: true, id: "client-id" }]
        })
      })
      assert.strictEqual(batch.status, 202)
      const single = await fetch(`${gateway.url}/realtime/v1/api/broadcast/wedding:${wedding}/events/n?private=true`, {
        method: "POST",
        headers,
        body: JSON.stringify({ n: 2 })
      })
      assert.strictEqual(single.status, 202)
      const back = await replayer(wedding, { since })
      await back.broadcasts.next((b) => b.payload.n === 2)
      const got = back.broadcasts.received
      assert.deepStrictEqual(got.map((b) => [b.payload.n, b.meta?.replayed]), [[1, true], [2, true]])
      // Ids are the gateway's own, time-ordered: a client's `id` cannot break `since`.
      assert.isTrue(got.every((b) => timeOf(b.meta?.id ?? "") >= since))
    })

    it("replay on a public channel is refused (supabase-js refuses it first); on the private channel it is accepted", async () => {
      const wedding = unique("w")
      const { client, token } = await userClient(wedding)
      assert.throws(
        () => client.channel(`wedding:${wedding}`, { config: { broadcast: { replay: { since: 0 } } } }).subscribe(),
        /replay on public channel/
      )
      const raw = await RawClient.connect(`${gateway.wsUrl}?apikey=${encodeURIComponent(token)}&vsn=2.0.0`)
      raws.push(raw)
      const join = async (isPrivate: boolean) => {
        const ref = raw.makeRef()
        const payload = { config: { private: isPrivate, broadcast: { replay: { since: 0, limit: 5 } } } }
        raw.send(v2(ref, ref, `realtime:wedding:${wedding}`, "phx_join", payload))
        return JSON.stringify(await raw.next(isReplyTo(ref)))
      }
      assert.include(await join(false), "UnableToReplayMessages: Replay is not allowed for public channels")
      assert.include(await join(true), '"status":"ok"')
    })

    it("invalid replay parameters are refused; valid ones are accepted", async () => {
      const wedding = unique("w")
      const { client } = await userClient(wedding)
      const invalid = client.channel(`wedding:${wedding}`, {
        config: { private: true, broadcast: { replay: { since: Date.now(), limit: 0 } } }
      })
      const failure = await failureOf(subscribe(invalid))
      assert.instanceOf(failure, SubscribeError)
      assert.include((failure as Error).message, "UnableToReplayMessages: Replay params are not valid")
      await client.removeChannel(invalid)
      const valid = client.channel(`wedding:${wedding}`, {
        config: { private: true, broadcast: { replay: { since: Date.now(), limit: 5 } } }
      })
      await subscribe(valid)
    })

    /** A plain private subscriber (no replay). */
    const replayerWithoutReplay = async (wedding: string) => {
      const { client } = await userClient(wedding)
      const broadcasts = inbox<Broadcast>("broadcasts")
      const channel = client.channel(`wedding:${wedding}`, { config: { private: true } })
        .on("broadcast", { event: "n" }, broadcasts.push)
      await subscribe(channel)
      return { client, broadcasts }
    }
  })

replaySuite("memory", () => startGateway({ connection: { joinErrorDelayMs: 0 } }))
replaySuite("redis", () =>
  startGateway({
    connection: { joinErrorDelayMs: 0 },
    redis: { url: Redacted.make(redisUrl()), prefix: uniquePrefix("gw-replay") }
  }))

describe("replay while Redis is down (a Redis of the test's own)", () => {
  let redis: RedisServer.Server
  let gateway: RunningGateway
  const clients: Array<SupabaseClient> = []
  beforeAll(async () => {
    redis = await RedisServer.start()
    gateway = await startGateway({
      connection: { joinErrorDelayMs: 0 },
      redis: { url: Redacted.make(redis.url), prefix: uniquePrefix("gw-replay-down"), commandTimeoutMs: 300 }
    })
  })
  afterAll(async () => {
    await closeAll(clients.splice(0))
    await gateway.stop()
    await redis.stop()
  })

  const userClient = async (wedding: string) => {
    const token = await TestTokens.userToken({ sub: unique("u"), weddingIds: [wedding] })
    const client = makeSupabaseClient(gateway.url, token, { accessToken: token })
    clients.push(client)
    return client
  }

  const replaying = async (wedding: string, since: number) => {
    const systems = inbox<System>("system messages")
    const broadcasts = inbox<Broadcast>("broadcasts")
    const channel = (await userClient(wedding))
      .channel(`wedding:${wedding}`, { config: { private: true, broadcast: { replay: { since, limit: 5 } } } })
      .on("system", {}, systems.push)
      .on("broadcast", { event: "n" }, broadcasts.push)
    await subscribe(channel)
    return { systems, broadcasts }
  }

  it(
    "shuts the replaying channel down with UnableToReplayMessages, keeps live broadcasts going, replays again once Redis is back (and says what the restart lost)",
    async () => {
      const wedding = unique("w")
      const since = Date.now()
      const publisher = (await userClient(wedding)).channel(`wedding:${wedding}`, {
        config: { private: true, broadcast: { ack: true } }
      })
      await subscribe(publisher)
      const plain = inbox<Broadcast>("live broadcasts")
      await subscribe(
        (await userClient(wedding)).channel(`wedding:${wedding}`, { config: { private: true } }).on(
          "broadcast",
          { event: "n" },
          plain.push
        )
      )
      assert.strictEqual(await publisher.send({ type: "broadcast", event: "n", payload: { n: 1 } }), "ok")

      await redis.kill()
      const ready = async () => (await (await fetch(`${gateway.url}/ready`)).json()) as { redis?: { ok: boolean } }
      await waitUntil("Redis reported down", ready, (r) => r.redis?.ok === false)
      const down = await replaying(wedding, since)
      const system = await down.systems.next((m) => m.status === "error")
      assert.strictEqual(system.message, "Realtime was unable to replay messages")
      // A broadcast whose history write failed is still delivered live.
      assert.strictEqual(await publisher.send({ type: "broadcast", event: "n", payload: { n: 2 } }), "ok")
      await plain.next((b) => b.payload.n === 2)
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text()
      assert.match(metrics, /^wedsync_history_append_failures_total 1$/m)
      assert.match(metrics, /^wedsync_connection_replays_total\{result="failed"\} 1$/m)

      await redis.restart()
      await waitUntil("Redis reported up", ready, (r) => r.redis?.ok === true, { timeoutMs: 10_000 })
      // This Redis keeps nothing across a restart (no persistence): the history starts again from here, and a replay
      // from before the restart says so instead of coming back silently short.
      assert.strictEqual(await publisher.send({ type: "broadcast", event: "n", payload: { n: 3 } }), "ok")
      const across = await replaying(wedding, since)
      const restarted = await across.systems.next((m) => m.status === "error")
      assert.match(restarted.message, /^Replay is incomplete: the history was started afresh at /)
      assert.deepStrictEqual(across.broadcasts.received.map((b) => [b.payload.n, b.meta?.replayed]), [[3, true]])
      // The first message after the restart began the new history: from its time on, the replay is complete.
      const up = await replaying(wedding, timeOf(across.broadcasts.received[0]!.meta!.id!))
      await up.broadcasts.next((b) => b.payload.n === 3)
      assert.deepStrictEqual(up.broadcasts.received.map((b) => [b.payload.n, b.meta?.replayed]), [[3, true]])
      // A marker after the replay: any system message of `up` would be here by then.
      assert.strictEqual(await publisher.send({ type: "broadcast", event: "n", payload: { n: 4 } }), "ok")
      await up.broadcasts.next((b) => b.payload.n === 4)
      assert.deepStrictEqual(up.systems.received.filter((m) => m.status === "error"), [])
    },
    30_000
  )
})

/**
 * Protocol-level behaviour seen from a raw WebSocket client: exact frames, binary kinds,
 * refusals at the upgrade, limits, slow consumers and the HTTP endpoints.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { Frame, Serializer } from "@wedsync/protocol"
import { RawClient, SupabaseClients, waitUntil } from "@wedsync/testkit"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import { getText, tryUpgrade } from "./support/Http.ts"

const { isEvent, isReplyTo, v1, v2 } = RawClient

let gateway: RunningGateway
let anonKey: string
const open: Array<RawClient.RawClient> = []

const connect = async (vsn: Frame.Vsn, key = anonKey) => {
  const client = await RawClient.connect(`${gateway.wsUrl}?apikey=${encodeURIComponent(key)}&vsn=${vsn}`)
  open.push(client)
  return client
}

const frame = (
  vsn: Frame.Vsn,
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payload: unknown
) => vsn === "2.0.0" ? v2(joinRef, ref, topic, event, payload) : v1(joinRef, ref, topic, event, payload)

const joinPayload = {
  config: {
    broadcast: { self: false, ack: false },
    presence: { key: "", enabled: false },
    postgres_changes: [],
    private: false
  }
}

const join = async (client: RawClient.RawClient, vsn: Frame.Vsn, topic: string, payload: unknown = joinPayload) => {
  const ref = client.makeRef()
  client.send(frame(vsn, ref, ref, topic, "phx_join", payload))
  return { ref, reply: await client.next(isReplyTo(ref)) }
}

beforeAll(async () => {
  gateway = await startGateway({
    connection: {
      maxChannelsPerConnection: 2,
      outboxLimitBytes: 64 * 1024,
      maxConnectionsPerUser: 1,
      maxEventsPerSecond: 1_000_000
    }
  })
  anonKey = await TestTokens.anonToken()
})
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()))
})
afterAll(async () => {
  await gateway.stop()
})

describe("upgrade", () => {
  it("accepts a valid apikey and refuses a missing or invalid one with Supabase's 401 bodies", async () => {
    assert.strictEqual((await tryUpgrade(`${gateway.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)).status, 101)
    assert.deepStrictEqual(await tryUpgrade(`${gateway.wsUrl}?vsn=2.0.0`), {
      status: 401,
      body: JSON.stringify({ error: "API key is missing" })
    })
    assert.deepStrictEqual(await tryUpgrade(`${gateway.wsUrl}?apikey=garbage&vsn=2.0.0`), {
      status: 401,
      body: JSON.stringify({ error: "The token provided is not a valid JWT" })
    })
    const forged = await TestTokens.anonToken({ secret: "not-the-gateway-secret-but-long-enough-for-hs256" })
    assert.deepStrictEqual(await tryUpgrade(`${gateway.wsUrl}?apikey=${forged}&vsn=2.0.0`), {
      status: 401,
      body: JSON.stringify({ error: "Failed to validate JWT signature" })
    })
  })

  it("takes the key from the x-api-key header too", async () => {
    assert.strictEqual((await tryUpgrade(`${gateway.wsUrl}?vsn=2.0.0`, { "x-api-key": anonKey })).status, 101)
  })

  it("refuses an unknown serializer version with 403 and an unknown path with 404", async () => {
    assert.strictEqual((await tryUpgrade(`${gateway.wsUrl}?apikey=${anonKey}&vsn=3.0.0`)).status, 403)
    assert.strictEqual((await tryUpgrade(`ws://127.0.0.1:${gateway.port}/elsewhere?apikey=${anonKey}`)).status, 404)
  })

  it("caps sockets per user with 429 and admits again once the first one left", async () => {
    const token = await TestTokens.userToken({ sub: "cap-user" })
    const first = await connect("2.0.0", token)
    assert.deepStrictEqual(await tryUpgrade(`${gateway.wsUrl}?apikey=${token}&vsn=2.0.0`), {
      status: 429,
      body: JSON.stringify({ error: "Too many connected users for this user" })
    })
    await first.close()
    const url = `${gateway.wsUrl}?apikey=${token}&vsn=2.0.0`
    await waitUntil("the user's slot to be released", async () => (await tryUpgrade(url)).status, (s) => s === 101, {
      timeoutMs: 1000,
      intervalMs: 50
    })
  })
})

describe.each(["2.0.0", "1.0.0"] as const)("frames with vsn %s", (vsn) => {
  it("answers a heartbeat with the exact Phoenix reply", async () => {
    const client = await connect(vsn)
    client.send(frame(vsn, null, "21", "phoenix", "heartbeat", {}))
    const reply = await client.next()
    assert.deepStrictEqual(
      reply,
      vsn === "2.0.0"
        ? [null, "21", "phoenix", "phx_reply", { status: "ok", response: {} }]
        : { topic: "phoenix", event: "phx_reply", payload: { status: "ok", response: {} }, ref: "21" }
    )
  })

  it("replies unmatched topic to a push on a topic that was never joined, and ok to a joined one", async () => {
    const client = await connect(vsn)
    client.send(frame(vsn, "1", "2", "realtime:nobody", "broadcast", { type: "broadcast", event: "x", payload: {} }))
    const reply = await client.next(isReplyTo("2"))
    assert.include(JSON.stringify(reply), '"status":"error","response":{"reason":"unmatched topic"}')
    const { reply: joined } = await join(client, vsn, "realtime:somebody")
    assert.include(JSON.stringify(joined), '"status":"ok","response":{"postgres_changes":[]}')
  })

  it("refuses an empty topic name and the join beyond the channel cap, with Supabase's reasons", async () => {
    const client = await connect(vsn)
    assert.include(
      JSON.stringify((await join(client, vsn, "realtime:")).reply),
      "TopicNameRequired: You must provide a topic name"
    )
    assert.include(JSON.stringify((await join(client, vsn, "realtime:a")).reply), '"status":"ok"')
    assert.include(JSON.stringify((await join(client, vsn, "realtime:b")).reply), '"status":"ok"')
    assert.include(
      JSON.stringify((await join(client, vsn, "realtime:c")).reply),
      "ChannelRateLimitReached: Too many channels"
    )
  })

  it("echoes postgres_changes bindings in order with integer ids, then reports they are not enabled", async () => {
    const client = await connect(vsn)
    const bindings = [
      { event: "INSERT", schema: "public", table: "messages", filter: "room_id=eq.1" },
      { event: "*", schema: "public", table: "todos" }
    ]
    const { reply } = await join(client, vsn, "realtime:pg", {
      config: { ...joinPayload.config, postgres_changes: bindings }
    })
    const response = (Array.isArray(reply) ? reply[4] : (reply as { payload: unknown }).payload) as {
      response: { postgres_changes: Array<Record<string, unknown>> }
    }
    const echoed = response.response.postgres_changes
    assert.deepStrictEqual(echoed.map(({ id: _id, ...rest }) => rest), bindings)
    for (const b of echoed) assert.strictEqual(Number.isInteger(b["id"]), true)
    const system = await client.next(isEvent("system", "realtime:pg"))
    assert.include(JSON.stringify(system), "Postgres Changes are not enabled on this gateway")
  })
})

describe("broadcast across serializers", () => {
  it("relays a v2 binary payload byte for byte to v2 members and not to v1 members", async () => {
    const sender = await connect("2.0.0")
    const v2Member = await connect("2.0.0")
    const v1Member = await connect("1.0.0")
    const topic = "realtime:bin"
    const { ref: joinRef } = await join(sender, "2.0.0", topic)
    await join(v2Member, "2.0.0", topic)
    await join(v1Member, "1.0.0", topic)
    const payload = new Uint8Array([1, 2, 3, 255])
    sender.send(
      Serializer.encodeUserBroadcastPush({
        joinRef,
        ref: "9",
        topic,
        userEvent: "raw",
        meta: undefined,
        encoding: "binary",
        payload
      })
    )
    const received = (await v2Member.next((f) => Buffer.isBuffer(f))) as Buffer
    assert.deepStrictEqual([...received], [
      4,
      topic.length,
      3,
      0,
      0,
      ...Buffer.from(topic),
      ...Buffer.from("raw"),
      1,
      2,
      3,
      255
    ])
    // A JSON broadcast after it reaches the v1 member, and it is the first thing that member got.
    sender.send(
      Serializer.encodeUserBroadcastPush({
        joinRef,
        ref: "10",
        topic,
        userEvent: "json",
        meta: undefined,
        encoding: "json",
        payload: Buffer.from('{"n":1}')
      })
    )
    const v1Frame = await v1Member.next(isEvent("broadcast"))
    assert.deepStrictEqual(v1Frame, {
      topic,
      event: "broadcast",
      payload: { type: "broadcast", event: "json", payload: { n: 1 } },
      ref: null
    })
    assert.lengthOf(v1Member.received.filter(isEvent("broadcast")), 1)
  })

  it("delivers a v1 JSON broadcast to v2 members as a JSON text frame", async () => {
    const sender = await connect("1.0.0")
    const member = await connect("2.0.0")
    const topic = "realtime:v1-to-v2"
    const { ref } = await join(sender, "1.0.0", topic)
    await join(member, "2.0.0", topic)
    const body = { type: "broadcast", event: "msg", payload: { hello: "world" } }
    sender.send(v1(ref, "5", topic, "broadcast", body))
    assert.deepStrictEqual(await member.next(isEvent("broadcast")), [null, null, topic, "broadcast", body])
  })

  it("drops a malformed frame and keeps the socket working", async () => {
    const client = await connect("2.0.0")
    client.send("this is not json")
    client.send(new Uint8Array([9, 9, 9]))
    client.send(frame("2.0.0", null, "7", "phoenix", "heartbeat", {}))
    assert.deepStrictEqual(await client.next(isReplyTo("7")), [null, "7", "phoenix", "phx_reply", {
      status: "ok",
      response: {}
    }])
  })
})

describe("slow consumers", () => {
  it("closes a socket that stopped reading and still delivers everything to the others", async () => {
    const topic = "slow"
    const slow = await connect("2.0.0")
    await join(slow, "2.0.0", `realtime:${topic}`)
    const fast = SupabaseClients.makeSupabaseClient(gateway.url, anonKey)
    const box = SupabaseClients.inbox<{ payload: { n: number } }>("broadcast at the fast client")
    await SupabaseClients.subscribe(fast.channel(topic).on("broadcast", { event: "bulk" }, box.push))
    slow.pause()
    const sender = SupabaseClients.makeSupabaseClient(gateway.url, anonKey)
    const channel = sender.channel(topic, { config: { broadcast: { ack: true } } })
    await SupabaseClients.subscribe(channel)
    const blob = "x".repeat(4_000)
    const total = 2_000 // 8 MB: more than the loopback socket buffers plus the 64 KiB outbox limit
    for (let n = 1; n <= total; n++) await channel.send({ type: "broadcast", event: "bulk", payload: { n, blob } })
    await box.next((m) => m.payload.n === total, 20_000)
    assert.deepStrictEqual(box.received.map((m) => m.payload.n), Array.from({ length: total }, (_, i) => i + 1))
    const metrics = await getText(`${gateway.url}/metrics`)
    assert.match(metrics.text, /wedsync_connection_closed_total\{reason="4008"\} 1\b/)
    slow.resume()
    assert.include([4008, 1006], (await slow.closed).code)
    await SupabaseClients.closeAll([fast, sender])
  }, 60_000)
})

describe("rate limits", () => {
  it("shuts a channel down with Supabase's system message past the events-per-second limit", async () => {
    const limited = await startGateway({ connection: { maxEventsPerSecond: 3 } })
    try {
      const client = await RawClient.connect(`${limited.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)
      const topic = "realtime:limited"
      const joinRef = client.makeRef()
      client.send(v2(joinRef, joinRef, topic, "phx_join", joinPayload))
      await client.next(isReplyTo(joinRef))
      const ackedPayload = { type: "broadcast", event: "e", payload: {} }
      client.send(v2(joinRef, "a1", topic, "broadcast", ackedPayload))
      client.send(v2(joinRef, "a2", topic, "broadcast", ackedPayload))
      client.send(v2(joinRef, "a3", topic, "broadcast", ackedPayload))
      client.send(v2(joinRef, "a4", topic, "broadcast", ackedPayload))
      assert.deepStrictEqual(await client.next(isEvent("system", topic)), [
        joinRef,
        null,
        topic,
        "system",
        { extension: "system", status: "error", message: "Too many messages per second", channel: "limited" }
      ])
      assert.deepStrictEqual(await client.next(isEvent("phx_close", topic)), [joinRef, joinRef, topic, "phx_close", {}])
      // The socket stays up: heartbeats are still answered.
      client.send(v2(null, "hb", "phoenix", "heartbeat", {}))
      await client.next(isReplyTo("hb"))
      await client.close()
    } finally {
      await limited.stop()
    }
  })
})

describe("http endpoints", () => {
  it("serves health, readiness and Prometheus metrics", async () => {
    assert.deepStrictEqual(await getText(`${gateway.url}/health`), {
      status: 200,
      text: JSON.stringify({ status: "ok" })
    })
    const ready = await getText(`${gateway.url}/ready`)
    assert.strictEqual(ready.status, 200)
    assert.containSubset(JSON.parse(ready.text), { ready: true })
    const metrics = await getText(`${gateway.url}/metrics`)
    assert.strictEqual(metrics.status, 200)
    for (
      const name of [
        "wedsync_connection_open",
        "wedsync_hub_deliveries_total",
        "wedsync_connection_joins_total",
        "process_resident_memory_bytes"
      ]
    ) {
      assert.include(metrics.text, name)
    }
  })

  it("answers REST broadcast errors with Supabase's statuses", async () => {
    const post = (path: string, init: RequestInit) => fetch(`${gateway.url}${path}`, { method: "POST", ...init })
    const auth = { apikey: anonKey, authorization: `Bearer ${anonKey}` }
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast", { headers: { "content-type": "application/json" }, body: "{}" }))
        .status,
      401
    )
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast", {
        headers: { ...auth, "content-type": "application/json" },
        body: '{"messages":[{"topic":"t"}]}'
      })).status,
      422
    )
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast", {
        headers: { ...auth, "content-type": "application/json" },
        body: '{"messages":[{"topic":"t","event":"e","payload":{}}]}'
      })).status,
      202
    )
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast/t/events/e", {
        headers: { ...auth, "content-type": "text/plain" },
        body: "x"
      })).status,
      415
    )
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast/wedding:w-1/events/e?private=true", {
        headers: { ...auth, "content-type": "application/json" },
        body: "{}"
      })).status,
      403
    )
    const service = await TestTokens.serviceRoleToken()
    assert.strictEqual(
      (await post("/realtime/v1/api/broadcast/wedding:w-1/events/e?private=true", {
        headers: { authorization: `Bearer ${service}`, "content-type": "application/json" },
        body: "{}"
      })).status,
      202
    )
  })
})

/**
 * The acceptance path: unmodified supabase-js 2.119 clients against a running gateway, for both
 * serializers. Every wait is on an event (status callback, message, close), never on a timer.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, inbox, waitFor, closeAll, SubscribeError } = SupabaseClients

type BroadcastMessage = { readonly type: string; readonly event: string; readonly payload: Record<string, unknown> }

describe.each(["2.0.0", "1.0.0"] as const)("supabase-js with vsn %s", (vsn) => {
  let gateway: RunningGateway
  let anonKey: string
  const clients: Array<SupabaseClient> = []
  let topicSeq = 0
  const room = () => `room-${vsn}-${++topicSeq}`

  const client = (options: SupabaseClients.ClientOptions = {}) => {
    const c = makeSupabaseClient(gateway.url, anonKey, { vsn, ...options })
    clients.push(c)
    return c
  }
  /** A signed-in user's client. As Supabase documents, the app awaits `realtime.setAuth()` before joining. */
  const userClient = async (token: string) => {
    const c = client({ accessToken: token })
    await c.realtime.setAuth()
    return c
  }

  beforeAll(async () => {
    gateway = await startGateway({ connection: { sweepIntervalMs: 100 } })
    anonKey = await TestTokens.anonToken()
  })
  afterEach(async () => {
    await closeAll(clients.splice(0))
  })
  afterAll(async () => {
    await gateway.stop()
  })

  it("subscribes to a public channel", async () => {
    const channel = client().channel(room())
    await subscribe(channel)
    assert.strictEqual(channel.state, "joined")
  })

  it("delivers a broadcast from one client to another, not back to the sender by default", async () => {
    const name = room()
    const receiverBox = inbox<BroadcastMessage>("broadcast at the receiver")
    const senderBox = inbox<BroadcastMessage>("broadcast at the sender")
    const receiver = client().channel(name).on("broadcast", { event: "msg" }, receiverBox.push)
    const sender = client().channel(name).on("broadcast", { event: "msg" }, senderBox.push)
    await subscribe(receiver)
    await subscribe(sender)
    assert.strictEqual(await sender.send({ type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } }), "ok")
    const got = await receiverBox.next()
    assert.containSubset(got, { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } })
    // A second message proves ordering and that the sender's own copy never arrived in between.
    await sender.send({ type: "broadcast", event: "msg", payload: { n: 2 } })
    assert.deepStrictEqual((await receiverBox.next()).payload, { n: 2 })
    assert.lengthOf(senderBox.received, 0)
  })

  it("echoes to the sender with self: true", async () => {
    const name = room()
    const box = inbox<BroadcastMessage>("own broadcast")
    const channel = client().channel(name, { config: { broadcast: { self: true } } }).on(
      "broadcast",
      { event: "echo" },
      box.push
    )
    await subscribe(channel)
    await channel.send({ type: "broadcast", event: "echo", payload: { me: true } })
    assert.deepStrictEqual((await box.next()).payload, { me: true })
  })

  it("acknowledges a broadcast with ack: true only once the server accepted it", async () => {
    const name = room()
    const box = inbox<BroadcastMessage>("acked broadcast")
    const listener = client().channel(name).on("broadcast", { event: "a" }, box.push)
    await subscribe(listener)
    const acked = client().channel(name, { config: { broadcast: { ack: true } } })
    await subscribe(acked)
    assert.strictEqual(await acked.send({ type: "broadcast", event: "a", payload: { n: 1 } }), "ok")
    assert.deepStrictEqual((await box.next()).payload, { n: 1 })
  })

  it("refuses an oversized broadcast with payload_size_exceeded and delivers a normal one", async () => {
    await gateway.stop()
    gateway = await startGateway({ connection: { sweepIntervalMs: 100, maxPayloadBytes: 1_000 } })
    const name = room()
    const box = inbox<BroadcastMessage>("broadcast")
    const listener = client().channel(name).on("broadcast", { event: "big" }, box.push)
    await subscribe(listener)
    const acked = client().channel(name, { config: { broadcast: { ack: true } } })
    await subscribe(acked)
    assert.strictEqual(
      await acked.send({ type: "broadcast", event: "big", payload: { blob: "x".repeat(2_000) } }),
      "error"
    )
    assert.strictEqual(await acked.send({ type: "broadcast", event: "big", payload: { blob: "small" } }), "ok")
    assert.deepStrictEqual((await box.next()).payload, { blob: "small" })
    assert.lengthOf(box.received, 1)
  })

  it("delivers REST broadcasts (batch endpoint via send before subscribe, and httpSend)", async () => {
    const name = room()
    const box = inbox<BroadcastMessage>("REST broadcast")
    await subscribe(client().channel(name).on("broadcast", { event: "*" }, box.push))
    // Not subscribed: realtime-js falls back to POST /api/broadcast.
    const unjoined = client().channel(name)
    assert.strictEqual(await unjoined.send({ type: "broadcast", event: "rest-batch", payload: { via: "batch" } }), "ok")
    assert.containSubset(await box.next((m) => m.event === "rest-batch"), { payload: { via: "batch" } })
    const result = await unjoined.httpSend("rest-single", { via: "single" })
    assert.deepStrictEqual(result, { success: true })
    assert.containSubset(await box.next((m) => m.event === "rest-single"), { payload: { via: "single" } })
  })

  it("syncs presence across three clients: join, update and leave", async () => {
    const name = room()
    const [a, b, c] = [client(), client(), client()]
    const aJoins = inbox<{ key: string }>("presence join at a")
    const aLeaves = inbox<{ key: string }>("presence leave at a")
    const channelA = a.channel(name, { config: { presence: { key: "alice" } } })
      .on("presence", { event: "join" }, aJoins.push)
      .on("presence", { event: "leave" }, aLeaves.push)
    await subscribe(channelA)
    assert.strictEqual(await channelA.track({ name: "alice" }), "ok")
    const channelB = b.channel(name, { config: { presence: { key: "bob" } } })
    const bSynced = waitFor<void>(
      (resolve) =>
        channelB.on("presence", { event: "sync" }, () => {
          const state = channelB.presenceState()
          if (state["alice"] !== undefined && state["bob"] !== undefined) resolve()
        }),
      5000,
      "b to see alice and bob"
    )
    await subscribe(channelB)
    assert.strictEqual(await channelB.track({ name: "bob" }), "ok")
    await bSynced
    const channelC = c.channel(name, { config: { presence: { key: "carol" } } })
    const cSynced = waitFor<void>(
      (resolve) =>
        channelC.on("presence", { event: "sync" }, () => {
          const keys = Object.keys(channelC.presenceState()).sort()
          if (keys.join(",") === "alice,bob,carol") resolve()
        }),
      5000,
      "c to see all three"
    )
    await subscribe(channelC)
    await channelC.track({ name: "carol" })
    await cSynced
    assert.strictEqual((await aJoins.next((j) => j.key === "carol")).key, "carol")
    await c.removeChannel(channelC)
    assert.strictEqual((await aLeaves.next((l) => l.key === "carol")).key, "carol")
    assert.deepStrictEqual(Object.keys(channelA.presenceState()).sort(), ["alice", "bob"])
  })

  it("leaves a channel: the client sees CLOSED and stops receiving", async () => {
    const name = room()
    const box = inbox<BroadcastMessage>("broadcast after leave")
    const leaver = client()
    const channel = leaver.channel(name).on("broadcast", { event: "m" }, box.push)
    await subscribe(channel)
    assert.strictEqual(await leaver.removeChannel(channel), "ok")
    assert.strictEqual(channel.state, "closed")
    const other = client().channel(name, { config: { broadcast: { self: true, ack: true } } })
    const otherBox = inbox<BroadcastMessage>("broadcast at the remaining member")
    other.on("broadcast", { event: "m" }, otherBox.push)
    await subscribe(other)
    await other.send({ type: "broadcast", event: "m", payload: { after: "leave" } })
    await otherBox.next()
    assert.lengthOf(box.received, 0)
  })

  it("rejoins after the server drops the socket, and messages flow again", async () => {
    // This gateway closes sockets silent for 1.5 s; the client heartbeats every 60 s, so it gets dropped (4000)
    // and has 1.5 s after its rejoin for the broadcast below.
    const strict = await startGateway({ connection: { idleTimeoutMs: 1_500, sweepIntervalMs: 50 } })
    const make = () => {
      const c = makeSupabaseClient(strict.url, anonKey, { vsn, heartbeatIntervalMs: 60_000 })
      clients.push(c)
      return c
    }
    try {
      const name = room()
      const statuses = inbox<string>("channel status")
      const box = inbox<BroadcastMessage>("broadcast after rejoin")
      const channel = make().channel(name).on("broadcast", { event: "again" }, box.push)
      channel.subscribe((status) => statuses.push(status))
      await statuses.next((s) => s === "SUBSCRIBED")
      await statuses.next((s) => s === "CHANNEL_ERROR", 10_000)
      await statuses.next((s) => s === "SUBSCRIBED", 10_000)
      const sender = make().channel(name, { config: { broadcast: { ack: true } } })
      await subscribe(sender)
      assert.strictEqual(await sender.send({ type: "broadcast", event: "again", payload: { n: 1 } }), "ok")
      assert.deepStrictEqual((await box.next()).payload, { n: 1 })
    } finally {
      await closeAll(clients.splice(0))
      await strict.stop()
    }
  })

  it("answers heartbeats", async () => {
    const c = client({ heartbeatIntervalMs: 200 })
    const statuses = inbox<string>("heartbeat status")
    c.realtime.onHeartbeat((status) => statuses.push(status))
    await subscribe(c.channel(room()))
    assert.strictEqual(await statuses.next((s) => s === "ok"), "ok")
    assert.notInclude(statuses.received, "timeout")
  })

  it("closes a channel when its token expires, with the spec's system message, and keeps the socket", async () => {
    const token = await TestTokens.userToken({ expiresInSeconds: 2 })
    const c = await userClient(token)
    const system = inbox<{ status: string; message: string }>("system message")
    const statuses = inbox<string>("channel status")
    const expiring = c.channel(room()).on("system", {}, system.push)
    expiring.subscribe((status) => statuses.push(status))
    await statuses.next((s) => s === "SUBSCRIBED")
    const message = await system.next((m) => m.status === "error", 10_000)
    assert.match(message.message, /^Token has expired \d+ seconds ago$/)
    await statuses.next((s) => s === "CLOSED")
    assert.strictEqual(c.realtime.isConnected(), true)
  })

  it("refuses a join with a malformed token with the spec's reason, and accepts a valid one", async () => {
    const bad = (await userClient("not-a-jwt")).channel(room())
    const failure = await subscribe(bad).then(() => undefined, (e: unknown) => e)
    assert.instanceOf(failure, SubscribeError)
    assert.include((failure as Error).message, "MalformedJWT: The token provided is not a valid JWT")
    const good = (await userClient(await TestTokens.userToken())).channel(room())
    await subscribe(good)
  })

  it("refuses an expired token at join with InvalidJWTToken", async () => {
    const channel = (await userClient(await TestTokens.expiredToken({ secondsAgo: 30 }))).channel(room())
    const failure = await subscribe(channel).then(() => undefined, (e: unknown) => e)
    assert.match((failure as Error).message, /InvalidJWTToken: Token has expired \d+ seconds ago/)
  })

  it("refuses a private wedding channel without the claim and accepts it with the claim", async () => {
    const outsider = await userClient(await TestTokens.userToken({ weddingIds: ["other"] }))
    const refused = await subscribe(outsider.channel("wedding:w-42", { config: { private: true } })).then(
      () => undefined,
      (e: unknown) => e
    )
    assert.include(
      (refused as Error).message,
      "Unauthorized: You do not have permissions to read from this Channel topic: wedding:w-42"
    )
    const member = await userClient(await TestTokens.userToken({ weddingIds: ["w-42"] }))
    await subscribe(member.channel("wedding:w-42", { config: { private: true } }))
  })

  it("keeps public and private rooms of the same name apart", async () => {
    const token = await TestTokens.userToken({ weddingIds: ["w-7"] })
    const publicBox = inbox<BroadcastMessage>("public broadcast")
    const privateBox = inbox<BroadcastMessage>("private broadcast")
    const publicChannel = (await userClient(token)).channel("wedding:w-7").on(
      "broadcast",
      { event: "m" },
      publicBox.push
    )
    const privateChannel = (await userClient(token)).channel("wedding:w-7", { config: { private: true } })
      .on("broadcast", { event: "m" }, privateBox.push)
    await subscribe(publicChannel)
    await subscribe(privateChannel)
    const privateSender = (await userClient(token)).channel("wedding:w-7", {
      config: { private: true, broadcast: { ack: true } }
    })
    await subscribe(privateSender)
    await privateSender.send({ type: "broadcast", event: "m", payload: { room: "private" } })
    assert.deepStrictEqual((await privateBox.next()).payload, { room: "private" })
    assert.lengthOf(publicBox.received, 0)
  })
})

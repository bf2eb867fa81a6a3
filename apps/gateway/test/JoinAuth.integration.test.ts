/**
 * Issue 6, items 3, 6, 7, 9 and 10 against a running gateway: unmodified supabase-js clients where an app would use
 * them, raw WebSockets where the frame itself is the point (a join without `access_token`, a flood, deep JSON).
 * Every refusal has its accepted case beside it. Token expiry is awaited through the gateway's own expiry message on
 * a channel joined before it, not through a timer.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RawClient, SupabaseClients } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, inbox, closeAll, SubscribeError } = SupabaseClients
const { isEvent, isReplyTo, v2 } = RawClient

const MAX_PER_USER = 2
const MAX_BINDINGS = 3

let gateway: RunningGateway
let anonKey: string
const clients: Array<SupabaseClient> = []
const raws: Array<RawClient.RawClient> = []
let seq = 0
const unique = (name: string) => `${name}-${++seq}-${Date.now()}`

const client = (apiKey: string, options: SupabaseClients.ClientOptions = {}) => {
  const c = makeSupabaseClient(gateway.url, apiKey, options)
  clients.push(c)
  return c
}

const connect = async (key = anonKey) => {
  const c = await RawClient.connect(`${gateway.wsUrl}?apikey=${encodeURIComponent(key)}&vsn=2.0.0`)
  raws.push(c)
  return c
}

const joinConfig = (
  config: {
    readonly private?: boolean
    readonly postgres_changes?: ReadonlyArray<unknown>
    readonly access_token?: string
  } = {}
) => {
  const { access_token, ...rest } = config
  return {
    config: {
      broadcast: { self: false, ack: false },
      presence: { key: "", enabled: false },
      postgres_changes: [],
      private: false,
      ...rest
    },
    ...(access_token === undefined ? {} : { access_token })
  }
}

const join = async (c: RawClient.RawClient, topic: string, payload: unknown = joinConfig()) => {
  const ref = c.makeRef()
  c.send(v2(ref, ref, topic, "phx_join", payload))
  return { ref, reply: JSON.stringify(await c.next(isReplyTo(ref))) }
}

const failureOf = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e)

type System = { readonly status: string; readonly message: string }

beforeAll(async () => {
  gateway = await startGateway({
    connection: { sweepIntervalMs: 100, maxConnectionsPerUser: MAX_PER_USER, maxBindingsPerChannel: MAX_BINDINGS }
  })
  anonKey = await TestTokens.anonToken()
})
afterEach(async () => {
  await closeAll(clients.splice(0))
  await Promise.all(raws.splice(0).map((c) => c.close()))
})
afterAll(async () => {
  await gateway.stop()
})

describe("an expiring connect token (item 3)", () => {
  it("supabase-js connected with a user token: a private join before expiry is accepted, one after it refused", async () => {
    const token = await TestTokens.userToken({ sub: unique("u-exp"), weddingIds: ["e-1", "e-2"], expiresInSeconds: 2 })
    const c = client(token)
    const system = inbox<System>("the expiry message")
    const before = c.channel("wedding:e-1", { config: { private: true } }).on("system", {}, system.push)
    await subscribe(before)
    // The gateway's own word that the token has expired, on the channel joined before.
    assert.match(
      (await system.next((m) => m.status === "error", 10_000)).message,
      /^Token has expired \d+ seconds ago$/
    )
    const failure = await failureOf(subscribe(c.channel("wedding:e-2", { config: { private: true } })))
    assert.instanceOf(failure, SubscribeError)
    assert.match((failure as Error).message, /InvalidJWTToken: Token has expired \d+ seconds ago/)
  })

  it("a join without access_token uses the connect token: accepted before its expiry, refused after", async () => {
    const token = await TestTokens.userToken({ sub: unique("u-exp"), weddingIds: ["e-3", "e-4"], expiresInSeconds: 2 })
    const c = await connect(token)
    const before = await join(c, "realtime:wedding:e-3", joinConfig({ private: true }))
    assert.include(before.reply, '"status":"ok"')
    const expired = JSON.stringify(await c.next(isEvent("system", "realtime:wedding:e-3"), 10_000))
    assert.match(expired, /Token has expired \d+ seconds ago/)
    const after = await join(c, "realtime:wedding:e-4", joinConfig({ private: true }))
    assert.match(after.reply, /InvalidJWTToken: Token has expired \d+ seconds ago/)
    // The socket stays: an anonymous public join still works.
    assert.include(
      (await join(c, "realtime:public-room", joinConfig({ access_token: anonKey }))).reply,
      '"status":"ok"'
    )
  })
})

describe("per-user cap through joins (item 6)", () => {
  it("anon-key supabase-js clients count against the user of their joins: over the cap refused, socket kept; the slot is released on close", async () => {
    const sub = unique("u-cap")
    const token = await TestTokens.userToken({ sub, weddingIds: ["c-1"] })
    const first: Array<SupabaseClient> = []
    for (let i = 0; i < MAX_PER_USER; i++) {
      const c = client(anonKey, { accessToken: token })
      await subscribe(c.channel("wedding:c-1", { config: { private: true } }))
      first.push(c)
    }
    const extra = client(anonKey, { accessToken: token })
    const statuses = inbox<{ status: string; error: Error | undefined }>("the extra client's channel status")
    extra.channel("wedding:c-1", { config: { private: true } }).subscribe((status, error) =>
      statuses.push({ status, error })
    )
    const refused = await statuses.next()
    assert.strictEqual(refused.status, "CHANNEL_ERROR")
    assert.include(refused.error?.message, "ConnectionRateLimitReached: Too many connected users for this user")
    assert.strictEqual(extra.realtime.isConnected(), true)
    // Another user is not affected.
    const other = client(anonKey, {
      accessToken: await TestTokens.userToken({ sub: unique("u-other"), weddingIds: ["c-1"] })
    })
    await subscribe(other.channel("wedding:c-1", { config: { private: true } }))
    // Once one of the first clients has gone, supabase-js's own rejoin of the refused channel gets in.
    await closeAll([first[0]!])
    assert.strictEqual((await statuses.next((s) => s.status === "SUBSCRIBED", 20_000)).status, "SUBSCRIBED")
  })
})

describe("token refresh with a value that is not a user JWT (item 7)", () => {
  const signOut = (name: string, key: () => string | null) =>
    it(`on sign-out (${name}) a private channel closes with the system message; a public one goes on with anon rights`, async () => {
      const token = await TestTokens.userToken({ sub: unique("u-out"), weddingIds: ["r-1"] })
      let current: string | null = token
      const c = client(anonKey, { accessToken: () => Promise.resolve(current) })
      await c.realtime.setAuth()
      const system = inbox<System>("the private channel's system message")
      const closed = inbox<string>("the private channel's status")
      const room = unique("room")
      const received = inbox<{ payload: { n: number } }>("a public broadcast after sign-out")
      const privateChannel = c.channel("wedding:r-1", { config: { private: true } }).on("system", {}, system.push)
      privateChannel.subscribe((status) => closed.push(status))
      await closed.next((s) => s === "SUBSCRIBED")
      const publicChannel = c.channel(room).on("broadcast", { event: "m" }, received.push)
      await subscribe(publicChannel)
      // What supabase-js does on sign-out: the token callback now yields the project key (or null), and setAuth pushes it.
      current = key()
      await c.realtime.setAuth()
      const message = await system.next((m) => m.status === "error")
      assert.include(message.message, "You do not have permissions to read from this Channel topic: wedding:r-1")
      await closed.next((s) => s === "CLOSED")
      const sender = client(anonKey).channel(room, { config: { broadcast: { ack: true } } })
      await subscribe(sender)
      assert.strictEqual(await sender.send({ type: "broadcast", event: "m", payload: { n: 1 } }), "ok")
      assert.deepStrictEqual((await received.next()).payload, { n: 1 })
    })
  signOut("anon JWT", () => anonKey)
  signOut("sb_publishable_ key", () => "sb_publishable_test-project-key")
  signOut("a token callback answering null: the socket's anon key", () => null)

  it("a refresh with a fresh user token keeps the private channel", async () => {
    const sub = unique("u-keep")
    let current = await TestTokens.userToken({ sub, weddingIds: ["r-2"] })
    const c = client(anonKey, { accessToken: () => Promise.resolve(current) })
    await c.realtime.setAuth()
    const received = inbox<{ payload: { n: number } }>("a private broadcast after the refresh")
    const channel = c.channel("wedding:r-2", { config: { private: true } }).on(
      "broadcast",
      { event: "m" },
      received.push
    )
    await subscribe(channel)
    current = await TestTokens.userToken({ sub, weddingIds: ["r-2"], expiresInSeconds: 7200 })
    await c.realtime.setAuth()
    const sender = client(anonKey, {
      accessToken: await TestTokens.userToken({ sub: unique("u-send"), weddingIds: ["r-2"] })
    })
      .channel("wedding:r-2", { config: { private: true, broadcast: { ack: true } } })
    await subscribe(sender)
    assert.strictEqual(await sender.send({ type: "broadcast", event: "m", payload: { n: 2 } }), "ok")
    assert.deepStrictEqual((await received.next()).payload, { n: 2 })
    assert.strictEqual(channel.state, "joined")
  })
})

describe("postgres_changes bindings and the per-socket frame rate (item 9)", () => {
  const binding = (event: string, table = "messages") => ({ event, schema: "public", table })

  it("refuses an unknown event instead of widening it to *, and accepts INSERT", async () => {
    const c = await connect()
    const refused = await join(c, `realtime:${unique("pg")}`, joinConfig({ postgres_changes: [binding("UPSERT")] }))
    assert.include(refused.reply, 'InvalidJoinPayload: Unknown postgres_changes event \\"UPSERT\\"')
    const accepted = await join(c, `realtime:${unique("pg")}`, joinConfig({ postgres_changes: [binding("INSERT")] }))
    assert.include(accepted.reply, '"status":"ok"')
  })

  it(`refuses more than MAX_BINDINGS_PER_CHANNEL (${MAX_BINDINGS}) bindings and accepts that many`, async () => {
    const c = await connect()
    const many = Array.from({ length: MAX_BINDINGS + 1 }, (_, i) => binding("*", `t${i}`))
    const refused = await join(c, `realtime:${unique("pg")}`, joinConfig({ postgres_changes: many }))
    assert.include(
      refused.reply,
      `BindingLimitReached: Too many postgres_changes bindings; at most ${MAX_BINDINGS} per channel`
    )
    const accepted = await join(
      c,
      `realtime:${unique("pg")}`,
      joinConfig({ postgres_changes: many.slice(0, MAX_BINDINGS) })
    )
    assert.include(accepted.reply, '"status":"ok"')
  })

  it("closes a heartbeat flood with 4030; a socket heartbeating normally beside it is answered", async () => {
    const calm = await connect()
    const flooder = await connect()
    for (let i = 0; i < 2000; i++) flooder.send(v2(null, String(i), "phoenix", "heartbeat", {}))
    const closed = await flooder.closed
    assert.strictEqual(closed.code, 4030)
    const ref = calm.makeRef()
    calm.send(v2(null, ref, "phoenix", "heartbeat", {}))
    assert.include(JSON.stringify(await calm.next(isReplyTo(ref))), '"status":"ok"')
  })
})

describe("deeply nested JSON on a socket (item 10)", () => {
  it("closes only the sender with 4003; a receiver in the room stays and gets the next broadcast", async () => {
    const topic = `realtime:${unique("deep")}`
    const receiver = await connect()
    const sender = await connect()
    const other = await connect()
    await join(receiver, topic)
    const s = await join(sender, topic)
    const o = await join(other, topic)
    const depth = 100_000
    const deep = `{"a":${"[".repeat(depth)}${"]".repeat(depth)}}`
    sender.send(`["${s.ref}","x","${topic}","broadcast",{"type":"broadcast","event":"m","payload":${deep}}]`)
    assert.strictEqual((await sender.closed).code, 4003)
    other.send(v2(o.ref, other.makeRef(), topic, "broadcast", { type: "broadcast", event: "m", payload: { n: 1 } }))
    assert.include(JSON.stringify(await receiver.next(isEvent("broadcast", topic))), '"n":1')
  })
})

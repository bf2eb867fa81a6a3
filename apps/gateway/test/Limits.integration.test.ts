/**
 * Issue 6 items 1 and 2 through unmodified supabase-js clients and a gateway with the default limits: presence keys
 * named after `Object.prototype` members are ordinary keys for every later joiner, and a broadcast of the largest
 * accepted size reaches every receiver without closing any of them (one byte more is refused to the sender only).
 */
import { TestTokens } from "@wedsync/auth/testing"
import { ConnectionConfig } from "@wedsync/connection"
import { SupabaseClients } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, inbox, waitFor, closeAll } = SupabaseClients

type BroadcastMessage = { readonly event: string; readonly payload: { readonly p: string } }

const PROTOTYPE_KEYS = ["constructor", "__proto__", "toString", "hasOwnProperty"] as const

describe.each(["2.0.0", "1.0.0"] as const)("limits with supabase-js vsn %s", (vsn) => {
  let gateway: RunningGateway
  let anonKey: string
  const clients: Array<SupabaseClient> = []
  let seq = 0
  const room = () => `limits-${vsn}-${++seq}`
  const client = () => {
    const c = makeSupabaseClient(gateway.url, anonKey, { vsn })
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    gateway = await startGateway()
    anonKey = await TestTokens.anonToken()
  })
  afterEach(async () => {
    await closeAll(clients.splice(0))
  })
  afterAll(async () => {
    await gateway.stop()
  })

  it("tracks presence keys named after Object.prototype members; a later joiner with a normal key sees them all", async () => {
    const name = room()
    for (const key of PROTOTYPE_KEYS) {
      const channel = client().channel(name, { config: { presence: { key } } })
      await subscribe(channel)
      assert.strictEqual(await channel.track({ who: key }), "ok")
    }
    // The joiner reads keys from join events: realtime-js' presenceState() copies keys into a plain object, where
    // `__proto__` would be taken for the prototype on the client side.
    const joined = new Set<string>()
    const late = client().channel(name, { config: { presence: { key: "guest" } } })
    const sawAll = waitFor<void>(
      (resolve) =>
        late.on("presence", { event: "join" }, ({ key }: { key: string }) => {
          joined.add(key)
          if (PROTOTYPE_KEYS.every((k) => joined.has(k)) && joined.has("guest")) resolve()
        }),
      5000,
      "the late joiner to see every key"
    )
    await subscribe(late)
    assert.strictEqual(late.state, "joined")
    assert.strictEqual(await late.track({ who: "guest" }), "ok")
    await sawAll
    const state = late.presenceState<{ who: string }>()
    assert.deepStrictEqual(state["constructor"]?.map((m) => m.who), ["constructor"])
    assert.strictEqual(Object.hasOwn(state, "toString") && state["toString"]?.[0]?.who, "toString")
    assert.deepStrictEqual(state["guest"]?.map((m) => m.who), ["guest"])
  })

  it("a broadcast of MAX_PAYLOAD_BYTES reaches three receivers, none closed; one byte more is refused to the sender only", async () => {
    const name = room()
    const max = ConnectionConfig.defaults.maxPayloadBytes
    const boxes = [0, 1, 2].map((i) => inbox<BroadcastMessage>(`max broadcast at receiver ${i}`))
    const receivers = boxes.map((box) => client().channel(name).on("broadcast", { event: "big" }, box.push))
    for (const r of receivers) await subscribe(r)
    const sender = client().channel(name, { config: { broadcast: { ack: true } } })
    await subscribe(sender)
    // The limit counts the payload bytes of a binary (2.0.0) broadcast, and the whole broadcast JSON of a 1.0.0 one.
    const overhead = vsn === "2.0.0"
      ? `{"p":""}`.length
      : JSON.stringify({ type: "broadcast", event: "big", payload: { p: "" } }).length
    const p = "y".repeat(max - overhead) // exactly MAX_PAYLOAD_BYTES as the gateway counts it
    assert.strictEqual(await sender.send({ type: "broadcast", event: "big", payload: { p } }), "ok")
    for (const box of boxes) assert.strictEqual((await box.next()).payload.p.length, p.length)
    assert.strictEqual(await sender.send({ type: "broadcast", event: "big", payload: { p: `${p}y` } }), "error")
    assert.strictEqual(await sender.send({ type: "broadcast", event: "big", payload: { p: "small" } }), "ok")
    for (const box of boxes) {
      assert.strictEqual((await box.next()).payload.p, "small")
      assert.lengthOf(box.received, 2)
    }
    for (const c of [...receivers, sender]) assert.strictEqual(c.state, "joined")
    for (const c of clients) assert.strictEqual(c.realtime.isConnected(), true)
  })
})

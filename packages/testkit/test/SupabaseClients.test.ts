import { assert, describe, it } from "@effect/vitest"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll } from "vitest"
import { WebSocketServer } from "ws"
import { SupabaseClients } from "../src/index.ts"

// A minimal Phoenix server, enough for supabase-js to join: joins to topics containing "forbidden" get an error reply,
// "silent" none at all, everything else an ok followed, for "push3", by three text broadcasts { n: 1..3 }.
// It records the socket URLs and join payloads it saw.
let wss: WebSocketServer
let baseUrl = ""
const seen = { urls: [] as Array<string>, joins: [] as Array<{ topic: string; payload: Record<string, unknown> }> }

type Parsed = {
  joinRef: string | null
  ref: string | null
  topic: string
  event: string
  payload: Record<string, unknown>
}

beforeAll(async () => {
  wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false })
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()))
  baseUrl = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`
  wss.on("connection", (ws, request) => {
    seen.urls.push(request.url ?? "")
    const v2 = new URL(request.url ?? "/", baseUrl).searchParams.get("vsn") === "2.0.0"
    const send = (m: Parsed) =>
      ws.send(JSON.stringify(
        v2 ? [m.joinRef, m.ref, m.topic, m.event, m.payload] : {
          topic: m.topic,
          event: m.event,
          payload: m.payload,
          ref: m.ref,
          join_ref: m.joinRef
        }
      ))
    ws.on("message", (data, isBinaryFrame) => {
      // vsn 2.0.0 clients send broadcasts as binary frames; this server does not speak those.
      if (isBinaryFrame) return
      const raw = JSON.parse(data.toString()) as unknown
      const m: Parsed = Array.isArray(raw)
        ? { joinRef: raw[0], ref: raw[1], topic: raw[2], event: raw[3], payload: raw[4] }
        : { ...(raw as Parsed), joinRef: (raw as { join_ref?: string | null }).join_ref ?? null }
      const reply = (status: string, response: Record<string, unknown>) =>
        send({ ...m, event: "phx_reply", payload: { status, response } })
      if (m.event === "phx_join") {
        seen.joins.push({ topic: m.topic, payload: m.payload })
        if (m.topic.includes("forbidden")) reply("error", { reason: "Unauthorized: you shall not pass" })
        else if (!m.topic.includes("silent")) reply("ok", { postgres_changes: [] })
        if (m.topic.includes("push3")) {
          for (const n of [1, 2, 3]) {
            send({ ...m, ref: null, event: "broadcast", payload: { type: "broadcast", event: "msg", payload: { n } } })
          }
        }
      } else {
        reply("ok", {})
      }
    })
  })
})

afterAll(async () => {
  for (const ws of wss.clients) ws.terminate()
  await new Promise<void>((resolve) => wss.close(() => resolve()))
})

describe("SupabaseClients", () => {
  for (const vsn of ["1.0.0", "2.0.0"] as const) {
    it(`subscribes and receives a broadcast over vsn ${vsn}`, async () => {
      const client = SupabaseClients.makeSupabaseClient(baseUrl, "anon-key", { vsn, heartbeatIntervalMs: 1000 })
      try {
        const channel = client.channel(`push3-${vsn}`)
        const box = SupabaseClients.inbox<{ payload: { n: number } }>("broadcast msg")
        channel.on("broadcast", { event: "msg" }, box.push)
        await SupabaseClients.subscribe(channel)
        assert.strictEqual((await box.next((m) => m.payload.n === 3)).payload.n, 3)
        assert.strictEqual((await box.next()).payload.n, 1)
        const url = new URL(seen.urls.at(-1)!, baseUrl)
        assert.strictEqual(url.pathname, "/realtime/v1/websocket")
        assert.strictEqual(url.searchParams.get("vsn"), vsn)
        assert.strictEqual(url.searchParams.get("apikey"), "anon-key")
      } finally {
        await SupabaseClients.closeAll([client])
      }
    })
  }

  it("passes heartbeat, timeout and vsn through to realtime-js unchanged", async () => {
    const client = SupabaseClients.makeSupabaseClient(baseUrl, "k", {
      vsn: "1.0.0",
      heartbeatIntervalMs: 1234,
      timeoutMs: 567
    })
    assert.strictEqual(client.realtime.heartbeatIntervalMs, 1234)
    assert.strictEqual(client.realtime.timeout, 567)
    assert.strictEqual(client.realtime.vsn, "1.0.0")
    await SupabaseClients.closeAll([client])
  })

  it("sends the access token in the join payload", async () => {
    // Opaque to the client and to this fake server: signed tokens come from `@wedsync/auth/testing`.
    const token = "header.payload.signature"
    const client = SupabaseClients.makeSupabaseClient(baseUrl, "anon-key", { accessToken: token })
    try {
      await SupabaseClients.subscribe(client.channel("with-token"))
      const join = seen.joins.find((j) => j.topic === "realtime:with-token")
      assert.strictEqual(join?.payload["access_token"], token)
    } finally {
      await SupabaseClients.closeAll([client])
    }
  })

  it("rejects with CHANNEL_ERROR and the server's reason when the join is refused", async () => {
    const client = SupabaseClients.makeSupabaseClient(baseUrl, "anon-key")
    try {
      const error = await SupabaseClients.subscribe(client.channel("forbidden")).then(
        () => undefined,
        (e: unknown) => e
      )
      assert.instanceOf(error, SupabaseClients.SubscribeError)
      assert.strictEqual((error as SupabaseClients.SubscribeError).status, "CHANNEL_ERROR")
      assert.include((error as Error).message, "you shall not pass")
    } finally {
      await SupabaseClients.closeAll([client])
    }
  })

  it("rejects with TIMED_OUT when the join is never answered", async () => {
    const client = SupabaseClients.makeSupabaseClient(baseUrl, "anon-key", { timeoutMs: 100 })
    try {
      const error = await SupabaseClients.subscribe(client.channel("silent")).then(() => undefined, (e: unknown) => e)
      assert.strictEqual((error as SupabaseClients.SubscribeError).status, "TIMED_OUT")
    } finally {
      await SupabaseClients.closeAll([client], 200)
    }
  })

  it("waitFor resolves with the registered value and times out with a message naming the wait", async () => {
    assert.strictEqual(await SupabaseClients.waitFor<number>((resolve) => setTimeout(() => resolve(7), 5), 1000), 7)
    const error = await SupabaseClients.waitFor(() => {}, 20, "presence sync").then(() => undefined, (e: Error) => e)
    assert.strictEqual(error?.message, "timed out after 20 ms waiting for presence sync")
  })
})

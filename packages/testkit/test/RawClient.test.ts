import { assert, describe, it } from "@effect/vitest"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll } from "vitest"
import { WebSocketServer } from "ws"
import type { WebSocket } from "ws"
import { RawClient, waitUntil } from "../src/index.ts"

// An echo server; a text frame "close:<code>:<reason>" makes it close the socket, "flood:<n>" sends n 64 KiB frames.
let wss: WebSocketServer
let url = ""
const serverSockets: Array<WebSocket> = []

beforeAll(async () => {
  wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    perMessageDeflate: false,
    verifyClient: (info, done) => done(!info.req.url?.includes("refuse"), 401, "Unauthorized")
  })
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()))
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/socket`
  wss.on("connection", (ws) => {
    serverSockets.push(ws)
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? "" : data.toString()
      const [command, a, b] = text.split(":")
      if (command === "close") ws.close(Number(a), b)
      else if (command === "flood") { for (let i = 0; i < Number(a); i++) ws.send(Buffer.alloc(65536, i % 256)) }
      else ws.send(data, { binary: isBinary })
    })
  })
})

afterAll(async () => {
  for (const ws of wss.clients) ws.terminate()
  await new Promise<void>((resolve) => wss.close(() => resolve()))
})

describe("RawClient", () => {
  it("round-trips v2 arrays and v1 objects as parsed JSON", async () => {
    const client = await RawClient.connect(url)
    const ref = client.makeRef()
    client.send(RawClient.v2(ref, ref, "realtime:room", "phx_join", { config: {} }))
    client.send(RawClient.v1(null, client.makeRef(), "phoenix", "heartbeat", {}))
    assert.deepStrictEqual(await client.next(RawClient.isEvent("phx_join", "realtime:room")), [
      "1",
      "1",
      "realtime:room",
      "phx_join",
      { config: {} }
    ])
    assert.deepStrictEqual(await client.next(RawClient.isEvent("heartbeat")), {
      topic: "phoenix",
      event: "heartbeat",
      payload: {},
      ref: "2",
      join_ref: null
    })
    await client.close()
  })

  it("returns binary frames as Buffers and non-JSON text as strings", async () => {
    const client = await RawClient.connect(url)
    client.send(new Uint8Array([4, 1, 2, 3]))
    client.send("not json")
    const binary = await client.next(Buffer.isBuffer)
    assert.isTrue(Buffer.isBuffer(binary))
    assert.deepStrictEqual([...(binary as Buffer)], [4, 1, 2, 3])
    assert.strictEqual(await client.next((f) => typeof f === "string"), "not json")
    await client.close()
  })

  it("keeps frames that did not match for later waits", async () => {
    const client = await RawClient.connect(url)
    for (const n of [1, 2, 3]) client.send({ n })
    assert.deepStrictEqual(await client.next((f) => (f as { n: number }).n === 3), { n: 3 })
    assert.deepStrictEqual(await client.next(), { n: 1 })
    assert.deepStrictEqual(client.drain(), [{ n: 2 }])
    assert.strictEqual(client.received.length, 3)
    await client.close()
  })

  it("a wait that times out says what it waited for and what arrived", async () => {
    const client = await RawClient.connect(url)
    client.send({ event: "other" })
    await client.next()
    const error = await client.next(RawClient.isReplyTo("99"), 50).then(() => undefined, (e: Error) => e)
    assert.match(String(error?.message), /timed out after 50 ms waiting for a frame matching/)
    assert.include(String(error?.message), `{"event":"other"}`)
    await client.close()
  })

  it("isReplyTo matches v1 and v2 replies by ref", () => {
    assert.isTrue(RawClient.isReplyTo("7")(["1", "7", "t", "phx_reply", { status: "ok" }]))
    assert.isFalse(RawClient.isReplyTo("7")(["1", "8", "t", "phx_reply", { status: "ok" }]))
    assert.isTrue(RawClient.isReplyTo("7")({ topic: "t", event: "phx_reply", payload: {}, ref: "7" }))
    assert.isFalse(RawClient.isReplyTo("7")(Buffer.from([1])))
  })

  it("reports the server's close code and reason, and fails pending waits", async () => {
    const client = await RawClient.connect(url)
    const pending = client.next(RawClient.isEvent("never"), 5000).then(() => undefined, (e: Error) => e)
    client.send("close:4001:go away")
    assert.deepStrictEqual(await client.closed, { code: 4001, reason: "go away" })
    assert.match(String((await pending)?.message), /socket closed \(code 4001, reason go away\)/)
    await client.next().then(
      () => assert.fail("next after close resolved"),
      (e: Error) => assert.match(e.message, /closed/)
    )
  })

  it("pause stops reading so the server's buffer fills; resume delivers everything", async () => {
    const client = await RawClient.connect(url)
    client.send({ hello: 1 })
    await client.next()
    const server = serverSockets.at(-1)!
    client.pause()
    client.send("flood:200")
    // 200 × 64 KiB is far beyond the socket buffers, so the server must be left holding some of it.
    await waitUntil("the server to hold unsent bytes", () => server.bufferedAmount, (n) => n > 0, {
      timeoutMs: 3000,
      intervalMs: 10
    })
    await new Promise((r) => setTimeout(r, 50))
    const whilePaused = client.received.length
    assert.isBelow(whilePaused, 201)
    client.resume()
    for (let i = 0; i < 200; i++) await client.next(Buffer.isBuffer)
    assert.strictEqual(client.received.length, 201)
    await client.close()
  })

  it("rejects a refused upgrade with the HTTP status", async () => {
    const error = await RawClient.connect(url + "?refuse=1").then(() => undefined, (e: Error) => e)
    assert.match(String(error?.message), /401/)
  })
})

/**
 * The gateway's edge, seen from raw HTTP: REST body limits (Content-Length and chunked), deeply
 * nested JSON, CORS preflights, and per-IP caps behind trusted and untrusted proxies.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RawClient, waitUntil } from "@wedsync/testkit"
import { request } from "node:http"
import { connect } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import { tryUpgrade } from "./support/Http.ts"

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
  /** Chunks written when the answer arrived (chunked uploads only). */
  readonly chunksWritten: number
}

/**
 * A raw request. `chunks` are written one after the other with chunked encoding (no Content-Length)
 * unless `contentLength` is given; writing stops once the answer arrives, so an endless body ends.
 */
const send = (
  url: string,
  options: {
    readonly method?: string
    readonly headers?: Record<string, string>
    readonly body?: Buffer
    readonly chunks?: { readonly size: number; readonly count: number }
  }
): Promise<Answer> =>
  new Promise((resolve, reject) => {
    let answered = false
    let written = 0
    const req = request(url, { method: options.method ?? "POST", headers: options.headers ?? {} })
    req.on("response", (res) => {
      answered = true
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, chunksWritten: written }))
    })
    // A server that closes after answering makes further writes fail; the answer is what counts.
    req.on("error", (error) => (answered ? undefined : reject(error)))
    if (options.chunks !== undefined) {
      const { size, count } = options.chunks
      const chunk = Buffer.alloc(size, 0x61)
      const pump = () => {
        while (!answered && written < count) {
          written++
          if (!req.write(chunk)) return void req.once("drain", pump)
        }
        if (!answered) req.end()
      }
      pump()
    } else {
      req.end(options.body)
    }
  })

let gateway: RunningGateway
let anonKey: string
const LIMIT = 10_000

beforeAll(async () => {
  gateway = await startGateway({ gateway: { maxRestBodyBytes: LIMIT, corsOrigins: ["https://app.example.com"] } })
  anonKey = await TestTokens.anonToken()
})
afterAll(async () => {
  await gateway.stop()
})

const single = () => `${gateway.url}/realtime/v1/api/broadcast/room-1/events/note`
const batch = () => `${gateway.url}/realtime/v1/api/broadcast`
const auth = () => ({ apikey: anonKey, authorization: `Bearer ${anonKey}`, "content-type": "application/json" })
const batchBody = (payloadBytes: number) =>
  Buffer.from(
    JSON.stringify({ messages: [{ topic: "room-1", event: "note", payload: { text: "x".repeat(payloadBytes) } }] })
  )

describe("REST body limit", () => {
  it("accepts a body just under the limit on both endpoints", async () => {
    const under = batchBody(LIMIT - 200)
    assert.isAtMost(under.length, LIMIT)
    assert.strictEqual((await send(batch(), { headers: auth(), body: under })).status, 202)
    const payload = Buffer.from(JSON.stringify({ text: "y".repeat(LIMIT - 20) }))
    assert.strictEqual((await send(single(), { headers: auth(), body: payload })).status, 202)
  })

  it("refuses a Content-Length over the limit with 413 and a reason, on both endpoints", async () => {
    for (const url of [batch(), single()]) {
      const answer = await send(url, { headers: auth(), body: batchBody(LIMIT + 10) })
      assert.strictEqual(answer.status, 413)
      assert.deepStrictEqual(JSON.parse(answer.body), {
        message: `Payload Too Large: Request body exceeds ${LIMIT} bytes`
      })
      assert.strictEqual(answer.headers["connection"], "close")
    }
  })

  it("stops reading a chunked body at the limit (an endless upload gets its 413) and keeps serving others", async () => {
    for (const url of [batch(), single()]) {
      // 64 MiB offered in 64 KiB chunks; the answer arrives after the first chunk or so.
      const answer = await send(url, { headers: auth(), chunks: { size: 65_536, count: 1_024 } })
      assert.strictEqual(answer.status, 413)
      assert.include(answer.body, "Payload Too Large")
      // The server answered long before the upload was over: it stopped reading at the limit.
      assert.isBelow(answer.chunksWritten, 64)
    }
    assert.strictEqual((await send(batch(), { headers: auth(), body: batchBody(10) })).status, 202)
    assert.strictEqual((await fetch(`${gateway.url}/health`)).status, 200)
  })

  it("authenticates before reading: an anonymous oversize body gets 401 unread", async () => {
    const answer = await send(batch(), {
      headers: { "content-type": "application/json" },
      chunks: { size: 65_536, count: 1_024 }
    })
    assert.strictEqual(answer.status, 401)
  })
})

describe("deeply nested JSON over REST", () => {
  const nested = (depth: number) => Buffer.from(`${"[".repeat(depth)}${"]".repeat(depth)}`)

  it("answers 400 with a reason for the batch and the single endpoint, and accepts ordinary nesting", async () => {
    const deep = Buffer.from(
      `{"messages":[{"topic":"room-1","event":"e","payload":{"a":${"[".repeat(4_000)}${"]".repeat(4_000)}}}]}`
    )
    const refused = await send(batch(), { headers: auth(), body: deep })
    assert.containSubset(refused, { status: 400 })
    assert.deepStrictEqual(JSON.parse(refused.body), { message: "JSON is nested more than 64 levels deep" })
    const single400 = await send(single(), { headers: auth(), body: Buffer.from(`{"a":${nested(4_000).toString()}}`) })
    assert.strictEqual(single400.status, 400)
    const fine = Buffer.from(`{"messages":[{"topic":"room-1","event":"e","payload":{"a":${nested(30).toString()}}}]}`)
    assert.strictEqual((await send(batch(), { headers: auth(), body: fine })).status, 202)
  })
})

describe("CORS", () => {
  const preflight = (origin: string) =>
    send(single(), {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "apikey, authorization, content-type, x-client-info"
      }
    })

  it("answers a preflight from an allowed origin with its origin, POST and the requested headers", async () => {
    const answer = await preflight("https://app.example.com")
    assert.strictEqual(answer.status, 204)
    assert.strictEqual(answer.headers["access-control-allow-origin"], "https://app.example.com")
    assert.include(answer.headers["access-control-allow-methods"], "POST")
    assert.strictEqual(
      answer.headers["access-control-allow-headers"],
      "apikey, authorization, content-type, x-client-info"
    )
    const post = await send(single(), {
      headers: { ...auth(), origin: "https://app.example.com" },
      body: Buffer.from("{}")
    })
    assert.strictEqual(post.status, 202)
    assert.strictEqual(post.headers["access-control-allow-origin"], "https://app.example.com")
  })

  it("gives a disallowed origin no allow-origin header (the browser blocks the call)", async () => {
    const answer = await preflight("https://evil.example.net")
    assert.isUndefined(answer.headers["access-control-allow-origin"])
    const post = await send(single(), {
      headers: { ...auth(), origin: "https://evil.example.net" },
      body: Buffer.from("{}")
    })
    assert.isUndefined(post.headers["access-control-allow-origin"])
  })

  it("allows any origin with CORS_ORIGINS=* (the default)", async () => {
    const open = await startGateway()
    try {
      const answer = await send(`${open.url}/realtime/v1/api/broadcast`, {
        method: "OPTIONS",
        headers: { origin: "https://any.example.org", "access-control-request-method": "POST" }
      })
      assert.strictEqual(answer.status, 204)
      assert.strictEqual(answer.headers["access-control-allow-origin"], "*")
    } finally {
      await open.stop()
    }
  })
})

describe("per-IP caps behind a proxy (TRUSTED_PROXIES)", () => {
  const clients: Array<RawClient.RawClient> = []
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
  })

  const connectAs = async (target: RunningGateway, forwardedFor: string) => {
    const client = await RawClient.connect(`${target.wsUrl}?apikey=${anonKey}&vsn=2.0.0`, {
      headers: { "x-forwarded-for": forwardedFor }
    })
    clients.push(client)
    return client
  }
  const upgradeAs = (target: RunningGateway, forwardedFor: string) =>
    tryUpgrade(`${target.wsUrl}?apikey=${anonKey}&vsn=2.0.0`, { "x-forwarded-for": forwardedFor })

  it("counts the right-most untrusted X-Forwarded-For address when the peer is a trusted proxy", async () => {
    const behindProxy = await startGateway({
      gateway: { trustedProxies: ["127.0.0.1", "10.0.0.0/8"] },
      connection: { maxConnectionsPerIp: 1 }
    })
    try {
      // "198.51.100.9" is what the client claimed; the trusted proxy appended the real client 203.0.113.5, then 10.1.2.3 (a proxy).
      await connectAs(behindProxy, "198.51.100.9, 203.0.113.5, 10.1.2.3")
      assert.strictEqual((await upgradeAs(behindProxy, "198.51.100.77, 203.0.113.5")).status, 429)
      assert.strictEqual((await upgradeAs(behindProxy, "198.51.100.9, 203.0.113.6")).status, 101)
    } finally {
      await behindProxy.stop()
    }
  })

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy (no spoofing)", async () => {
    const elsewhere = await startGateway({
      gateway: { trustedProxies: ["10.0.0.0/8"] },
      connection: { maxConnectionsPerIp: 1 }
    })
    try {
      await connectAs(elsewhere, "203.0.113.5")
      // A different claimed address does not buy a second slot: both count as 127.0.0.1.
      assert.strictEqual((await upgradeAs(elsewhere, "203.0.113.99")).status, 429)
    } finally {
      await elsewhere.stop()
    }
  })
})

describe("a client that leaves during the handshake", () => {
  /** Sends a valid upgrade request and closes the socket at once, before the gateway can answer. */
  const upgradeAndVanish = (target: RunningGateway) =>
    new Promise<void>((resolve, reject) => {
      const socket = connect(target.port, "127.0.0.1", () => {
        socket.write(
          `GET /realtime/v1/websocket?apikey=${anonKey}&vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n` +
            `Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${
              Buffer.from("0123456789abcdef").toString("base64")
            }\r\n\r\n`,
          () => {
            socket.destroy()
            resolve()
          }
        )
      })
      socket.on("error", reject)
    })

  it("releases its connection slot: the next client from that address is admitted", async () => {
    const capped = await startGateway({ connection: { maxConnectionsPerIp: 1, connectErrorDelayMs: 0 } })
    try {
      for (let i = 0; i < 5; i++) await upgradeAndVanish(capped)
      // The vanished handshakes finish (or not) asynchronously; each would hold the only slot for 127.0.0.1 if leaked.
      const answer = await waitUntil(
        "an upgrade from the capped address to be admitted",
        () => tryUpgrade(`${capped.wsUrl}?apikey=${anonKey}&vsn=2.0.0`),
        (a) => a.status === 101
      )
      assert.strictEqual(answer.status, 101)
      // The cap still holds for clients that stay: one open socket, and a second is refused.
      const stays = await RawClient.connect(`${capped.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)
      try {
        assert.strictEqual((await tryUpgrade(`${capped.wsUrl}?apikey=${anonKey}&vsn=2.0.0`)).status, 429)
      } finally {
        await stays.close()
      }
    } finally {
      await capped.stop()
    }
  })
})

/**
 * SIGTERM on the real process (`node src/main.ts`, configured only by environment): new joins and
 * sockets are refused, /ready turns 503, every socket is told to leave and closed with 1012 in
 * batches, and the process exits 0. Also at scale (1,500 sockets, upgrades during the drain answered 503), a second
 * signal forcing the exit, and `npm start` passing SIGTERM on to the gateway.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RawClient, waitUntil } from "@wedsync/testkit"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { assert, it } from "@effect/vitest"
import { afterEach } from "vitest"
import { WebSocket } from "ws"
import { getText, tryUpgrade } from "./support/Http.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const children: Array<ReturnType<typeof spawn>> = []

afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
})

/** Starts the gateway (by default `node src/main.ts`; or another command, e.g. `npm start`) and waits until it listens. */
const startProcess = async (
  env: Record<string, string>,
  command: { readonly file: string; readonly args: ReadonlyArray<string>; readonly cwd?: string } = {
    file: process.execPath,
    args: [main]
  }
) => {
  const child = spawn(command.file, command.args, {
    cwd: command.cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  let output = ""
  const listening = new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = output.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/)
      if (match) resolve(Number(match[1]))
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.once("exit", (code) => reject(new Error(`gateway exited with ${code} before listening:\n${output}`)))
  })
  return { child, port: await listening, output: () => output }
}

it("drains on SIGTERM: refuses new work, asks sockets to leave in batches, then exits", async () => {
  const { child, port } = await startProcess({
    HOST: "127.0.0.1",
    PORT: "0",
    DRAIN_BATCH_SIZE: "1",
    DRAIN_INTERVAL_MS: "300",
    CONNECT_ERROR_BACKOFF_MS: "0"
  })
  const anonKey = await TestTokens.anonToken()
  const url = `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${anonKey}&vsn=2.0.0`
  const clients = await Promise.all([1, 2, 3].map(() => RawClient.connect(url)))
  for (const [i, client] of clients.entries()) {
    client.send(["1", "1", `realtime:drain-${i}`, "phx_join", { config: {} }])
    await client.next(RawClient.isReplyTo("1"))
  }
  assert.strictEqual((await getText(`http://127.0.0.1:${port}/ready`)).status, 200)
  child.kill("SIGTERM")
  const first = await Promise.race(clients.map((c) => c.closed))
  assert.strictEqual(first.code, 1012)
  // While the remaining batches wait, the node reports not ready and refuses new sockets.
  assert.strictEqual((await getText(`http://127.0.0.1:${port}/ready`)).status, 503)
  assert.strictEqual((await tryUpgrade(url)).status, 503)
  for (const [i, client] of clients.entries()) {
    assert.strictEqual((await client.closed).code, 1012)
    assert.deepInclude(client.received, [
      "1",
      null,
      `realtime:drain-${i}`,
      "system",
      { extension: "system", status: "ok", message: "Server requested disconnect", channel: `drain-${i}` }
    ])
  }
  // A drain asked for by a signal is a clean stop.
  const [code, signal] = await once(child, "exit")
  assert.deepStrictEqual({ code, signal }, { code: 0, signal: null })
}, 30_000)

/** Opens `count` bare sockets (no per-client bookkeeping beyond the close code) in rounds of 100. */
const openSockets = async (url: string, count: number) => {
  const closeCodes: Array<number> = []
  const closed: Array<Promise<void>> = []
  for (let i = 0; i < count; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - i) }, () =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(url)
        closed.push(new Promise((done) => ws.once("close", (code) => done(void closeCodes.push(code)))))
        ws.once("open", () => resolve())
        ws.once("error", reject)
      })))
  }
  return { closeCodes, allClosed: Promise.all(closed) }
}

it(
  "drains 1,500 sockets: an upgrade during the drain gets 503 at once, every socket 1012, the process exits 0",
  async () => {
    // The default connect-error backoff (2 s) is what used to leave a drain-time upgrade unanswered until the
    // transport was gone, and its socket kept the HTTP server, and so the process, from ever closing.
    const { child, port } = await startProcess({
      HOST: "127.0.0.1",
      PORT: "0",
      CONNECT_ERROR_BACKOFF_MS: "2000",
      DRAIN_BATCH_SIZE: "500",
      DRAIN_INTERVAL_MS: "1000"
    })
    const url = `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=1.0.0`
    const sockets = await openSockets(url, 1_500)
    const exited = once(child, "exit")
    child.kill("SIGTERM")
    await waitUntil("the first socket to close", () => sockets.closeCodes.length, (n) => n > 0, {
      timeoutMs: 60_000,
      intervalMs: 5
    })
    const started = performance.now()
    const late = await tryUpgrade(url)
    assert.strictEqual(late.status, 503)
    assert.isBelow(performance.now() - started, 1_500)
    await sockets.allClosed
    assert.strictEqual(sockets.closeCodes.length, 1_500)
    assert.deepStrictEqual(sockets.closeCodes.filter((code) => code !== 1012), [])
    const [code, signal] = await exited
    assert.deepStrictEqual({ code, signal }, { code: 0, signal: null })
  },
  60_000
)

it("a second SIGTERM during the drain exits at once with 1; the first alone keeps draining", async () => {
  const { child, port } = await startProcess({
    HOST: "127.0.0.1",
    PORT: "0",
    DRAIN_BATCH_SIZE: "1",
    DRAIN_INTERVAL_MS: "20000",
    DRAIN_TIMEOUT_MS: "60000"
  })
  const url = `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=1.0.0`
  const clients = await Promise.all([1, 2].map(() => RawClient.connect(url)))
  const exited = once(child, "exit")
  child.kill("SIGTERM")
  // The first batch leaves; the second waits 20 s, and the process with it.
  const first = await Promise.race(clients.map((c) => c.closed))
  assert.strictEqual(first.code, 1012)
  assert.strictEqual(child.exitCode, null)
  child.kill("SIGTERM")
  const [code, signal] = await exited
  assert.deepStrictEqual({ code, signal }, { code: 1, signal: null })
}, 30_000)

it("SIGTERM to `npm start` reaches the gateway: it drains, exits 0 and leaves no process serving", async () => {
  const root = fileURLToPath(new URL("../../../", import.meta.url))
  const { child: npm, port, output: logged } = await startProcess({ HOST: "127.0.0.1", PORT: "0" }, {
    file: "npm",
    args: ["start"],
    cwd: root
  })
  const client = await RawClient.connect(
    `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=2.0.0`
  )
  assert.strictEqual((await getText(`http://127.0.0.1:${port}/health`)).status, 200)
  const exited = once(npm, "exit")
  npm.kill("SIGTERM")
  assert.strictEqual((await client.closed).code, 1012)
  const [code] = await exited
  assert.strictEqual(code, 0)
  assert.include(logged(), "draining 1 connections")
  const after = await getText(`http://127.0.0.1:${port}/health`).then(() => undefined, (e: unknown) => e)
  assert.instanceOf(after, Error, "the port no longer answers")
}, 30_000)

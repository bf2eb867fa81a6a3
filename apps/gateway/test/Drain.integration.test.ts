/**
 * SIGTERM on the real process (`node src/main.ts`, configured only by environment): new joins and
 * sockets are refused, /ready turns 503, every socket is told to leave and closed with 1012 in
 * batches, and the process exits.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RawClient } from "@wedsync/testkit"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { afterEach, expect, it } from "vitest"
import { getText, tryUpgrade } from "./support/Http.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const children: Array<ReturnType<typeof spawn>> = []

afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
})

const startProcess = async (env: Record<string, string>) => {
  const child = spawn(process.execPath, [main], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
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
  expect((await getText(`http://127.0.0.1:${port}/ready`)).status).toBe(200)
  child.kill("SIGTERM")
  const first = await Promise.race(clients.map((c) => c.closed))
  expect(first.code).toBe(1012)
  // While the remaining batches wait, the node reports not ready and refuses new sockets.
  expect((await getText(`http://127.0.0.1:${port}/ready`)).status).toBe(503)
  expect((await tryUpgrade(url)).status).toBe(503)
  for (const [i, client] of clients.entries()) {
    expect((await client.closed).code).toBe(1012)
    expect(client.received).toContainEqual([
      "1",
      null,
      `realtime:drain-${i}`,
      "system",
      { extension: "system", status: "ok", message: "Server requested disconnect", channel: `drain-${i}` }
    ])
  }
  const [code, signal] = await once(child, "exit")
  expect(code !== null || signal !== null).toBe(true)
}, 30_000)

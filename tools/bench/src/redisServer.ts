/**
 * A private redis-server for one bench run (`--redis spawn`): on a free loopback port, persistence off, tracked like
 * the gateway children so every exit path of the bench stops it, optionally pinned to the gateways' CPU so that the
 * bench's own core stays the client's. Its `INFO commandstats` then counts the gateways'
 * commands alone, which a Redis shared with other work cannot. Needs `redis-server` on the PATH (or
 * `REDIS_SERVER_BIN`).
 */
import { spawn } from "node:child_process"
import { tmpdir } from "node:os"
import { freePort, trackServer } from "./serverProcess.ts"

export interface RedisServer {
  readonly url: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

const START_TIMEOUT_MS = 10_000

export const startRedisServer = async (cpu?: number): Promise<RedisServer> => {
  const port = await freePort()
  const bin = process.env["REDIS_SERVER_BIN"] || "redis-server"
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmpdir()]
  const child = cpu === undefined
    ? spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
    : spawn("taskset", ["-c", String(cpu), bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  trackServer(child)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  await new Promise<void>((resolve, reject) => {
    let output = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${bin} --port ${port} not ready within ${START_TIMEOUT_MS} ms:\n${output}`))
    }, START_TIMEOUT_MS)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (!output.includes("Ready to accept connections")) return
      clearTimeout(timer)
      child.stdout.off("data", onData)
      child.stdout.resume()
      resolve()
    }
    child.stdout.on("data", onData)
    child.stderr.resume()
    child.once(
      "error",
      (error) => (clearTimeout(timer), reject(new Error(`${bin} could not be started: ${error.message}`)))
    )
    child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`${bin} exited with ${code}:\n${output}`))))
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGTERM")
      await exited
    }
  }
}

/**
 * Starts a benchmark server as a child process (optionally pinned to one CPU with taskset), waits
 * for its `listening on http://HOST:PORT` log line, and stops it. Every child is tracked so the
 * bench can kill what it started on any exit path.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { createWriteStream } from "node:fs"
import { createServer } from "node:net"
import type { Readable } from "node:stream"

export interface ServerHandle {
  readonly pid: number
  readonly port: number
  /** Last lines of the child's stdout/stderr, for error messages. */
  readonly logTail: () => string
  /** Undefined while running, else how it exited. */
  readonly exitStatus: () => string | undefined
  readonly stop: () => Promise<void>
}

interface SpawnOptions {
  readonly name: string
  /** Arguments after the node binary: the entry script (and its own arguments). */
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  /** CPU to pin the server to with `taskset -c`, or undefined to leave it unpinned. */
  readonly cpu: number | undefined
  readonly startTimeoutMs: number
  /** A command that runs the rest, such as `ip netns exec <namespace>` (splitNetwork.ts); it must exec, not fork. */
  readonly prefix?: ReadonlyArray<string>
}

const live = new Set<ChildProcess>()

/** Tracks a server child until it exits, so `killAllServers` reaches it (the attack suite's gateways too). */
export const trackServer = (child: ChildProcess): void => {
  live.add(child)
  child.once("exit", () => live.delete(child))
}

/** SIGKILLs every child still running; safe to call from `exit` handlers. */
export const killAllServers = (): void => {
  for (const child of live) child.kill("SIGKILL")
  live.clear()
}

/** A port that was free a moment ago on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

// Preloaded into every server so the bench can force a full GC before reading RSS (SIGUSR2).
const gcHook = fileURLToPath(new URL("./servers/gcOnSignal.ts", import.meta.url))

const LISTENING = /listening on http:\/\/[^\s:]+:(\d+)/

export const startServer = (options: SpawnOptions): Promise<ServerHandle> => {
  const nodeArgs = ["--expose-gc", "--import", gcHook, ...options.args]
  const [command = process.execPath, ...args] = [
    ...(options.prefix ?? []),
    ...(options.cpu === undefined ? [] : ["taskset", "-c", String(options.cpu)]),
    process.execPath,
    ...nodeArgs
  ]
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  trackServer(child)
  const tail: Array<string> = []
  const logTail = (): string => tail.join("\n")
  let exitStatus: string | undefined
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitStatus = `exited with code ${code}, signal ${signal}`
      resolve()
    })
  )

  return new Promise<ServerHandle>((resolve, reject) => {
    let settled = false
    const fail = (reason: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(new Error(`${options.name}: ${reason}\n${logTail()}`))
    }
    const timer = setTimeout(
      () => fail(`no "listening on" line within ${options.startTimeoutMs} ms`),
      options.startTimeoutMs
    )
    const onLine = (line: string): void => {
      tail.push(line)
      if (tail.length > 30) tail.shift()
      const match = settled ? null : LISTENING.exec(line)
      if (match === null || child.pid === undefined) return
      settled = true
      clearTimeout(timer)
      const pid = child.pid
      resolve({
        pid,
        port: Number(match[1]),
        logTail,
        exitStatus: () => exitStatus,
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return
          child.kill("SIGTERM")
          const killer = setTimeout(() => child.kill("SIGKILL"), 3000)
          await exited
          clearTimeout(killer)
        }
      })
    }
    // For diagnosis (`--trace-gc` and the like): BENCH_SERVER_LOG names a file that receives the server's whole output.
    const logPath = process.env["BENCH_SERVER_LOG"]
    if (logPath !== undefined && logPath !== "") {
      const log = createWriteStream(logPath, { flags: "a" })
      child.stdout?.pipe(log)
      child.stderr?.pipe(log)
    }
    onOutputLines(child, onLine)
    child.once("error", (error) => fail(error.message))
    child.once("exit", (code, signal) => fail(`exited early (code ${code}, signal ${signal})`))
  })
}

/**
 * Calls `onLine` with each whole line a child writes to stdout or stderr, without its newline; a partial line waits
 * for the rest of it.
 */
export const onOutputLines = (
  child: { readonly stdout: Readable; readonly stderr: Readable },
  onLine: (line: string) => void
): void => {
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk: string) => {
      buffered += chunk
      let nl = buffered.indexOf("\n")
      while (nl >= 0) {
        onLine(buffered.slice(0, nl))
        buffered = buffered.slice(nl + 1)
        nl = buffered.indexOf("\n")
      }
    })
  }
}

/** Sends SIGUSR2 (the preloaded hook runs a full GC) to each server twice, then waits for memory to settle. */
export const settleGc = async (pid: number | ReadonlyArray<number>, settleMs: number): Promise<void> => {
  const pids = typeof pid === "number" ? [pid] : pid
  for (let i = 0; i < 2; i++) {
    for (const p of pids) {
      try {
        process.kill(p, "SIGUSR2")
      } catch {
        // Gone already: the caller's liveness check reports it.
      }
    }
    await sleep(settleMs / 2)
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

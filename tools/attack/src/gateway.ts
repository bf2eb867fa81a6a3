/**
 * The gateway under attack, as a real child process: `node apps/gateway/src/main.ts` on 127.0.0.1 with PORT=0, its
 * own environment, every log line counted (the suite checks what an attack makes it log) and its RSS readable. Every
 * child is tracked so the suite can kill what it started on any exit path.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { killAllServers, onOutputLines, trackServer } from "../../bench/src/serverProcess.ts"
import { startFlags } from "../../bench/src/targets/gateway.ts"

export interface Gateway {
  readonly pid: number
  readonly port: number
  readonly url: string
  readonly wsUrl: string
  /** True while the process has not exited. */
  readonly alive: () => boolean
  /** How it exited, once it has. */
  readonly exitStatus: () => string | undefined
  /** Log lines since start (bounded; the oldest are dropped past 20,000). */
  readonly lines: () => ReadonlyArray<string>
  /** Count of log lines so far, including dropped ones; a mark for `linesSince`. */
  readonly lineCount: () => number
  readonly linesSince: (mark: number) => ReadonlyArray<string>
  /** VmRSS in KiB, 0 once gone. */
  readonly rssKiB: () => number
  /** Asks the preloaded hook for two full GCs and waits `settleMs`. */
  readonly settleGc: (settleMs: number) => Promise<void>
  readonly stop: () => Promise<void>
}

export interface StartOptions {
  readonly name: string
  /** The repository root (holds apps/gateway and node_modules). */
  readonly root: string
  readonly env: Readonly<Record<string, string>>
  readonly startTimeoutMs: number
}

/** Result of a start that is expected to be refused (the process must exit instead of listening). */
interface StartRefusal {
  readonly listened: boolean
  readonly exitCode: number | null
  readonly log: string
}

/** SIGKILLs every gateway still running; safe in `exit` handlers (the bench's tracking of server children). */
export const killAll = killAllServers

const gcHook = fileURLToPath(new URL("../../bench/src/servers/gcOnSignal.ts", import.meta.url))
const LISTENING = /listening on http:\/\/[^\s:]+:(\d+)/
const MAX_LINES = 20_000

const readRss = (pid: number): number => {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

// Only what the gateway needs from the parent: PATH and HOME for node, nothing of the test's own env (DATABASE_URL...).
const baseEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const key of ["PATH", "HOME", "LANG", "TZ"]) {
    const value = process.env[key]
    if (value !== undefined) env[key] = value
  }
  return env
}

const spawnGateway = (options: StartOptions) => {
  // With the Node flags of the gateway's own `npm start`, so the attacks meet the process production runs.
  const child = spawn(process.execPath, [
    "--expose-gc",
    "--import",
    gcHook,
    ...startFlags(options.root),
    "apps/gateway/src/main.ts"
  ], {
    cwd: options.root,
    env: { ...baseEnv(), HOST: "127.0.0.1", PORT: "0", ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  trackServer(child)
  const lines: Array<string> = []
  let count = 0
  const listeners = new Set<(line: string) => void>()
  onOutputLines(child, (line) => {
    count++
    lines.push(line)
    if (lines.length > MAX_LINES) lines.shift()
    for (const listener of listeners) listener(line)
  })
  let exitStatus: string | undefined
  let exitCode: number | null = null
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitStatus = `exited with code ${code}, signal ${signal}`
      exitCode = code
      resolve()
    })
  )
  return {
    child,
    lines,
    count: () => count,
    listeners,
    exited,
    exitStatus: () => exitStatus,
    exitCode: () => exitCode
  }
}

/** Starts a gateway and resolves once it logs `listening on`; rejects with its log if it exits or times out first. */
export const start = (options: StartOptions): Promise<Gateway> => {
  const proc = spawnGateway(options)
  const { child } = proc
  return new Promise<Gateway>((resolve, reject) => {
    let settled = false
    const fail = (why: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(new Error(`${options.name}: ${why}\n${proc.lines.slice(-30).join("\n")}`))
    }
    const timer = setTimeout(
      () => fail(`no "listening on" line within ${options.startTimeoutMs} ms`),
      options.startTimeoutMs
    )
    void proc.exited.then(() => fail(proc.exitStatus() ?? "exited"))
    const onLine = (line: string): void => {
      const match = LISTENING.exec(line)
      if (settled || match === null || child.pid === undefined) return
      settled = true
      clearTimeout(timer)
      proc.listeners.delete(onLine)
      const pid = child.pid
      const port = Number(match[1])
      resolve({
        pid,
        port,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}/realtime/v1/websocket`,
        alive: () => proc.exitStatus() === undefined,
        exitStatus: proc.exitStatus,
        lines: () => proc.lines,
        lineCount: proc.count,
        linesSince: (mark) => proc.lines.slice(Math.max(0, proc.lines.length - (proc.count() - mark))),
        rssKiB: () => readRss(pid),
        settleGc: async (settleMs) => {
          for (let i = 0; i < 2; i++) {
            if (proc.exitStatus() !== undefined) return
            process.kill(pid, "SIGUSR2")
            await new Promise((r) => setTimeout(r, settleMs / 2))
          }
        },
        stop: async () => {
          if (proc.exitStatus() !== undefined) return
          child.kill("SIGTERM")
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000)
          await proc.exited
          clearTimeout(killer)
        }
      })
    }
    proc.listeners.add(onLine)
  })
}

/**
 * Starts a gateway that must refuse to start: resolves once it exits, or once it listens (then it is killed), or after
 * `startTimeoutMs` (killed, `listened: false`).
 */
export const startExpectingRefusal = (options: StartOptions): Promise<StartRefusal> => {
  const proc = spawnGateway(options)
  return new Promise<StartRefusal>((resolve) => {
    let done = false
    const finish = (listened: boolean): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (proc.exitStatus() === undefined) proc.child.kill("SIGKILL")
      void proc.exited.then(() =>
        resolve({ listened, exitCode: proc.exitCode(), log: proc.lines.slice(-20).join("\n") })
      )
    }
    const timer = setTimeout(() => finish(false), options.startTimeoutMs)
    proc.listeners.add((line) => {
      if (LISTENING.test(line)) finish(true)
    })
    void proc.exited.then(() => finish(false))
  })
}

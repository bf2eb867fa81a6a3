/**
 * Real gateway processes (`node apps/gateway/src/main.ts`, configured only by environment) for the multi-process
 * tests: start one or several on loopback with JSON logs, wait until they listen, read their logs, scrape them, and
 * stop them (SIGTERM and wait, or SIGKILL). `stopAll` in `afterEach`/`afterAll` ends whatever a test left running.
 *
 * A process started with `WORKERS` > 1 is a primary: it is ready when it logs that all its workers listen, its
 * `lines` hold the workers' lines too (they share its stdout), and `scrapeWorkers` tells the workers apart by the
 * `wedsync_worker_info` series of each scrape (every scrape opens a new connection, which the kernel may give to
 * either worker).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { ChildLines } from "@wedsync/testkit"
import { request } from "node:http"

const main = new URL("../../src/main.ts", import.meta.url).pathname

export interface GatewayProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** Every stdout and stderr line so far. */
  readonly lines: ReadonlyArray<string>
  /** Resolves with the first line (so far or later) that matches; rejects if the process exits first. */
  readonly line: (match: (line: string) => boolean, what?: string) => Promise<string>
  /** Resolves when the process has exited. */
  readonly exit: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** SIGTERM (a drain), then the exit. */
  readonly terminate: () => Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** SIGKILL, then the exit. */
  readonly kill: () => Promise<void>
}

const running = new Set<ChildProcess>()

/**
 * Stops every process still running: SIGTERM (a primary stops its workers), SIGKILL after 5 s; resolves when all exited.
 * A primary killed outright leaves no worker behind: they drain and exit when its IPC channel closes.
 */
export const stopAll = async (): Promise<void> => {
  const exits = [...running].map((child) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGTERM")
      setTimeout(() => child.kill("SIGKILL"), 5_000).unref()
    })
  )
  running.clear()
  await Promise.all(exits)
}

/**
 * The environment every test process gets besides its own: loopback, JSON logs, no reconnect-storm delays, no
 * latency shedding.
 */
const baseEnv = (): Record<string, string> => ({
  PATH: process.env["PATH"] ?? "",
  HOST: "127.0.0.1",
  PORT: "0",
  LOG_FORMAT: "json",
  CONNECT_ERROR_BACKOFF_MS: "0",
  CHANNEL_ERROR_BACKOFF_MS: "0",
  DRAIN_TIMEOUT_MS: "5000",
  DRAIN_INTERVAL_MS: "50",
  // A shared test machine's event loop stalls in bursts; shedding on latency would turn the cases' reconnects away.
  ADMISSION_MAX_EVENT_LOOP_P99_MS: "60000",
  ADMISSION_MAX_DELIVERY_P99_MS: "60000"
})

/** Starts the process and resolves once it listens (a primary: once all its workers do). */
export const start = async (env: Record<string, string>): Promise<GatewayProcess> => {
  const child = spawn(process.execPath, ["--max-semi-space-size=8", main], {
    env: { ...baseEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  running.add(child)
  const { lines, line } = ChildLines.watch(child, "gateway")
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  )
  const primary = Number(env["WORKERS"] ?? "1") > 1 || env["WORKERS"] === "auto"
  const listening = await line(
    (l) => primary ? /workers listening on http:/.test(l) : l.includes("listening on http://"),
    "it listened"
  )
  const port = Number(/:(\d+)"?/.exec(listening.slice(listening.indexOf("http://")))?.[1])
  return {
    child,
    pid: child.pid!,
    port,
    url: `http://127.0.0.1:${port}`,
    lines,
    line,
    exit,
    terminate: () => {
      child.kill("SIGTERM")
      return exit
    },
    kill: async () => {
      child.kill("SIGKILL")
      await exit
    }
  }
}

/** Starts `count` processes side by side (each its own port), all with `env`. */
export const startMany = (count: number, env: Record<string, string>): Promise<Array<GatewayProcess>> =>
  Promise.all(Array.from({ length: count }, () => start(env)))

/** One HTTP GET on a fresh connection (so a `WORKERS` port may give it to any worker). */
export const getFresh = (url: string): Promise<{ readonly status: number; readonly body: string }> =>
  new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: "close" } }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.once("error", reject)
    req.end()
  })

export interface WorkerScrape {
  readonly worker: string
  readonly pid: number
  readonly text: string
}

/** The worker and pid of a `/metrics` text, from its `wedsync_worker_info` series. */
export const workerOf = (text: string): { readonly worker: string; readonly pid: number } | undefined => {
  const match = /^wedsync_worker_info\{worker="(\d+)",pid="(\d+)"\} 1$/m.exec(text)
  return match === null ? undefined : { worker: match[1]!, pid: Number(match[2]) }
}

/** The value of an unlabelled series in a `/metrics` text. */
export const valueOf = (text: string, series: string): number | undefined => {
  const match = new RegExp(`^${series} (\\S+)$`, "m").exec(text)
  return match === null ? undefined : Number(match[1])
}

/**
 * Scrapes `/metrics` on fresh connections until it has heard from `workers` distinct worker numbers whose scrape
 * `accept`s, keeping the latest scrape of each (rejecting after `timeoutMs`: a restarted worker takes seconds to listen).
 */
export const scrapeWorkers = async (
  url: string,
  workers: number,
  accept: (scrape: WorkerScrape) => boolean = () => true,
  timeoutMs = 15_000
): Promise<Map<string, WorkerScrape>> => {
  const seen = new Map<string, WorkerScrape>()
  const deadline = performance.now() + timeoutMs
  let scrapes = 0
  while (performance.now() < deadline) {
    scrapes++
    const { body } = await getFresh(`${url}/metrics`)
    const who = workerOf(body)
    if (who !== undefined) {
      const scrape = { ...who, text: body }
      if (accept(scrape)) seen.set(who.worker, scrape)
      else seen.delete(who.worker)
    }
    if (seen.size >= workers) return seen
    // Each worker's kernel queue is picked by a hash of the connection; a short pause varies the source ports.
    await new Promise<void>((resolve) => setTimeout(resolve, 5))
  }
  throw new Error(`heard from ${seen.size} of ${workers} workers in ${scrapes} scrapes of ${url}/metrics`)
}

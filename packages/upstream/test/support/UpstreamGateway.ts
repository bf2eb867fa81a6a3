/**
 * The "hosted Supabase" of the pool's tests: the project's own gateway as a child process
 * (`node apps/gateway/src/main.ts`, spawned by path: the package does not import the app), configured only by its
 * environment, scraped over HTTP for its `/metrics`. `restart` starts it again on the same port, as a hosted project
 * comes back at the same address.
 */
import type { SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { SupabaseClients } from "@wedsync/testkit"
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll } from "vitest"

const main = fileURLToPath(new URL("../../../../apps/gateway/src/main.ts", import.meta.url))

/** The JWT secret of the spawned upstream; tests sign their keys with it. */
export const JWT_SECRET = "upstream-pool-test-secret-0123456789abcdef"

export interface UpstreamGateway {
  readonly port: number
  /** `http://127.0.0.1:<port>`, the pool's `url`. */
  readonly url: string
  /** SIGKILL (the upstream vanishes without a goodbye), then the exit. */
  readonly kill: () => Promise<void>
  /** Starts it again on the same port. */
  readonly restart: () => Promise<void>
  readonly stop: () => Promise<void>
  /** One `/metrics` scrape: every unlabelled series by name. */
  readonly metrics: () => Promise<Record<string, number>>
}

const spawnGateway = (port: number, env: Record<string, string>) =>
  new Promise<{ readonly child: ChildProcess; readonly port: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [main], {
      env: {
        PATH: process.env["PATH"] ?? "",
        HOST: "127.0.0.1",
        PORT: String(port),
        LOG_FORMAT: "json",
        JWT_SECRET,
        CONNECT_ERROR_BACKOFF_MS: "0",
        CHANNEL_ERROR_BACKOFF_MS: "0",
        DRAIN_TIMEOUT_MS: "2000",
        ADMISSION_MAX_EVENT_LOOP_P99_MS: "60000",
        ADMISSION_MAX_DELIVERY_P99_MS: "60000",
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const lines: Array<string> = []
    const onLine = (line: string) => {
      lines.push(line)
      const at = line.indexOf("listening on http://")
      if (at >= 0) resolve({ child, port: Number(/:(\d+)/.exec(line.slice(at + "listening on http://".length))?.[1]) })
    }
    createInterface({ input: child.stdout! }).on("line", onLine)
    createInterface({ input: child.stderr! }).on("line", onLine)
    child.once("exit", (code) => reject(new Error(`upstream gateway exited (${code}):\n${lines.join("\n")}`)))
  })

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
  })

/** Starts the upstream on a port the OS picks. */
export const start = async (env: Record<string, string> = {}): Promise<UpstreamGateway> => {
  let current = await spawnGateway(0, env)
  const port = current.port
  const url = `http://127.0.0.1:${port}`
  return {
    port,
    url,
    kill: async () => {
      current.child.kill("SIGKILL")
      await exited(current.child)
    },
    restart: async () => {
      current = await spawnGateway(port, env)
    },
    stop: async () => {
      current.child.kill("SIGTERM")
      setTimeout(() => current.child.kill("SIGKILL"), 5_000).unref()
      await exited(current.child)
    },
    metrics: async () => {
      const text = await (await fetch(`${url}/metrics`)).text()
      const out: Record<string, number> = {}
      for (const line of text.split("\n")) {
        const match = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line)
        if (match !== null) out[match[1]!] = Number(match[2])
      }
      return out
    }
  }
}

/** What a test file shares: the upstream, keys signed for it, and the clients to close after each test. */
export interface Suite {
  readonly upstream: UpstreamGateway
  readonly serviceKey: string
  readonly anonKey: string
  readonly clients: Array<SupabaseClient>
}

/** Starts an upstream before the file's tests and stops it after them; the clients in `clients` close after each. */
export const useUpstream = (): Suite => {
  const state = { upstream: undefined as UpstreamGateway | undefined, serviceKey: "", anonKey: "" }
  const clients: Array<SupabaseClient> = []
  beforeAll(async () => {
    state.upstream = await start()
    state.serviceKey = await TestTokens.serviceRoleToken({ secret: JWT_SECRET })
    state.anonKey = await TestTokens.anonToken({ secret: JWT_SECRET })
  })
  afterEach(async () => {
    await SupabaseClients.closeAll(clients.splice(0))
  })
  afterAll(async () => {
    await state.upstream?.stop()
  })
  return {
    get upstream() {
      if (state.upstream === undefined) throw new Error("the upstream is started in beforeAll")
      return state.upstream
    },
    get serviceKey() {
      return state.serviceKey
    },
    get anonKey() {
      return state.anonKey
    },
    clients
  }
}

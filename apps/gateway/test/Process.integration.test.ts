/**
 * The real process (`node apps/gateway/src/main.ts`) started with an environment: invalid
 * configuration refused with one message listing every problem, JSON log lines, and refused upgrades
 * logged with their reason and without the token.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { waitUntil } from "@wedsync/testkit"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { assert, describe, it } from "@effect/vitest"
import { afterEach, vi } from "vitest"
import { tryUpgrade } from "./support/Http.ts"

const main = new URL("../src/main.ts", import.meta.url).pathname

// Each case starts one or more real gateway processes; on a loaded machine a start alone can take seconds.
vi.setConfig({ testTimeout: 30_000 })

interface Started {
  readonly child: ChildProcess
  /** Every stdout and stderr line so far. */
  readonly lines: Array<string>
  /** Resolves with the first line (so far or later) that matches. */
  readonly line: (match: (line: string) => boolean) => Promise<string>
  readonly exit: Promise<{ readonly code: number | null; readonly stderr: string }>
}

const running: Array<ChildProcess> = []
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL")
})

/** Only the variables given (plus PATH), so the machine's environment cannot leak into the case. */
const start = (env: Record<string, string>): Started => {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  running.push(child)
  const lines: Array<string> = []
  const waiters: Array<{ match: (line: string) => boolean; resolve: (line: string) => void }> = []
  let stderr = ""
  const onLine = (line: string) => {
    lines.push(line)
    for (const waiter of waiters.splice(0)) {
      if (waiter.match(line)) waiter.resolve(line)
      else waiters.push(waiter)
    }
  }
  createInterface({ input: child.stdout! }).on("line", onLine)
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderr += `${line}\n`
    onLine(line)
  })
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, stderr }))
  )
  const line = (match: (line: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find(match)
      if (seen !== undefined) return resolve(seen)
      waiters.push({ match, resolve })
      void exit.then(({ code }) =>
        reject(new Error(`process exited (${code}) before the line; output:\n${lines.join("\n")}`))
      )
    })
  return { child, lines, line, exit }
}

const parseJsonLine = (line: string): Record<string, unknown> => JSON.parse(line) as Record<string, unknown>

describe("configuration at start", () => {
  it("refuses invalid values with one message listing every problem, and exits non-zero", async () => {
    const { exit } = start({
      MAX_CONNECTIONS: "0",
      PORT: "-5",
      DATABASE_URL: "not a url",
      MAX_EVENTS_PER_SECOND: "lots",
      MAX_CONNECTIONS_PER_IP: "-1",
      TRUSTED_PROXIES: "10.0.0.0/99",
      LOG_FORMAT: "xml"
    })
    const { code, stderr } = await exit
    assert.strictEqual(code, 78)
    assert.lengthOf(stderr.split("Invalid configuration (7 problems), the gateway did not start"), 2)
    for (
      const expected of [
        `PORT="-5": must be from 0 to 65535`,
        `MAX_CONNECTIONS="0": must be >= 1`,
        `MAX_EVENTS_PER_SECOND="lots": must be an integer >= 1`,
        `MAX_CONNECTIONS_PER_IP="-1": must be >= 1`,
        `DATABASE_URL: is not a URL`,
        `TRUSTED_PROXIES="10.0.0.0/99": "10.0.0.0/99" has an invalid prefix length`,
        `LOG_FORMAT="xml": must be one of pretty, json, logfmt`
      ]
    ) assert.include(stderr, expected)
    // One message: no stack trace.
    assert.notMatch(stderr, /\n\s+at /)
    assert.notInclude(stderr, "not a url")
  })

  it("starts with a valid environment", async () => {
    const gateway = start({
      PORT: "0",
      MAX_CONNECTIONS: "10",
      TRUSTED_PROXIES: "10.0.0.0/8, ::1",
      CORS_ORIGINS: "https://app.example.com"
    })
    assert.isOk(await gateway.line((l) => l.includes("listening on http://127.0.0.1:")))
    gateway.child.kill("SIGTERM")
    await gateway.exit
  })

  it("refuses a HISTORY_MAX_MESSAGES below 1 and a HISTORY_TTL that is not a duration; valid ones start", async () => {
    const refused = await start({ PORT: "0", HISTORY_MAX_MESSAGES: "0", HISTORY_TTL: "forever" }).exit
    assert.strictEqual(refused.code, 78)
    assert.include(refused.stderr, "Invalid configuration (2 problems)")
    assert.include(refused.stderr, `HISTORY_MAX_MESSAGES="0": must be from 1 to 1000000`)
    assert.include(refused.stderr, `HISTORY_TTL="forever": must be a duration such as "1 hour"`)
    const gateway = start({ PORT: "0", HISTORY_MAX_MESSAGES: "500", HISTORY_TTL: "30 minutes" })
    assert.isOk(await gateway.line((l) => l.includes("listening on http://127.0.0.1:")))
    gateway.child.kill("SIGTERM")
    await gateway.exit
  })

  it("refuses a bad WEDDING_CALENDAR_FILE with its problems (exit 78); a valid one starts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wedsync-calendar-"))
    const bad = join(dir, "bad.json")
    writeFileSync(bad, JSON.stringify({ weddings: [{ id: "w1", start: "tomorrow", suppliers: 3 }] }))
    const refused = await start({ PORT: "0", WEDDING_CALENDAR_FILE: bad }).exit
    assert.strictEqual(refused.code, 78)
    assert.include(refused.stderr, "Invalid configuration (1 problem)")
    assert.include(refused.stderr, "is not a valid wedding calendar")
    const good = join(dir, "good.json")
    writeFileSync(good, JSON.stringify({ weddings: [{ id: "w1", start: "2027-06-05T14:00:00Z", suppliers: 3 }] }))
    const gateway = start({ PORT: "0", WEDDING_CALENDAR_FILE: good })
    assert.isOk(await gateway.line((l) => l.includes("listening on http://127.0.0.1:")))
    gateway.child.kill("SIGTERM")
    await gateway.exit
  })

  it("refuses a MEMBERSHIP_TABLE that is not a table name, or one without DATABASE_URL", async () => {
    const badName = await start({ PORT: "0", MEMBERSHIP_TABLE: "public.wedding members" }).exit
    assert.strictEqual(badName.code, 78)
    assert.include(badName.stderr, `MEMBERSHIP_TABLE="public.wedding members": must be a table name`)
    const noDatabase = await start({ PORT: "0", MEMBERSHIP_TABLE: "public.wedding_members" }).exit
    assert.strictEqual(noDatabase.code, 78)
    assert.include(noDatabase.stderr, "MEMBERSHIP_TABLE: needs DATABASE_URL")
  })

  it("refuses a JWT_SECRET shorter than 32 bytes (without echoing it) unless DEV_MODE=true; 32 bytes start", async () => {
    const refused = await start({ PORT: "0", JWT_SECRET: "short-secret-123" }).exit
    assert.strictEqual(refused.code, 78)
    assert.include(refused.stderr, "JWT_SECRET: must be at least 32 bytes (it has 16)")
    assert.notInclude(refused.stderr, "short-secret-123")
    for (const env of [{ JWT_SECRET: "short-secret-123", DEV_MODE: "true" }, { JWT_SECRET: "x".repeat(32) }]) {
      const gateway = start({ PORT: "0", ...env })
      assert.isOk(await gateway.line((l) => l.includes("listening on http://127.0.0.1:")))
      gateway.child.kill("SIGTERM")
      assert.strictEqual((await gateway.exit).code, 0)
    }
  })
})

describe("ADMIN_TOKEN", () => {
  it("refuses one shorter than 32 bytes (without echoing it), even in dev mode; 32 bytes start", async () => {
    for (const env of [{ ADMIN_TOKEN: "admin-123" }, { ADMIN_TOKEN: "admin-123", DEV_MODE: "true" }]) {
      const refused = await start({ PORT: "0", ...env }).exit
      assert.strictEqual(refused.code, 78)
      assert.include(refused.stderr, "ADMIN_TOKEN: must be at least 32 bytes (it has 9)")
      assert.notInclude(refused.stderr, "admin-123")
    }
    const gateway = start({ PORT: "0", ADMIN_TOKEN: "a".repeat(32) })
    assert.isOk(await gateway.line((l) => l.includes("listening on http://127.0.0.1:")))
    gateway.child.kill("SIGTERM")
    assert.strictEqual((await gateway.exit).code, 0)
  })
})

describe("logs", () => {
  it("with LOG_FORMAT=json prints JSON lines with a level and message; a refused upgrade is logged with its reason, not its token", async () => {
    const gateway = start({ PORT: "0", LOG_FORMAT: "json", LOG_LEVEL: "info", CONNECT_ERROR_BACKOFF_MS: "0" })
    const listening = parseJsonLine(await gateway.line((l) => l.includes("listening on")))
    assert.containSubset(listening, { level: "INFO" })
    const port = /:(\d+)$/.exec(String(listening["message"]))![1]!
    // A token signed with another secret: what a wrong JWT_SECRET looks like from the gateway's side.
    const forged = await TestTokens.anonToken({ secret: "another-projects-secret-that-is-long-enough-0123456789" })
    assert.strictEqual(
      (await tryUpgrade(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${forged}&vsn=2.0.0`)).status,
      401
    )
    const refused = parseJsonLine(await gateway.line((l) => l.includes("upgrade refused")))
    assert.containSubset(refused, {
      level: "WARN",
      message: "upgrade refused: JwtSignatureError",
      annotations: { where: "upgrade", reason: "JwtSignatureError", detail: "Failed to validate JWT signature" }
    })
    assert.include(String((refused["annotations"] as Record<string, unknown>)["hint"]), "JWT_SECRET")
    // A valid key is accepted and not logged as refused.
    const anon = await TestTokens.anonToken()
    assert.strictEqual(
      (await tryUpgrade(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${anon}&vsn=2.0.0`)).status,
      101
    )
    gateway.child.kill("SIGTERM")
    await gateway.exit
    assert.isAbove(gateway.lines.length, 2)
    for (const line of gateway.lines) {
      const parsed = parseJsonLine(line)
      assert.strictEqual(typeof parsed["message"], "string")
      assert.strictEqual(typeof parsed["level"], "string")
      assert.notInclude(line, forged)
      assert.notInclude(line, '127.0.0.1"') // no client address in an annotation
    }
    assert.lengthOf(gateway.lines.filter((l) => l.includes("upgrade refused")), 1)
  })

  it("rate-limits refusal lines per reason and reports what was held back", async () => {
    const gateway = start({ PORT: "0", LOG_FORMAT: "json", CONNECT_ERROR_BACKOFF_MS: "0" })
    const port = /:(\d+)$/.exec(
      String(parseJsonLine(await gateway.line((l) => l.includes("listening on")))["message"])
    )![1]!
    const url = `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=garbage&vsn=2.0.0`
    for (let i = 0; i < 20; i++) assert.strictEqual((await tryUpgrade(url)).status, 401)
    // The first window logs 5 lines; the rest of the burst is counted, and reported by the next line after a second.
    const refusals = () => gateway.lines.filter((l) => l.includes("upgrade refused")).length
    await waitUntil("five refusal log lines", refusals, (n) => n === 5, { timeoutMs: 1000, intervalMs: 50 })
    await new Promise<void>((resolve) => setTimeout(resolve, 1_100)) // wait for the next one-second log window
    assert.strictEqual((await tryUpgrade(url)).status, 401)
    const next = parseJsonLine(await gateway.line((l) => l.includes("suppressed")))
    assert.containSubset(next["annotations"], { reason: "MalformedJWT", suppressed: 15 })
    gateway.child.kill("SIGTERM")
    await gateway.exit
  })

  it("LOG_LEVEL=warning keeps warnings and drops info lines", async () => {
    const gateway = start({ PORT: "0", LOG_FORMAT: "json", LOG_LEVEL: "warning" })
    // The dev-secret warning is logged right after "listening on" (info), so once it is out, the info line would be too.
    assert.containSubset(parseJsonLine(await gateway.line((l) => l.includes("JWT_SECRET is not set"))), {
      level: "WARN"
    })
    gateway.child.kill("SIGTERM")
    await gateway.exit
    assert.deepStrictEqual(gateway.lines.filter((l) => parseJsonLine(l)["level"] === "INFO"), [])
  })
})

/**
 * First step of `npm test`: makes sure Redis and Postgres are reachable (starting the local ones if they are down),
 * that Postgres runs with `wal_level=logical`, that `promtool` and `chromium` are installed, and clears last run's test reports so they cannot be counted again.
 *
 * Idempotent and quick when everything is up (two round trips). It only starts or restarts services on loopback; for a
 * remote REDIS_URL / DATABASE_URL it checks and reports. It prints one line per service and exits 1 with what is
 * missing and how to fix it when a service cannot be made ready, because integration tests fail rather than skip.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { createConnection } from "node:net"
import { join } from "node:path"
import pg from "pg"
import { workspaceDirs } from "./checkDeps.ts"
import { resultsFile, runMarker } from "./summarizeTests.ts"

const defaultRedisUrl = "redis://127.0.0.1:6379"
const defaultDatabaseUrl = "postgres://postgres@127.0.0.1:5432/postgres"

/** True for hosts this script may start services on. */
export const isLoopback = (host: string): boolean =>
  host === "127.0.0.1" || host === "localhost" || host === "::1" || host === "[::1]"

/** A URL with its password replaced, for printing. */
export const redact = (url: string): string => {
  const u = new URL(url)
  if (u.password !== "") u.password = "***"
  return u.toString()
}

/** The RESP commands that authenticate (if the URL has credentials) and ping. */
export const redisPingCommands = (url: URL): string => {
  const bulk = (parts: ReadonlyArray<string>) =>
    `*${parts.length}\r\n` + parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")
  const password = decodeURIComponent(url.password)
  const user = decodeURIComponent(url.username)
  const auth = password === "" ? "" : bulk(user === "" ? ["AUTH", password] : ["AUTH", user, password])
  return auth + bulk(["PING"])
}

/** Interprets Redis's reply to `redisPingCommands`: ok on +PONG, else the error it sent. */
export const parseRedisReply = (reply: string): { ok: true } | { ok: false; error: string } => {
  if (/^-/m.test(reply)) return { ok: false, error: reply.split("\r\n").find((l) => l.startsWith("-"))!.slice(1) }
  if (reply.includes("+PONG")) return { ok: true }
  return { ok: false, error: `unexpected reply ${JSON.stringify(reply.slice(0, 80))}` }
}

const pingRedis = (url: URL, timeoutMs = 1000): Promise<{ ok: true } | { ok: false; error: string }> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 6379) })
    let reply = ""
    let settled = false
    const done = (result: { ok: true } | { ok: false; error: string }) => {
      if (settled) return
      settled = true
      socket.destroy()
      resolve(result)
    }
    socket.setTimeout(timeoutMs, () => done({ ok: false, error: `no answer within ${timeoutMs} ms` }))
    socket.on("error", (error) => done({ ok: false, error: error.message }))
    socket.on(
      "close",
      () =>
        done({
          ok: false,
          error: reply === ""
            ? "connection closed without a reply"
            : parseRedisReply(reply).ok
            ? "closed"
            : `closed after ${JSON.stringify(reply.slice(0, 80))}`
        })
    )
    socket.on("connect", () => socket.write(redisPingCommands(url)))
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8")
      const parsed = parseRedisReply(reply)
      if (!parsed.ok && parsed.error.startsWith("unexpected")) return // wait for the rest
      done(parsed)
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const waitUntil = async <A>(probe: () => Promise<A | undefined>, timeoutMs: number): Promise<A | undefined> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined || Date.now() > deadline) return value
    await sleep(200)
  }
}

const run = (command: string, args: ReadonlyArray<string>, timeoutMs = 60_000): { ok: boolean; output: string } => {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: timeoutMs })
  if (result.error) return { ok: false, output: result.error.message }
  return { ok: result.status === 0, output: `${result.stdout ?? ""}${result.stderr ?? ""}`.trim() }
}

type Outcome = { readonly ok: true; readonly line: string } | {
  readonly ok: false
  readonly line: string
  readonly fix: string
}

const prepareRedis = async (rawUrl: string): Promise<Outcome> => {
  const url = new URL(rawUrl)
  const shown = redact(rawUrl)
  const first = await pingRedis(url)
  if (first.ok) return { ok: true, line: `redis     ready     ${shown} (already running)` }
  if (!isLoopback(url.hostname)) {
    return {
      ok: false,
      line: `redis     MISSING   ${shown}: ${first.error}`,
      fix: `start the Redis at ${shown}, or unset REDIS_URL to use a local one`
    }
  }
  const port = url.port || "6379"
  const started = run("redis-server", [
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    port,
    "--save",
    "",
    "--appendonly",
    "no"
  ])
  if (!started.ok) {
    return {
      ok: false,
      line: `redis     MISSING   ${shown}: ${first.error}; starting redis-server failed: ${started.output}`,
      fix:
        `install it (apt-get install -y redis-server) or run: redis-server --daemonize yes --bind 127.0.0.1 --port ${port} --save "" --appendonly no`
    }
  }
  const ready = await waitUntil(async () => ((await pingRedis(url)).ok ? true : undefined), 5000)
  return ready
    ? { ok: true, line: `redis     ready     ${shown} (started redis-server)` }
    : {
      ok: false,
      line: `redis     MISSING   ${shown}: redis-server started but does not answer PING`,
      fix: "check the redis-server log (redis-cli ping) and that nothing else holds the port"
    }
}

const queryOne = async (
  url: string,
  sql: string
): Promise<{ ok: true; value: string } | { ok: false; error: string }> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  client.on("error", () => {})
  try {
    await client.connect()
    const result = await client.query<Record<string, unknown>>(sql)
    const row = result.rows[0] ?? {}
    return { ok: true, value: String(Object.values(row)[0]) }
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message || error.constructor.name : String(error) }
  } finally {
    await client.end().catch(() => {})
  }
}

/** The local cluster's `<version> main`, from /etc/postgresql (highest version wins). */
const localCluster = (): { version: string; name: string } | undefined => {
  if (!existsSync("/etc/postgresql")) return undefined
  const versions = readdirSync("/etc/postgresql").filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
  const version = versions.find((v) => existsSync(join("/etc/postgresql", v, "main")))
  return version === undefined ? undefined : { version, name: "main" }
}

const pgCtl = (action: "start" | "restart") => {
  const cluster = localCluster()
  if (cluster === undefined) return { ok: false, output: "no cluster under /etc/postgresql", command: "" }
  const args = ["--skip-systemctl-redirect", cluster.version, cluster.name, action]
  return { ...run("pg_ctlcluster", args), command: `pg_ctlcluster ${args.join(" ")}` }
}

const preparePostgres = async (url: string): Promise<Outcome> => {
  const shown = redact(url)
  const local = isLoopback(new URL(url).hostname)
  const notes: Array<string> = []
  let probe = await queryOne(url, "SELECT 1")
  if (!probe.ok) {
    if (!local) {
      return {
        ok: false,
        line: `postgres  MISSING   ${shown}: ${probe.error}`,
        fix: `start the Postgres at ${shown}, or unset DATABASE_URL to use a local one`
      }
    }
    const started = pgCtl("start")
    // "already running" with a failed SELECT means a wrong URL or credentials, not a stopped server.
    if (!started.ok && /already running/i.test(started.output)) {
      return {
        ok: false,
        line: `postgres  MISSING   ${shown}: ${probe.error} (the local cluster is running)`,
        fix: "check DATABASE_URL's port, user and database against pg_lsclusters and pg_hba.conf"
      }
    }
    if (!started.ok) {
      return {
        ok: false,
        line: `postgres  MISSING   ${shown}: ${probe.error}; ${
          started.command || "pg_ctlcluster"
        } failed: ${started.output}`,
        fix:
          "install PostgreSQL (apt-get install -y postgresql) or start it: pg_ctlcluster --skip-systemctl-redirect <version> main start"
      }
    }
    probe = (await waitUntil(async () => {
      const p = await queryOne(url, "SELECT 1")
      return p.ok ? p : undefined
    }, 20_000)) ?? await queryOne(url, "SELECT 1")
    if (!probe.ok) {
      return {
        ok: false,
        line: `postgres  MISSING   ${shown}: started the cluster but SELECT 1 fails: ${probe.error}`,
        fix: "check /var/log/postgresql/*.log and that pg_hba.conf trusts the test user on 127.0.0.1"
      }
    }
    notes.push("started the cluster")
  }
  const wal = await queryOne(url, "SHOW wal_level")
  if (!wal.ok)
    return {
      ok: false,
      line: `postgres  MISSING   ${shown}: SHOW wal_level failed: ${wal.error}`,
      fix: "check the server log"
    }
  if (wal.value !== "logical") {
    const howTo =
      'psql -c "ALTER SYSTEM SET wal_level = logical" && pg_ctlcluster --skip-systemctl-redirect <version> main restart'
    if (!local) {
      return {
        ok: false,
        line: `postgres  NOT READY ${shown}: wal_level=${wal.value}, logical replication tests need logical`,
        fix: `on that server: ${howTo}`
      }
    }
    const altered = await queryOne(url, "ALTER SYSTEM SET wal_level = logical")
    if (!altered.ok) {
      return {
        ok: false,
        line: `postgres  NOT READY ${shown}: ALTER SYSTEM failed: ${altered.error}`,
        fix: `as a superuser: ${howTo}`
      }
    }
    const restarted = pgCtl("restart")
    if (!restarted.ok) {
      return {
        ok: false,
        line: `postgres  NOT READY ${shown}: ${
          restarted.command || "pg_ctlcluster"
        } restart failed: ${restarted.output}`,
        fix: `restart it yourself: ${howTo}`
      }
    }
    const after = await waitUntil(async () => {
      const p = await queryOne(url, "SHOW wal_level")
      return p.ok ? p : undefined
    }, 20_000)
    if (after === undefined || after.value !== "logical") {
      return {
        ok: false,
        line: `postgres  NOT READY ${shown}: wal_level still ${after?.value ?? "unknown"} after restart`,
        fix: howTo
      }
    }
    notes.push("set wal_level=logical and restarted")
  }
  return {
    ok: true,
    line: `postgres  ready     ${shown} (wal_level=logical${notes.length ? `; ${notes.join(", ")}` : ""})`
  }
}

/** A Debian package a test needs: found at `path`, or by running `command --version` without one. */
interface AptTool {
  readonly command: string
  readonly path?: string
  readonly aptPackage: string
}

/**
 * Installs a tool with apt when missing and this runs as root (as in CI); otherwise reports the command that
 * installs it. `promtool` (Debian's `prometheus`) validates the gateway's `/metrics`; `chromium` drives the
 * dashboard test in a headless browser.
 */
const prepareAptTool = async ({ command, path, aptPackage }: AptTool): Promise<Outcome> => {
  const label = command.padEnd(9)
  // Chromium's launcher script prints noise on `--version` as root; its presence is enough.
  const found = () => path === undefined ? run(command, ["--version"]).ok : existsSync(path)
  if (found()) return { ok: true, line: `${label} ready` }
  const fix = `apt-get update && apt-get install -y ${aptPackage}`
  if (process.getuid?.() !== 0) return { ok: false, line: `${label} MISSING`, fix }
  const update = run("apt-get", ["update", "-qq"], 300_000)
  const install = update.ok
    ? run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", aptPackage], 600_000)
    : update
  if (install.ok && found()) return { ok: true, line: `${label} ready     (installed ${aptPackage} with apt)` }
  return {
    ok: false,
    line: `${label} MISSING   apt-get could not install ${aptPackage}: ${install.output.slice(-300)}`,
    fix
  }
}

/** Deletes every workspace's vitest report and stamps the run start, so summarizeTests counts only this run. */
const clearResults = (root: string): number => {
  let removed = 0
  for (const dir of workspaceDirs(root)) {
    const file = join(root, dir, resultsFile)
    if (existsSync(file)) {
      rmSync(file)
      removed++
    }
  }
  const marker = join(root, runMarker)
  mkdirSync(join(marker, ".."), { recursive: true })
  writeFileSync(marker, new Date().toISOString() + "\n")
  return removed
}

const main = async () => {
  const root = join(import.meta.dirname, "..", "..")
  console.log(`node      ${process.version}`)
  const removed = clearResults(root)
  console.log(`reports   cleared ${removed} old vitest report(s)`)
  const outcomes = await Promise.all([
    prepareRedis(process.env["REDIS_URL"] || defaultRedisUrl),
    preparePostgres(process.env["DATABASE_URL"] || defaultDatabaseUrl),
    prepareAptTool({ command: "promtool", aptPackage: "prometheus" })
  ])
  // After the others: apt takes a lock, so the two installs cannot run at once.
  outcomes.push(await prepareAptTool({ command: "chromium", path: "/usr/bin/chromium", aptPackage: "chromium" }))
  for (const o of outcomes) console.log(o.line)
  const failed = outcomes.filter((o) => !o.ok)
  if (failed.length > 0) {
    console.error("\nIntegration tests need these services and fail instead of skipping. To fix:")
    for (const o of failed) if (!o.ok) console.error(`  - ${o.fix}`)
    process.exitCode = 1
  }
}

if (import.meta.main) await main()

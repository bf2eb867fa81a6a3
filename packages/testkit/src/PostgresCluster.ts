/**
 * A throwaway Postgres cluster for the tests that must restart Postgres: restarting the shared local server would
 * cut every other test's connections. `start` runs `initdb` in a temporary directory and starts the server on a free
 * loopback port with `wal_level=logical`; `restart` restarts only it; `stop` stops it and deletes the directory.
 * It needs the PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`, or `PG_BIN_DIR`); as root (CI) it
 * runs them as the `postgres` user, since `initdb` refuses root. It fails with a message saying what is missing.
 */
import { execFile } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { chown, mkdtemp, rm } from "node:fs/promises"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import { freePort } from "./internal/freePort.ts"

export interface Cluster {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust authentication. */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /** Restarts the server (fast shutdown, as a Postgres restart in production), resolving once it accepts connections. */
  readonly restart: () => Promise<void>
  /** Stops the server and deletes its directory. Safe to call twice. */
  readonly stop: () => Promise<void>
}

interface Run {
  readonly stdout: string
  readonly stderr: string
}

const run = (file: string, args: ReadonlyArray<string>): Promise<Run> =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${file} ${args.join(" ")} failed: ${stderr.trim() || error.message}`))
      else resolve({ stdout, stderr })
    })
  })

/** Where `start` looks for the server binaries when not told: `PG_BIN_DIR`, else the newest installed server. */
export const findBinDir = (): string | undefined => {
  const configured = process.env["PG_BIN_DIR"]
  if (configured !== undefined && existsSync(join(configured, "initdb"))) return configured
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
  return versions[0] === undefined ? undefined : join(root, versions[0], "bin")
}

const uidOf = async (user: string): Promise<{ readonly uid: number; readonly gid: number }> => {
  const [uid, gid] = await Promise.all([run("id", ["-u", user]), run("id", ["-g", user])])
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

export interface StartOptions {
  /** The directory holding `initdb` and `pg_ctl`; found with `findBinDir` when absent. */
  readonly binDir?: string | undefined
}

export const start = async (options: StartOptions = {}): Promise<Cluster> => {
  const bin = options.binDir ?? findBinDir()
  if (bin === undefined || !existsSync(join(bin, "initdb"))) {
    throw new Error(
      `Cannot create a throwaway Postgres cluster: no PostgreSQL server binaries (initdb, pg_ctl) in ${
        bin ?? "/usr/lib/postgresql/<version>/bin"
      }; install the postgresql package or set PG_BIN_DIR`
    )
  }
  const asRoot = userInfo().uid === 0
  const dataDir = await mkdtemp(join(tmpdir(), "wedsync-pg-"))
  // initdb refuses to run as root: the cluster belongs to `postgres` then.
  const as = (file: string, args: ReadonlyArray<string>) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, file), ...args]) : run(join(bin, file), args)
  const port = await freePort()
  const pgData = join(dataDir, "data")
  const serverOptions = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dataDir}`,
    "-c wal_level=logical",
    "-c max_wal_senders=8",
    "-c max_replication_slots=8",
    "-c fsync=off",
    "-c synchronous_commit=off"
  ].join(" ")
  const pgCtl = (...args: ReadonlyArray<string>) =>
    as("pg_ctl", ["-D", pgData, "-l", join(dataDir, "server.log"), "-w", "-t", "60", ...args])
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    await pgCtl("-m", "immediate", "stop").catch(() => undefined)
    await rm(dataDir, { recursive: true, force: true })
  }
  try {
    if (asRoot) {
      const { uid, gid } = await uidOf("postgres").catch((cause: unknown) => {
        throw new Error(`running as root needs a "postgres" user to own the cluster (${String(cause)})`)
      })
      await chown(dataDir, uid, gid)
    }
    await as("initdb", ["-D", pgData, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
    await pgCtl("-o", serverOptions, "start")
  } catch (cause) {
    await stop()
    throw new Error(
      `Cannot create a throwaway Postgres cluster in ${dataDir} with ${bin}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`
    )
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir: pgData,
    restart: async () => {
      await pgCtl("-m", "fast", "-o", serverOptions, "restart")
    },
    stop
  }
}

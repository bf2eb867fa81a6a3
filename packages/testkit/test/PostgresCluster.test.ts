import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as PostgresCluster from "../src/PostgresCluster.ts"

const psql = (cluster: PostgresCluster.Cluster, sql: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const bin = PostgresCluster.findBinDir()!
    execFile(join(bin, "psql"), ["-h", "127.0.0.1", "-p", String(cluster.port), "-U", "postgres", "-Atc", sql], (error, stdout) =>
      error === null ? resolve(stdout.trim()) : reject(error))
  })

describe("PostgresCluster", () => {
  it("refuses with a message naming what is missing when there are no server binaries", async () => {
    await expect(PostgresCluster.start({ binDir: "/nonexistent/bin" })).rejects.toThrow(
      "Cannot create a throwaway Postgres cluster: no PostgreSQL server binaries (initdb, pg_ctl) in /nonexistent/bin"
    )
  })

  it("starts a logical-replication cluster of its own, restarts only it, and deletes it on stop", async () => {
    const cluster = await PostgresCluster.start()
    try {
      expect(cluster.url).toBe(`postgres://postgres@127.0.0.1:${cluster.port}/postgres`)
      expect(await psql(cluster, "show wal_level")).toBe("logical")
      const before = await psql(cluster, "select pg_postmaster_start_time()")
      await cluster.restart()
      expect(await psql(cluster, "select pg_postmaster_start_time()")).not.toBe(before)
    } finally {
      await cluster.stop()
    }
    expect(existsSync(cluster.dataDir)).toBe(false)
    await cluster.stop()
  }, 60_000)
})

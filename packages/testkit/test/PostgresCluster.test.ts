import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as PostgresCluster from "../src/PostgresCluster.ts"

const psql = (cluster: PostgresCluster.Cluster, sql: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const bin = PostgresCluster.findBinDir()!
    execFile(
      join(bin, "psql"),
      ["-h", "127.0.0.1", "-p", String(cluster.port), "-U", "postgres", "-Atc", sql],
      (error, stdout) => error === null ? resolve(stdout.trim()) : reject(error)
    )
  })

describe("PostgresCluster", () => {
  it("refuses with a message naming what is missing when there are no server binaries", async () => {
    const error = await PostgresCluster.start({ binDir: "/nonexistent/bin" }).then(() => undefined, (e: Error) => e)
    assert.instanceOf(error, Error)
    assert.include(
      error!.message,
      "Cannot create a throwaway Postgres cluster: no PostgreSQL server binaries (initdb, pg_ctl) in /nonexistent/bin"
    )
  })

  it("starts a logical-replication cluster of its own, restarts only it, and deletes it on stop", async () => {
    const cluster = await PostgresCluster.start()
    try {
      assert.strictEqual(cluster.url, `postgres://postgres@127.0.0.1:${cluster.port}/postgres`)
      assert.strictEqual(await psql(cluster, "show wal_level"), "logical")
      const before = await psql(cluster, "select pg_postmaster_start_time()")
      await cluster.restart()
      assert.notStrictEqual(await psql(cluster, "select pg_postmaster_start_time()"), before)
    } finally {
      await cluster.stop()
    }
    assert.strictEqual(existsSync(cluster.dataDir), false)
    await cluster.stop()
  }, 60_000)
})

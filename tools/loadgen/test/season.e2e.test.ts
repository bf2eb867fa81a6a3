import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { runSeason } from "../src/run.ts"

const databaseUrl = process.env["DATABASE_URL"] || "postgres://postgres@127.0.0.1:5432/postgres"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))

describe("season simulation against a gateway it starts", () => {
  it("runs two weddings' compressed day: deliveries, none lost, a report and a summary", async () => {
    const dir = mkdtempSync(join(tmpdir(), "loadgen-"))
    const calendar = join(dir, "calendar.json")
    writeFileSync(
      calendar,
      JSON.stringify({
        weddings: [
          { id: "e2e-a", start: "2027-06-12T14:00:00+01:00", suppliers: 30, guests: 100 },
          { id: "e2e-b", start: "2027-06-12T16:00:00Z", end: "2027-06-12T22:00:00Z", suppliers: 20, guests: 60 }
        ]
      })
    )
    const { summary, reportPath, summaryPath } = await runSeason({
      calendar,
      minutes: 0.25,
      devices: 300,
      rate: 2,
      sampleS: 2,
      url: undefined,
      adminToken: undefined,
      databaseUrl: undefined,
      changesRate: 0,
      out: join(dir, "out"),
      jwtSecret: undefined
    }, repoRoot)
    expect(summary.devicesPlanned).toBe(230)
    expect(summary.joinFailures).toBe(0)
    expect(summary.devicesJoined).toBe(230)
    expect(summary.presenceTracks).toBe(230)
    expect(summary.deliveries).toBeGreaterThan(0)
    expect(summary.lost).toBe(0)
    expect(summary.samples.some((s) => s.desiredReplicas !== null && s.reason !== null)).toBe(true)
    expect(JSON.parse(readFileSync(summaryPath, "utf8"))).toMatchObject({ deliveries: summary.deliveries, lost: 0 })
    expect(existsSync(reportPath)).toBe(true)
    expect(readFileSync(reportPath, "utf8")).toContain(`<svg id="latency"`)
  }, 30_000)

  it("with --database-url: every device gets its wedding's rows through Postgres Changes, none lost", async () => {
    const dir = mkdtempSync(join(tmpdir(), "loadgen-"))
    const calendar = join(dir, "calendar.json")
    writeFileSync(
      calendar,
      JSON.stringify({
        weddings: [
          { id: "pg-a", start: "2027-06-12T14:00:00Z", suppliers: 20, guests: 40 },
          { id: "pg-b", start: "2027-06-12T15:00:00Z", suppliers: 10, guests: 20 }
        ]
      })
    )
    const { summary } = await runSeason({
      calendar,
      minutes: 0.15,
      devices: 200,
      rate: 1,
      sampleS: 2,
      url: undefined,
      adminToken: undefined,
      databaseUrl,
      changesRate: 2,
      out: join(dir, "out"),
      jwtSecret: undefined
    }, repoRoot)
    expect(summary.joinFailures).toBe(0)
    expect(summary.postgresChanges).toMatch(/^INSERT on season_\w+\.timeline_items, 2\/s per wedding rising to 10x$/)
    expect(summary.changes?.inserted).toBeGreaterThan(0)
    expect(summary.changes?.deliveries).toBeGreaterThan(0)
    expect(summary.changes?.lost).toBe(0)
    expect(summary.changes!.latency.p99Ms).toBeGreaterThan(0)
  }, 60_000)
})

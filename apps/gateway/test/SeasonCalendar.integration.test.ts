/**
 * Issue 10: the scaling forecast read from `WEDDING_CALENDAR_SQL` on a real Postgres (refreshed, bad rows skipped and
 * reported, a failing query keeping the last weddings), and wedding-season mode applied to the configuration the
 * services read (`Season.layers`), on, off and from the calendar.
 */
import { assert, describe, it } from "@effect/vitest"
import { CacheConfig } from "@wedsync/cache"
import { ConnectionConfig } from "@wedsync/connection"
import { ScalingConfig } from "@wedsync/scaling"
import { databaseUrl, uniqueSqlName, waitUntil } from "@wedsync/testkit"
import { Effect, Layer, Redacted } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import { afterAll, beforeAll } from "vitest"
import * as Season from "../src/Season.ts"
import type { Snapshot } from "../src/ScalingController.ts"
import type * as WeddingCalendar from "../src/WeddingCalendar.ts"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"
import { getText } from "./support/Http.ts"
import { valueOf } from "./support/Processes.ts"

const ADMIN_TOKEN = "season-admin-token-for-tests-0123456789"
const HOUR = 3_600_000

const snapshot = async (gateway: RunningGateway): Promise<Snapshot> => {
  const response = await fetch(`${gateway.url}/admin/scaling`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  assert.strictEqual(response.status, 200)
  return (await response.json()) as Snapshot
}

describe("the scaling calendar from WEDDING_CALENDAR_SQL", () => {
  const schema = uniqueSqlName("calendar")
  const db = new pg.Client({ connectionString: databaseUrl() })
  let gateway: RunningGateway
  const source = (sql: string): WeddingCalendar.Source => ({
    _tag: "Sql",
    databaseUrl: Redacted.make(databaseUrl()),
    sql
  })
  const insert = (id: string | null, startsInMs: number | null, devices: number, suppliers: ReadonlyArray<string>) =>
    db.query(
      `insert into ${schema}.weddings (wedding_id, starts_at, supplier_ids, expected_devices)
       values ($1, now() + make_interval(secs => $2::double precision / 1000), $3, $4)`,
      [id, startsInMs, suppliers, devices]
    )

  beforeAll(async () => {
    await db.connect()
    await db.query(`create schema ${schema}`)
    await db.query(
      `create table ${schema}.weddings (wedding_id text, starts_at timestamptz, supplier_ids text[], expected_devices int)`
    )
    await insert("w-1", HOUR, 1200, ["s-1", "s-2"])
    await insert("w-2", 2 * HOUR, 800, ["s-3"])
    const query = `select wedding_id, starts_at, supplier_ids, expected_devices from ${schema}.weddings
                   where starts_at between $1 and $2 or starts_at is null order by wedding_id`
    gateway = await startGateway({
      gateway: { adminToken: Redacted.make(ADMIN_TOKEN), scalingSampleMs: 100 },
      // Two weddings in the lookahead turn the season on; the refresh is fast so the test sees a new row.
      scaling: { seasonMode: "auto", seasonWeddingThreshold: 2, calendarRefreshMs: 150 },
      calendar: source(query)
    })
  })
  // Before the next describe's gateway starts: the gauges live in this test process's one registry.
  afterAll(async () => {
    await gateway?.stop()
  })

  it("forecasts from the query's weddings, names the source, and applies the season they make", async () => {
    const s = await snapshot(gateway)
    assert.strictEqual(s.calendar?.source, "WEDDING_CALENDAR_SQL")
    assert.strictEqual(s.calendar?.weddings, 2)
    assert.isUndefined(s.calendar?.error)
    // w-1 starts in an hour, inside its two-hour ramp: some of its 1,200 expected devices are predicted already.
    assert.isAbove(s.calendar?.predictedConnections ?? 0, 0)
    assert.deepStrictEqual(s.calendar?.upcoming.map((w) => [w.id, w.devices]), [["w-1", 1200], ["w-2", 800]])
    assert.strictEqual(s.season.active, true)
    assert.match(s.season.reason, /^2 weddings in the next 7 days \(threshold 2\)/)
    assert.strictEqual(s.season.settings.leadTimeMs, 2 * s.season.configured.leadTimeMs)
    const metrics = (await getText(`${gateway.url}/metrics`)).text
    assert.strictEqual(valueOf(metrics, "wedsync_scaling_season_active"), 1)
    assert.isAbove(valueOf(metrics, "wedsync_scaling_predicted_connections") ?? 0, 0)
  })

  it("re-reads the query: a new wedding is counted, a row without a start is skipped and reported", async () => {
    await insert("w-3", 3 * HOUR, 100, [])
    await insert("w-no-start", null, 100, [])
    const s = await waitUntil("the refreshed calendar", () => snapshot(gateway), (s) => s.calendar?.weddings === 3)
    assert.strictEqual(s.calendar?.skippedRows, 1)
    assert.deepStrictEqual(s.calendar?.problems, ["row 4: starts_at is missing or not a timestamptz"])
  })

  describe("with a query that fails", () => {
    let broken: RunningGateway
    beforeAll(async () => {
      broken = await startGateway({
        gateway: { adminToken: Redacted.make(ADMIN_TOKEN), scalingSampleMs: 100 },
        scaling: { seasonMode: "auto", seasonWeddingThreshold: 2 },
        calendar: source(`select * from ${schema}.no_such_table where $1::timestamptz < $2::timestamptz`)
      })
    })
    afterAll(async () => {
      await broken?.stop()
      await db.query(`drop schema if exists ${schema} cascade`)
      await db.end()
    })

    it("keeps serving: the error is reported and the season stays off", async () => {
      const s = await snapshot(broken)
      assert.strictEqual(s.calendar?.source, "WEDDING_CALENDAR_SQL")
      assert.strictEqual(s.calendar?.weddings, 0)
      assert.match(
        s.calendar?.error ?? "",
        /^WEDDING_CALENDAR_SQL failed: relation ".+\.no_such_table" does not exist$/
      )
      assert.strictEqual(s.season.active, false)
      assert.match(s.season.reason, /the calendar could not be read: WEDDING_CALENDAR_SQL failed/)
      assert.strictEqual(s.decision.desiredReplicas, 1)
      const metrics = (await getText(`${broken.url}/metrics`)).text
      assert.strictEqual(valueOf(metrics, "wedsync_scaling_season_active"), 0)
    })
  })
})

describe("Season.layers", () => {
  const configured = {
    connection: ConnectionConfig.ConnectionConfig.layer({ idleTimeoutMs: 120_000 }),
    cache: CacheConfig.CacheConfig.layer({ l1MaxEntries: 1000, l1MaxBytes: 1_000_000 }),
    scaling: (options: Partial<ScalingConfig.ScalingOptions>) =>
      ScalingConfig.ScalingConfig.layer({ leadTimeMs: 600_000, warmBeforeRampMs: 300_000, ...options })
  }
  /** What the services of a process with this season setting read. */
  const settingsWith = (options: Partial<ScalingConfig.ScalingOptions>, calendar?: WeddingCalendar.Source) => {
    const layers = Season.layers({ ...configured, scaling: configured.scaling(options) }, calendar)
    return Effect.gen(function*() {
      const connection = yield* ConnectionConfig.ConnectionConfig
      const cache = yield* CacheConfig.CacheConfig
      const scaling = yield* ScalingConfig.ScalingConfig
      const season = yield* Season.Season
      return {
        active: season.active,
        idleTimeoutMs: connection.idleTimeoutMs,
        l1MaxEntries: cache.l1MaxEntries,
        l1MaxBytes: cache.l1MaxBytes,
        leadTimeMs: scaling.leadTimeMs,
        warmBeforeRampMs: scaling.warmBeforeRampMs
      }
    }).pipe(Effect.provide(Layer.mergeAll(layers.connection, layers.cache, layers.scaling, layers.season)))
  }
  const inSeason = {
    active: true,
    idleTimeoutMs: 90_000,
    l1MaxEntries: 2000,
    l1MaxBytes: 2_000_000,
    leadTimeMs: 1_200_000,
    warmBeforeRampMs: 600_000
  }
  const outOfSeason = {
    active: false,
    idleTimeoutMs: 120_000,
    l1MaxEntries: 1000,
    l1MaxBytes: 1_000_000,
    leadTimeMs: 600_000,
    warmBeforeRampMs: 300_000
  }

  it.live("SEASON_MODE=on tightens idle cleanup, grows the L1 cache and scales and warms earlier; off changes nothing", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* settingsWith({ seasonMode: "on" }), inSeason)
      assert.deepStrictEqual(yield* settingsWith({ seasonMode: "off" }), outOfSeason)
    }))

  it.live("SEASON_MODE=auto follows the calendar: weddings in the lookahead turn it on, weddings beyond it do not", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "wedsync-season-"))
      const file = (name: string, count: number, fromNowMs: number) => {
        const path = join(dir, name)
        const weddings = Array.from({ length: count }, (_, i) => ({
          id: `w-${i}`,
          start: new Date(Date.now() + fromNowMs + i * HOUR).toISOString(),
          suppliers: 3
        }))
        writeFileSync(path, JSON.stringify({ weddings }))
        return { _tag: "File", path } as const
      }
      const auto = { seasonMode: "auto", seasonWeddingThreshold: 3 } as const
      assert.deepStrictEqual(yield* settingsWith(auto, file("busy.json", 3, HOUR)), inSeason)
      // Beyond the 7-day lookahead: none of them count (in any month; May-September only needs one inside it).
      assert.deepStrictEqual(yield* settingsWith(auto, file("later.json", 3, 30 * 24 * HOUR)), outOfSeason)
    }))
})

/**
 * deploy/grafana/wedsync-realtime.json: valid JSON with Grafana's dashboard structure (panels with grid positions and
 * targets), every PromQL expression parsed by Prometheus' own grammar and by `promtool check rules`, and every metric
 * it reads exposed by a gateway started here (its /metrics) and documented in docs/metrics.md.
 */
import { assert, describe } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { afterAll, beforeAll, test, vi } from "vitest"
import {
  asRecordingRules,
  checkQueries,
  dashboardQueries,
  documentedMetrics,
  exposedNames
} from "../src/DeployChecks.ts"
import { type Gateway, promtoolCheckRules, read, startCommand, startGateway } from "./support.ts"

vi.setConfig({ testTimeout: 30_000, hookTimeout: 30_000 })

const dashboard: unknown = JSON.parse(read("deploy/grafana/wedsync-realtime.json"))
const { problems, queries } = dashboardQueries(dashboard)

let gateway: Gateway | undefined
let exposition = ""
let exposed: ReadonlySet<string> = new Set()
beforeAll(async () => {
  gateway = await startGateway(startCommand(), { HOST: "127.0.0.1" })
  const response = await fetch(`http://127.0.0.1:${gateway.port}/metrics`)
  exposition = await response.text()
  exposed = exposedNames(exposition)
})
afterAll(async () => {
  gateway?.child.kill("SIGTERM")
  await gateway?.exit
})

describe("deploy/grafana dashboard", () => {
  test("has Grafana's dashboard structure: title, uid, schemaVersion, panels with gridPos and targets", () => {
    assert.deepStrictEqual(problems, [])
    assert.isAtLeast(queries.length, 20)
  })

  test("covers what operators watch: connections, deliveries, latency, event loop, Redis, broker, cache, presence", () => {
    const all = queries.map((q) => q.expr).join("\n")
    for (
      const metric of [
        "wedsync_connection_open",
        "wedsync_hub_deliveries_total",
        "wedsync_connection_write_delay_seconds_bucket",
        "wedsync_hub_fanout_duration_seconds_bucket",
        "nodejs_eventloop_lag_p99_seconds",
        "wedsync_redis_connected",
        "wedsync_hub_broker_lost_total",
        "wedsync_hub_broker_gaps_total",
        "wedsync_cache_hits_total",
        "wedsync_presence_swept_entries_total"
      ]
    ) assert.include(all, metric)
    assert.match(all, /histogram_quantile\(0\.99, sum by \(le\) \(rate\(wedsync_connection_write_delay_seconds_bucket/)
  })

  test("the scraped /metrics passes Prometheus' exposition parser (promtool check metrics)", () => {
    const check = spawnSync("promtool", ["check", "metrics"], { input: exposition, encoding: "utf8" })
    assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`)
    assert.isAtLeast(exposed.size, 50)
  })

  test("every expression parses and reads only metrics the running gateway exposes and docs/metrics.md lists", () => {
    assert.isTrue(exposed.has("wedsync_connection_open"), "the gateway's /metrics was read")
    assert.deepStrictEqual(checkQueries(queries, exposed), [])
    const documented = documentedMetrics(read("docs/metrics.md"))
    const histogramSeries = (n: string) => n.replace(/_(bucket|sum|count)$/, "")
    const documentedOrSeries = new Set(
      [...exposed].filter((n) => documented.has(n) || documented.has(histogramSeries(n)))
    )
    assert.deepStrictEqual(checkQueries(queries, documentedOrSeries), [])
  })

  test("a metric the gateway does not expose, or a syntax error, is refused", () => {
    const refused = checkQueries([
      { where: "a", expr: "sum(rate(wedsync_connection_opened_total[$__rate_interval]))" },
      { where: "b", expr: "sum(rate(wedsync_hub_deliveries_total[5m])" },
      { where: "c", expr: "vector(1)" }
    ], exposed)
    assert.strictEqual(refused.length, 3, refused.join("\n"))
    assert.match(refused[0]!, /wedsync_connection_opened_total is not exposed/)
    assert.match(refused[1]!, /syntax error/)
    assert.match(refused[2]!, /selects no metric/)
    assert.isNotEmpty(dashboardQueries({ title: "x", panels: [{ id: 1, type: "timeseries", targets: [] }] }).problems)
  })

  test("promtool accepts every expression as a recording rule, and refuses a broken one", () => {
    const accepted = promtoolCheckRules(asRecordingRules(queries.map((q) => q.expr)))
    assert.strictEqual(accepted.status, 0, accepted.output)
    assert.match(accepted.output, new RegExp(`SUCCESS: ${queries.length} rules found`))
    const refused = promtoolCheckRules(asRecordingRules(["histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))"]))
    assert.notStrictEqual(refused.status, 0)
  })
})

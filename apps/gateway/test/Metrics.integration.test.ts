/**
 * Every metric the running gateway registers follows the naming rules (wedsync_<subsystem>_<name>,
 * units, bounded labels), checked after real traffic so labelled series exist too.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { MetricNames } from "@wedsync/metrics"
import { RawClient } from "@wedsync/testkit"
import { Effect, ManagedRuntime, Metric } from "effect"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { assert, it } from "@effect/vitest"
import * as GatewayLayer from "../src/GatewayLayer.ts"

it("registers only metrics that pass the naming lint, after real traffic", async () => {
  const runtime = ManagedRuntime.make(GatewayLayer.layerTest())
  try {
    const { port } = await runtime.runPromise(Effect.gen(function*() {
      return yield* GatewayLayer.NodeServer
    }))
    const client = await RawClient.connect(
      `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=2.0.0`
    )
    client.send(["1", "1", "realtime:lint", "phx_join", { config: { broadcast: { self: true } } }])
    await client.next(RawClient.isReplyTo("1"))
    client.send(["1", "2", "realtime:lint", "broadcast", { type: "broadcast", event: "e", payload: {} }])
    await client.next(RawClient.isEvent("broadcast"))
    await client.close()
    const violations = await runtime.runPromise(MetricNames.lintRegistered())
    const catalogue = readFileSync(new URL("../../../docs/metrics.md", import.meta.url), "utf8")
    const registered = await runtime.runPromise(Metric.snapshot)
    const undocumented = [...new Set(registered.map((m) => m.id))].filter((name) => !catalogue.includes(`\`${name}\``))
    assert.deepStrictEqual(undocumented, [])
    assert.strictEqual(MetricNames.formatViolations(violations), MetricNames.formatViolations([]))
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    assert.match(text, /wedsync_hub_deliveries_total \d+/)
    assert.match(text, /wedsync_connection_write_delay_seconds_bucket/)
  } finally {
    await runtime.dispose()
  }
})

/** Runs `promtool check metrics` on an exposition text; promtool must be installed (npm test's preparation does it). */
const promtool = (text: string): { status: number | null; output: string } => {
  const result = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" })
  if (result.error !== undefined)
    throw new Error(`promtool is not installed (apt-get install -y prometheus): ${result.error.message}`)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

it("serves every catalogued series from the first scrape, and /metrics passes promtool check metrics", async () => {
  const runtime = ManagedRuntime.make(GatewayLayer.layerTest())
  try {
    const { port } = await runtime.runPromise(Effect.gen(function*() {
      return yield* GatewayLayer.NodeServer
    }))
    const first = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    // Before any traffic: labelled counters of refusals and closes exist at 0, and the stock Node.js names are there.
    for (
      const series of [
        `wedsync_connection_joins_total{result="ClientJoinRateLimitReached"} 0`,
        `wedsync_connection_closed_total{reason="4008"} 0`,
        `wedsync_connection_refused_total{reason="ConnectionRateLimitReached"} 0`,
        `wedsync_changes_events_total 0`,
        `nodejs_gc_duration_seconds_count{kind="minor"}`,
        `process_cpu_seconds_total`,
        `nodejs_eventloop_lag_p99_seconds`
      ]
    ) assert.include(first, series)
    const catalogue = readFileSync(new URL("../../../docs/metrics.md", import.meta.url), "utf8")
    const catalogued = [...catalogue.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!)
    assert.isAbove(catalogued.length, 20)
    assert.deepStrictEqual(catalogued.filter((name) => !first.includes(`# TYPE ${name} `)), [])

    const client = await RawClient.connect(
      `ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=1.0.0`
    )
    client.send({ topic: "realtime:promtool", event: "phx_join", payload: {}, ref: "1", join_ref: "1" })
    await client.next(RawClient.isReplyTo("1"))
    await client.close()
    const afterTraffic = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    assert.deepStrictEqual(promtool(afterTraffic), { status: 0, output: "" })
    // The refusal beside it: the shape the event-loop summary used to have (a gauge with a quantile label) is refused.
    const broken = '# HELP lag_seconds Lag.\n# TYPE lag_seconds gauge\nlag_seconds{quantile="0.99"} 0.01\n'
    const refused = promtool(broken)
    assert.notStrictEqual(refused.status, 0)
    assert.include(refused.output, "quantile")
  } finally {
    await runtime.dispose()
  }
})

/**
 * Every metric the running gateway registers follows the naming rules (wedsync_<subsystem>_<name>,
 * units, bounded labels), checked after real traffic so labelled series exist too.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { MetricNames } from "@wedsync/metrics"
import { RawClient } from "@wedsync/testkit"
import { Effect, ManagedRuntime, Metric } from "effect"
import { readFileSync } from "node:fs"
import { expect, it } from "vitest"
import * as GatewayLayer from "../src/GatewayLayer.ts"

it("registers only metrics that pass the naming lint, after real traffic", async () => {
  const runtime = ManagedRuntime.make(GatewayLayer.layerTest())
  try {
    const { port } = await runtime.runPromise(Effect.gen(function*() {
      return yield* GatewayLayer.NodeServer
    }))
    const client = await RawClient.connect(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${await TestTokens.anonToken()}&vsn=2.0.0`)
    client.send(["1", "1", "realtime:lint", "phx_join", { config: { broadcast: { self: true } } }])
    await client.next(RawClient.isReplyTo("1"))
    client.send(["1", "2", "realtime:lint", "broadcast", { type: "broadcast", event: "e", payload: {} }])
    await client.next(RawClient.isEvent("broadcast"))
    await client.close()
    const violations = await runtime.runPromise(MetricNames.lintRegistered())
    const catalogue = readFileSync(new URL("../../../docs/metrics.md", import.meta.url), "utf8")
    const registered = await runtime.runPromise(Metric.snapshot)
    const undocumented = [...new Set(registered.map((m) => m.id))].filter((name) => !catalogue.includes(`\`${name}\``))
    expect(undocumented).toEqual([])
    expect(MetricNames.formatViolations(violations)).toBe(MetricNames.formatViolations([]))
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    expect(text).toMatch(/wedsync_hub_deliveries_total \d+/)
    expect(text).toMatch(/wedsync_connection_write_delay_seconds_bucket/)
  } finally {
    await runtime.dispose()
  }
})

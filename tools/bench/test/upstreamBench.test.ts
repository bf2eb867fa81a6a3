/**
 * Smoke test of the upstream pool benchmark at a tiny size (the real run is 10,000 clients, run by hand): both modes
 * start their gateways, deliver everything, and report the upstream sockets the clients use (one per client directly,
 * one pooled socket through the relay).
 */
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { vi } from "vitest"
import { killAllServers } from "../src/serverProcess.ts"
import { parseUpstreamBenchOptions, runMode } from "../src/upstreamBench.ts"

vi.setConfig({ testTimeout: 60_000 })

const root = fileURLToPath(new URL("../../../", import.meta.url))
const unpinned = { upstream: undefined, relay: undefined }

describe("upstream bench", () => {
  it("defaults to the issue's workload and refuses a bad mode", () => {
    const options = parseUpstreamBenchOptions([])
    assert.containSubset(options, { clients: 10_000, topics: 50, modes: ["direct", "pool"] })
    assert.throws(() => parseUpstreamBenchOptions(["--mode", "sideways"]), /--mode/)
  })

  it("runs both modes at a tiny size: nothing lost, one pooled upstream socket instead of one per client", async () => {
    const options = parseUpstreamBenchOptions([
      "--clients=20",
      "--topics=4",
      "--deliveries=200",
      "--duration=0.5",
      "--warmup=0.2",
      "--settle=300",
      "--no-pin"
    ])
    try {
      const direct = await runMode("direct", options, root, unpinned)
      const pool = await runMode("pool", options, root, unpinned)
      assert.isAbove(direct.expected, 0)
      assert.strictEqual(direct.received, direct.expected)
      assert.strictEqual(pool.received, pool.expected)
      assert.strictEqual(direct.upstreamSockets, 20)
      assert.strictEqual(pool.upstreamSockets, 1)
      assert.strictEqual(pool.upstreamChannels, 4)
      assert.isAbove(pool.p50, 0)
    } finally {
      killAllServers()
    }
  })
})

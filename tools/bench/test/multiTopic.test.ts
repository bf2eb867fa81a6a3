import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { startFlags } from "../src/targets/gateway.ts"
import { histogramP99Ms } from "../src/exposition.ts"
import { parseMultiTopicOptions, publishRatePerTopic, undisturbedLine } from "../src/multiTopicBench.ts"

describe("multi-topic bench options", () => {
  it("defaults to the issue's workload: 10,000 sockets on 50 topics at 60,000 deliveries/s, five runs", () => {
    const options = parseMultiTopicOptions([])
    assert.containSubset(options, { sockets: 10_000, topics: 50, deliveriesPerSecond: 60_000, runs: 5 })
    // Each socket receives 6 messages per second, so each of the 50 topics publishes 6 per second.
    assert.strictEqual(publishRatePerTopic(options), 6)
  })

  it("refuses fewer sockets than topics and non-numbers; accepts the boundary", () => {
    assert.throws(() => parseMultiTopicOptions(["--sockets", "10", "--topics", "11"]), /at least --topics/)
    assert.throws(() => parseMultiTopicOptions(["--runs", "many"]), /--runs must be a number/)
    assert.strictEqual(parseMultiTopicOptions(["--sockets", "11", "--topics", "11"]).sockets, 11)
  })

  it("runs on loopback unless told veth; refuses other networks, and veth with several processes, Redis or no pinning", () => {
    assert.strictEqual(parseMultiTopicOptions([]).network, "loopback")
    assert.strictEqual(parseMultiTopicOptions(["--network", "veth"]).network, "veth")
    assert.throws(() => parseMultiTopicOptions(["--network", "wifi"]), /--network must be loopback or veth/)
    assert.throws(
      () => parseMultiTopicOptions(["--network", "veth", "--processes", "2", "--redis", "spawn"]),
      /one gateway process without Redis/
    )
    assert.throws(
      () => parseMultiTopicOptions(["--network", "veth", "--redis", "spawn"]),
      /one gateway process without Redis/
    )
    assert.throws(() => parseMultiTopicOptions(["--network", "veth", "--processes", "2"]), /needs --redis/)
    assert.throws(() => parseMultiTopicOptions(["--network", "veth", "--no-pin"]), /pinned cores/)
  })

  it("takes extra server flags for diagnosis", () => {
    assert.deepStrictEqual(parseMultiTopicOptions(["--server-flags=--trace-gc --cpu-prof"]).serverFlags, [
      "--trace-gc",
      "--cpu-prof"
    ])
  })
})

describe("histogramP99Ms", () => {
  const exposition = [
    "# TYPE d_seconds histogram",
    'd_seconds_bucket{le="0.001"} 90',
    'd_seconds_bucket{le="0.01"} 98',
    'd_seconds_bucket{le="0.1"} 100',
    'd_seconds_bucket{le="+Inf"} 100',
    "d_seconds_sum 0.5",
    "d_seconds_count 100"
  ].join("\n")

  it("reads the upper bound of the bucket holding the 99th percentile, in ms", () => {
    assert.strictEqual(histogramP99Ms(exposition, "d_seconds"), 100)
  })

  it("is NaN for a histogram without observations or not present", () => {
    assert.isNaN(histogramP99Ms(exposition, "other_seconds"))
  })
})

describe("startFlags", () => {
  it("reads the Node flags of the gateway's `exec node …` start script, so benches run it as production does", () => {
    const root = fileURLToPath(new URL("../../../", import.meta.url))
    assert.deepStrictEqual(startFlags(root), ["--max-semi-space-size=8"])
  })
})

describe("undisturbedLine", () => {
  const steal = (worst0: number, worst1: number) => [
    { cpu: 0, meanPct: 1, worstSecondPct: worst0 },
    { cpu: 1, meanPct: 1, worstSecondPct: worst1 }
  ]

  it("leaves out of its worst p99 only the runs with a second of >= 10% stolen on either core", () => {
    const line = undisturbedLine([
      { p99: 20, steal: steal(2, 3) },
      { p99: 400, steal: steal(2, 31) },
      { p99: 45, steal: steal(9.9, 0) },
      { p99: 300, steal: steal(10, 0) }
    ])
    assert.strictEqual(
      line,
      "host: 2 of 4 runs had a second with >= 10% of a core stolen; worst p99 of the 2 undisturbed: 45.0 ms"
    )
  })

  it("says so when every run was disturbed", () => {
    assert.match(undisturbedLine([{ p99: 20, steal: steal(50, 0) }]), /1 of 1 runs .* no undisturbed run to compare/)
  })
})

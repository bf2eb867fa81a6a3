import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { startFlags } from "../src/targets/gateway.ts"
import { histogramP99Ms, parseMultiTopicOptions, publishRatePerTopic } from "../src/multiTopicBench.ts"

describe("multi-topic bench options", () => {
  it("defaults to the issue's workload: 10,000 sockets on 50 topics at 60,000 deliveries/s, five runs", () => {
    const options = parseMultiTopicOptions([])
    expect(options).toMatchObject({ sockets: 10_000, topics: 50, deliveriesPerSecond: 60_000, runs: 5 })
    // Each socket receives 6 messages per second, so each of the 50 topics publishes 6 per second.
    expect(publishRatePerTopic(options)).toBe(6)
  })

  it("refuses fewer sockets than topics and non-numbers; accepts the boundary", () => {
    expect(() => parseMultiTopicOptions(["--sockets", "10", "--topics", "11"])).toThrow(/at least --topics/)
    expect(() => parseMultiTopicOptions(["--runs", "many"])).toThrow(/--runs must be a number/)
    expect(parseMultiTopicOptions(["--sockets", "11", "--topics", "11"]).sockets).toBe(11)
  })

  it("takes extra server flags for diagnosis", () => {
    expect(parseMultiTopicOptions(["--server-flags=--trace-gc --cpu-prof"]).serverFlags).toEqual(["--trace-gc", "--cpu-prof"])
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
    expect(histogramP99Ms(exposition, "d_seconds")).toBe(100)
  })

  it("is NaN for a histogram without observations or not present", () => {
    expect(histogramP99Ms(exposition, "other_seconds")).toBeNaN()
  })
})

describe("startFlags", () => {
  it("reads the Node flags of the gateway's `exec node …` start script, so benches run it as production does", () => {
    const root = fileURLToPath(new URL("../../../", import.meta.url))
    expect(startFlags(root)).toEqual(["--max-semi-space-size=8"])
  })
})

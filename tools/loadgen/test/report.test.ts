import { describe, expect, it } from "vitest"
import { renderReport } from "../src/report.ts"
import type { Sample, Summary } from "../src/summary.ts"

const sample = (t: number, overrides: Partial<Sample> = {}): Sample => ({
  t,
  p50Ms: 2.5,
  p99Ms: 9.75,
  devices: 100 * t,
  gatewayConnections: 100 * t + 1,
  deliveriesPerS: 1000,
  desiredReplicas: 1,
  reason: "hold at 1",
  cacheHitRatio: null,
  ...overrides
})

const summary: Summary = {
  startedAt: "2027-06-12T12:00:00.000Z",
  calendar: "/tmp/saturday.json",
  weddings: 20,
  durationS: 180,
  compression: 320,
  devicesPlanned: 9900,
  forecastDevices: 9900,
  devicesJoined: 9876,
  joinFailures: 24,
  firstJoinFailure: "<script>alert(1)</script>",
  presenceTracks: 9876,
  broadcastsSent: 5432,
  deliveries: 1234567,
  lost: 0,
  latency: { p50Ms: 3.25, p99Ms: 41.5, maxMs: 120 },
  rate: { basePerWedding: 1, growth: 10 },
  gateway: "started by the loadgen",
  postgresChanges: "skipped (no --database-url)",
  changes: null,
  samples: [
    sample(5),
    sample(10, { desiredReplicas: 2, reason: "scale up to 2: connections", cacheHitRatio: 0.5 }),
    sample(15, { p50Ms: null, p99Ms: null, cacheHitRatio: 0.75 })
  ]
}

describe("renderReport", () => {
  const html = renderReport(summary)

  it("is one HTML document with the charts drawn inline", () => {
    expect(html.startsWith("<!doctype html>")).toBe(true)
    expect(html.trimEnd().endsWith("</html>")).toBe(true)
    for (const id of ["latency", "connections", "deliveries", "replicas", "cache"]) {
      expect(html).toContain(`<svg id="${id}"`)
    }
    expect(html).not.toMatch(/<script|<link|src=|href=/)
    // Three samples make three points on the connections lines; the missing latency breaks its line.
    expect(html).toMatch(/<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ L[\d.]+,[\d.]+" fill="none" stroke="#2ca02c"/)
    expect(html).toMatch(/<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+" fill="none" stroke="#d62728"/)
  })

  it("shows the summary's numbers and each change of the policy's reason once", () => {
    for (const text of ["1234567", "9900 / 9876", "3.3 / 41.5 / 120.0 ms", "skipped (no --database-url)"]) {
      expect(html).toContain(text)
    }
    expect(html).toContain("<th>Lost</th><td>0</td>")
    // hold, scale up, hold again: three changes.
    expect(html.match(/<li>/g)).toHaveLength(3)
    expect(html).toContain("10 s: scale up to 2: connections")
  })

  it("escapes text from the gateway and the calendar", () => {
    expect(html).not.toContain("<script>alert(1)</script>")
    expect(html).toContain("&#60;script&#62;")
  })

  it("leaves the cache chart out when the gateway reports no cache", () => {
    const noCache = renderReport({ ...summary, samples: summary.samples.map((s) => ({ ...s, cacheHitRatio: null })) })
    expect(noCache).not.toContain(`<svg id="cache"`)
    expect(noCache).toContain(`<svg id="replicas"`)
  })
})

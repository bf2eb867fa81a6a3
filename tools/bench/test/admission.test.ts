import { describe, expect, it } from "vitest"
import { parseAdmissionOptions, type RunResult, shedTotalOf, worstRatio } from "../src/admissionBench.ts"
import { windowP99Ms } from "../src/exposition.ts"

const window = (p99: number) => ({ p50: 1, p99, max: p99, received: 1, expected: 1, inNodeP99: 1 })
const result = (mode: RunResult["mode"], unloaded: number, flood: number): RunResult => ({
  mode,
  unloaded: window(unloaded),
  flood: window(flood),
  floodAnswers: {},
  shedTotal: 0,
  serverCpuPct: 0
})

describe("admission bench", () => {
  it("parses its options and refuses an unknown mode or too few sockets", () => {
    const options = parseAdmissionOptions(["--sockets", "100", "--topics", "10", "--modes", "shed"])
    expect(options).toMatchObject({ sockets: 100, topics: 10, modes: ["shed"], floodPerSecond: 1000, runs: 3 })
    expect(() => parseAdmissionOptions(["--modes", "shed,nope"])).toThrow(/--modes takes shed, admitted/)
    expect(() => parseAdmissionOptions(["--sockets", "5", "--topics", "10"])).toThrow(/--sockets must be at least/)
  })

  it("quotes the worst flood/unloaded p99 ratio per mode", () => {
    const results = [result("shed", 4, 6), result("shed", 2, 5), result("admitted", 3, 300)]
    expect(worstRatio(results, "shed")).toBe(2.5)
    expect(worstRatio(results, "admitted")).toBe(100)
    expect(worstRatio([], "shed")).toBeUndefined()
  })

  it("sums the shed counter over reasons and takes a histogram's p99 over a window", () => {
    const exposition = [
      `wedsync_admission_shed_total{reason="connections"} 7`,
      `wedsync_admission_shed_total{reason="event-loop-delay"} 2`,
      `wedsync_admission_shedding_other 100`
    ].join("\n")
    expect(shedTotalOf(exposition)).toBe(9)
    const histogram = (a: number, b: number, inf: number) =>
      [`h_bucket{le="0.005"} ${a}`, `h_bucket{le="0.01"} ${b}`, `h_bucket{le="+Inf"} ${inf}`].join("\n")
    // 100 new observations in the window, 2 of them above 5 ms: p99 is in the 10 ms bucket.
    expect(windowP99Ms(histogram(1000, 1000, 1000), histogram(1098, 1100, 1100), "h")).toBe(10)
    expect(windowP99Ms(histogram(5, 5, 5), histogram(5, 5, 5), "h")).toBeNaN()
  })
})

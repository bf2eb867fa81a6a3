import { assert, describe, it } from "@effect/vitest"
import { parseOptions } from "../src/cli.ts"
import type { MachineFacts } from "../src/machine.ts"
import { type BenchReport, renderReport } from "../src/report.ts"
import type { TargetRun } from "../src/runTarget.ts"
import type { WindowResult } from "../src/scenarios/window.ts"

const facts: MachineFacts = {
  date: "2026-11-28T18:00:00.000Z",
  nproc: 2,
  cpuModel: "AMD EPYC",
  memGiB: 24,
  kernel: "Linux 6",
  node: "v24.22.3",
  loadAvg: [0.1, 0.1, 0.1],
  fdLimit: "20000",
  tasksetAvailable: true
}

const window = (deliveriesPerSec: number, overrides: Partial<WindowResult> = {}): WindowResult => ({
  rate: 8,
  achievedPublishRate: 8,
  subscribers: 5000,
  durationS: 10,
  published: 80,
  expected: 400_000,
  received: 400_000,
  loss: 0,
  reordered: 0,
  offeredDeliveriesPerSec: 40_000,
  deliveriesPerSec,
  p50: 20,
  p99: 80,
  p999: 90,
  max: 100,
  serverCpuPct: 50,
  serverCpuMsPer1000: 12.5,
  clientCpuPct: 40,
  otherOnServerCorePct: 1,
  otherOnClientCorePct: 1,
  serverRssKiB: 200_000,
  unexpectedCloses: 0,
  attempts: 1,
  receivedByProcess: [400_000],
  expectedByProcess: [400_000],
  ...overrides
})

const run = (target: TargetRun["target"], sustained: number, extra: Partial<TargetRun> = {}): TargetRun => ({
  target,
  serverCommand: `node ${target}`,
  fanout: window(40_000),
  saturate: {
    steps: [window(sustained)],
    stopReason: "test",
    sustained: window(sustained),
    peakDeliveriesPerSec: sustained
  },
  ...extra
})

const report = (runs: ReadonlyArray<TargetRun>): BenchReport => ({
  facts,
  command: "npm run bench -- --scenario fanout,saturate",
  options: parseOptions(["--scenario", "fanout,saturate"]),
  serverCpu: 0,
  benchPinned: true,
  runs,
  notes: []
})

describe("renderReport", () => {
  it("puts targets side by side with gateway ratios", () => {
    const md = renderReport(report([run("gateway", 200_000), run("ws-relay", 100_000), run("socketio", 50_000)]))
    assert.include(
      md,
      "| **max sustained deliveries/s** (p99 ≤ 1000 ms, no loss) | 200,000 | 100,000 | 50,000 | 2.00× | 4.00× |"
    )
    assert.include(md, "saturate: gateway ≥ bare ws relay: **met** (2.00×)")
    assert.include(md, "saturate: gateway ≥ 2× Socket.IO: **met** (4.00×)")
    assert.include(md, "- machine: 2 CPUs (`nproc`), AMD EPYC")
  })

  it("marks a gateway that could not run as not yet measured, never as a number", () => {
    const gateway: TargetRun = {
      target: "gateway",
      serverCommand: "node apps/gateway/src/main.ts",
      error: "does not exist yet"
    }
    const md = renderReport(report([gateway, run("ws-relay", 100_000), run("socketio", 50_000)]))
    assert.include(md, "| **deliveries/s** | not yet measured | 40,000 | 40,000 | — | — |")
    assert.include(md, "saturate: gateway ≥ bare ws relay: not yet measured")
    assert.include(md, "- gateway: does not exist yet")
  })

  it("warns when the bench client or neighbours may have limited a result", () => {
    const busy = run("ws-relay", 100_000, {
      fanout: window(40_000, { clientCpuPct: 95, otherOnServerCorePct: 30, attempts: 2 })
    })
    const md = renderReport(report([busy]))
    assert.include(md, "ws-relay fanout: the bench client used 95% of its core")
    assert.include(md, "ws-relay fanout: other processes used 30% of the server's core")
    assert.include(md, "| gateway | ws-relay | socketio |")
    assert.include(md, "| **deliveries/s** | not run | 40,000 | not run | — | — |")
  })

  it("shows a scale-out run's deliveries per process and Redis commands per message; a plain run has no such section", () => {
    const options = parseOptions([
      "--scenario",
      "fanout",
      "--targets",
      "gateway",
      "--processes",
      "2",
      "--redis",
      "spawn"
    ])
    const gateway = run("gateway", 100_000, {
      processes: "2 gateway processes, REDIS_URL=redis://127.0.0.1:1 (private redis-server)",
      fanout: window(20_000, {
        published: 80,
        receivedByProcess: [200_000, 0],
        expectedByProcess: [200_000, 200_000],
        redis: { calls: [["spublish", 80]], totalCalls: 80, cpuSeconds: 0.01 }
      })
    })
    const md = renderReport({ ...report([gateway]), options })
    assert.include(md, "### Scale-out: 2 process(es), Redis private (spawned)")
    assert.include(
      md,
      "- fanout: deliveries process 1: 200,000 of 200,000; process 2: 0 of 200,000 — process 2 received nothing"
    )
    assert.include(md, "Redis commands per published message 1.00 (spublish 1.00)")
    assert.include(md, "| Redis commands per published message | 1.00 |")
    assert.notInclude(renderReport(report([run("gateway", 100_000)])), "Scale-out")
  })
})

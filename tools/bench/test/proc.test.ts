import { assert, describe, it } from "@effect/vitest"
import { type CpuTimes, parseCpuTimes, StealByPhase, StealWatch } from "../src/proc.ts"

// The first lines of a real /proc/stat of this machine kind (a 2-vCPU VM whose host takes time: the 8th column).
const STAT = [
  "cpu  21471 0 6995 53911 468 0 4778 5921 0 0",
  "cpu0 13051 0 3725 24550 335 0 2073 2583 0 0",
  "cpu1 8420 0 3269 29360 133 0 2704 3338 0 0",
  "intr 123 0 0"
].join("\n")

describe("parseCpuTimes", () => {
  it("reads busy, stolen and total jiffies of the machine and of one CPU; idle and iowait are not busy", () => {
    assert.deepStrictEqual(parseCpuTimes(STAT, "cpu"), {
      busy: 21471 + 6995 + 4778 + 5921,
      steal: 5921,
      total: 21471 + 6995 + 53911 + 468 + 4778 + 5921
    })
    assert.deepStrictEqual(parseCpuTimes(STAT, "cpu1"), {
      busy: 8420 + 3269 + 2704 + 3338,
      steal: 3338,
      total: 8420 + 3269 + 29360 + 133 + 2704 + 3338
    })
  })

  it("does not take cpu1 for cpu or cpu10 for cpu1, and gives zeros for a missing line", () => {
    const many = `${STAT}\ncpu10 1 1 1 1 1 1 1 99 0 0`
    assert.strictEqual(parseCpuTimes(many, "cpu1").steal, 3338)
    assert.strictEqual(parseCpuTimes(many, "cpu10").steal, 99)
    assert.deepStrictEqual(parseCpuTimes(STAT, "cpu7"), { busy: 0, steal: 0, total: 0 })
  })
})

describe("StealByPhase", () => {
  it("gives each phase the share of time stolen while it ran, and adds up a phase entered twice", () => {
    let now: CpuTimes = { busy: 0, steal: 0, total: 0 }
    const ledger = new StealByPhase(() => now)
    const advance = (total: number, steal: number) => {
      now = { busy: now.busy + steal, steal: now.steal + steal, total: now.total + total }
    }
    ledger.enter("baseline")
    advance(1000, 0)
    ledger.enter("flood")
    advance(1000, 400)
    ledger.enter("baseline")
    advance(1000, 100)
    const shares = ledger.finish()
    assert.deepStrictEqual([...shares], [["baseline", 5], ["flood", 40]])
  })

  it("is NaN for a phase in which no time passed", () => {
    const ledger = new StealByPhase(() => ({ busy: 0, steal: 0, total: 0 }))
    ledger.enter("instant")
    assert.isNaN(ledger.finish().get("instant"))
  })
})

describe("StealWatch", () => {
  it("gives each core its mean stolen share and its worst one-second sample", () => {
    const times = new Map<number, CpuTimes>([[0, { busy: 0, steal: 0, total: 0 }], [1, {
      busy: 0,
      steal: 0,
      total: 0
    }]])
    const advance = (cpu: number, total: number, steal: number) => {
      const t = times.get(cpu)!
      times.set(cpu, { busy: t.busy + steal, steal: t.steal + steal, total: t.total + total })
    }
    const watch = new StealWatch([0, 1], (cpu) => times.get(cpu)!)
    watch.start()
    advance(0, 100, 2)
    advance(1, 100, 0)
    watch.sample()
    advance(0, 100, 40)
    advance(1, 100, 5)
    watch.sample()
    advance(0, 100, 0)
    advance(1, 100, 0)
    const [cpu0, cpu1] = watch.stop()
    assert.strictEqual(cpu0!.worstSecondPct, 40)
    assert.closeTo(cpu0!.meanPct, 14, 1e-9)
    assert.strictEqual(cpu1!.worstSecondPct, 5)
    assert.closeTo(cpu1!.meanPct, 5 / 3, 1e-9)
  })
})

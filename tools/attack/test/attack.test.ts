/**
 * The attack suite's short mode, inside `npm test`: two real gateway processes on loopback, eight supabase-js victims
 * in a room, every check of expectations.ts (each: the refusal and the accepted case beside it), 5,000 fuzzed frames.
 * Asserts that the gateway stayed up, the victims lost nothing, memory stayed bounded, and each check passed. The
 * victims' p99 per phase is printed, not asserted here (too few samples per phase); the full run records it.
 */
import { assert, describe, it } from "@effect/vitest"
import { afterAll, beforeAll } from "vitest"
import { killAll } from "../src/gateway.ts"
import { markdown } from "../src/report.ts"
import { CHECKS, run, SHORT, type SuiteReport } from "../src/suite.ts"

let report: SuiteReport

beforeAll(async () => {
  report = await run(SHORT)
  console.log(markdown(report, "npm test (tools/attack/test/attack.test.ts, short mode)"))
}, 180_000)

afterAll(() => killAll())

describe("attack suite, short mode", () => {
  it("keeps the gateway process up", () => {
    assert.strictEqual(report.processUp, true, report.exitStatus)
  })

  it("loses no victim delivery and disrupts no victim channel", () => {
    assert.strictEqual(report.victims.lost, 0)
    assert.deepStrictEqual(report.victims.disruptions, [])
  })

  it("keeps memory bounded (RSS after GC within the expected factor of before)", () => {
    assert.strictEqual(
      report.rssBounded,
      true,
      `RSS ${report.rssBeforeKiB} KiB before, ${report.rssAfterKiB} KiB after`
    )
  })

  it.each([...CHECKS.map((c) => [c.id, /^\d/.test(c.item) ? `item ${c.item}` : c.item] as const)])(
    "%s (issue 6, %s): refused, with the accepted case beside it",
    (id) => {
      const result = report.checks.find((c) => c.id === id)
      assert.isDefined(result, `check ${id} did not run`)
      assert.strictEqual(result!.hostile.ok, true, `attack: ${result!.hostile.observed}`)
      assert.strictEqual(result!.accepted.ok, true, `accepted case: ${result!.accepted.observed}`)
    }
  )
})

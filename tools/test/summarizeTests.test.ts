import { assert, describe } from "@effect/vitest"
import { test } from "vitest"
import { formatLine, summarize } from "../src/summarizeTests.ts"

const report = (passed: number, failed: number, pending = 0, todo = 0) => ({
  numPassedTests: passed,
  numFailedTests: failed,
  numPendingTests: pending,
  numTodoTests: todo,
  success: failed === 0,
  testResults: []
})

describe("summarizeTests", () => {
  test("sums every project and prints skipped only when there are some", () => {
    const totals = summarize([{ project: "a", report: report(3, 0) }, { project: "b", report: report(4, 1) }])
    assert.strictEqual(formatLine(totals), "7 passed, 1 failed")
    assert.strictEqual(
      formatLine(summarize([{ project: "a", report: report(3, 0, 1, 1) }])),
      "3 passed, 0 failed, 2 skipped"
    )
  })

  test("a missing report counts as a failure with a note", () => {
    const totals = summarize([{ project: "a", report: report(3, 0) }, { project: "b", missing: "no results" }])
    assert.strictEqual(formatLine(totals), "3 passed, 1 failed")
    assert.deepStrictEqual(totals.notes, ["b: no results"])
  })

  test("a test file that failed to load counts as a failure", () => {
    const broken = {
      ...report(2, 0),
      success: false,
      testResults: [{
        name: "/x/test/A.test.ts",
        status: "failed",
        message: "Cannot find module 'nope'\nstack",
        assertionResults: []
      }]
    }
    const totals = summarize([{ project: "a", report: broken }])
    assert.strictEqual(formatLine(totals), "2 passed, 1 failed")
    assert.deepStrictEqual(totals.notes, ["a: /x/test/A.test.ts failed to run: Cannot find module 'nope'"])
  })

  test("unhandled errors, or no test file at all, count as a failure", () => {
    const unhandled = {
      ...report(2, 0),
      success: false,
      testResults: [{ name: "A.test.ts", status: "passed", assertionResults: [] }]
    }
    const totals = summarize([{ project: "a", report: unhandled }, {
      project: "b",
      report: { ...report(0, 0), success: false }
    }])
    assert.strictEqual(formatLine(totals), "2 passed, 2 failed")
    assert.deepStrictEqual(totals.notes, [
      "a: vitest reported failure without a failed test (unhandled errors)",
      "b: vitest ran no test file (no test files found, or it failed before running any)"
    ])
  })

  test("a failed npm test never ends in 0 failed", () => {
    assert.strictEqual(formatLine(summarize([{ project: "a", report: report(2, 0) }], 1)), "2 passed, 1 failed")
    assert.strictEqual(formatLine(summarize([{ project: "a", report: report(2, 3) }], 1)), "2 passed, 3 failed")
  })
})

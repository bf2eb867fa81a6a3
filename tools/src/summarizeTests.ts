/**
 * The closing line of `npm test`: sums every workspace's vitest JSON report and prints `N passed, N failed` (plus
 * `, N skipped` when some were) as the very last line, for CI to read.
 *
 * A workspace with a `test` script but no report this run counts as one failure: its tests did not run, and a stale
 * report must not stand in for them (prepareServices deletes old reports; reports older than the run marker it writes
 * are ignored as well). A test file that failed to load, or a run with unhandled errors, also counts as a failure even
 * though vitest reports no failed test for it. `--exit-code N` (used by .ci/run) records that `npm test` itself failed,
 * so a typecheck or dependency-check failure cannot end in `0 failed`.
 */
import { existsSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { workspaceDirs } from "./checkDeps.ts"

/** Path of a workspace's vitest JSON report, relative to the workspace. */
export const resultsFile = join(".vitest", "results.json")

/** Written by prepareServices at the start of `npm test`; reports older than it are stale. */
export const runMarker = join("node_modules", ".cache", "wedsync", "test-run-started")

/** The parts of vitest's JSON report this reads. */
interface VitestReport {
  readonly numPassedTests?: number
  readonly numFailedTests?: number
  readonly numPendingTests?: number
  readonly numTodoTests?: number
  readonly success?: boolean
  readonly testResults?: ReadonlyArray<{
    readonly name?: string
    readonly status?: string
    readonly message?: string
    readonly assertionResults?: ReadonlyArray<{ readonly status?: string }>
  }>
}

/** One workspace's outcome: its report, or why it has none. */
type ProjectResult =
  | { readonly project: string; readonly report: VitestReport }
  | { readonly project: string; readonly missing: string }

interface Totals {
  readonly passed: number
  readonly failed: number
  readonly skipped: number
  /** Why `failed` is higher than the failed-test count, one line each. */
  readonly notes: ReadonlyArray<string>
}

/** Sums the reports; missing reports, broken test files and unhandled errors each add one failure with a note. */
export const summarize = (results: ReadonlyArray<ProjectResult>, npmExitCode = 0): Totals => {
  let passed = 0
  let failed = 0
  let skipped = 0
  const notes: Array<string> = []
  for (const result of results) {
    if ("missing" in result) {
      failed++
      notes.push(`${result.project}: ${result.missing}`)
      continue
    }
    const r = result.report
    passed += r.numPassedTests ?? 0
    failed += r.numFailedTests ?? 0
    skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
    let extra = 0
    for (const file of r.testResults ?? []) {
      const failedAssertions = (file.assertionResults ?? []).filter((a) => a.status === "failed").length
      if (file.status === "failed" && failedAssertions === 0) {
        extra++
        const why = (file.message ?? "").split("\n")[0] ?? ""
        notes.push(`${result.project}: ${file.name ?? "a test file"} failed to run${why ? `: ${why}` : ""}`)
      }
    }
    if (r.success === false && (r.numFailedTests ?? 0) === 0 && extra === 0) {
      extra++
      notes.push(
        (r.testResults ?? []).length === 0
          ? `${result.project}: vitest ran no test file (no test files found, or it failed before running any)`
          : `${result.project}: vitest reported failure without a failed test (unhandled errors)`
      )
    }
    failed += extra
  }
  if (npmExitCode !== 0 && failed === 0) {
    failed++
    notes.push(
      `npm test exited with code ${npmExitCode} outside the test runs (service setup, typecheck or dependency check; see above)`
    )
  }
  return { passed, failed, skipped, notes }
}

/** The closing line: `N passed, N failed`, with `, N skipped` only when some were skipped. */
export const formatLine = (totals: Totals): string =>
  `${totals.passed} passed, ${totals.failed} failed${totals.skipped > 0 ? `, ${totals.skipped} skipped` : ""}`

/** Reads every workspace with a `test` script; a report older than `since` (ms) counts as missing. */
export const collect = (root: string, since?: number): ReadonlyArray<ProjectResult> =>
  workspaceDirs(root).flatMap((dir): Array<ProjectResult> => {
    const pkg = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) as {
      name?: string
      scripts?: Record<string, string>
    }
    if (pkg.scripts?.["test"] === undefined) return []
    const project = pkg.name ?? dir
    const file = join(root, dir, resultsFile)
    if (!existsSync(file)) return [{ project, missing: `no ${join(dir, resultsFile)}: its tests did not run` }]
    if (since !== undefined && statSync(file).mtimeMs < since) {
      return [{ project, missing: `${join(dir, resultsFile)} predates this run (stale): its tests did not run` }]
    }
    try {
      return [{ project, report: JSON.parse(readFileSync(file, "utf8")) as VitestReport }]
    } catch (error) {
      return [{ project, missing: `${join(dir, resultsFile)} is not valid JSON (${String(error)})` }]
    }
  })

const main = () => {
  const root = join(import.meta.dirname, "..", "..")
  const exitArg = process.argv.indexOf("--exit-code")
  const npmExitCode = exitArg >= 0 ? Number(process.argv[exitArg + 1] ?? 1) || 0 : 0
  const marker = join(root, runMarker)
  const since = existsSync(marker) ? statSync(marker).mtimeMs : undefined
  const results = collect(root, since)
  const totals = summarize(results, npmExitCode)
  for (const r of results) {
    if ("report" in r) {
      const t = summarize([r])
      console.log(`  ${r.project}: ${formatLine(t)}`)
    }
  }
  for (const note of totals.notes) console.log(`  ✗ ${note}`)
  console.log(formatLine(totals))
  if (totals.failed > 0) process.exitCode = 1
}

if (import.meta.main) main()

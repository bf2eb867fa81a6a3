/**
 * Season simulation (issue 10): a compressed wedding Saturday against a gateway. See tools/loadgen/README.md.
 * Run: `npm run loadgen -- --calendar tools/loadgen/calendars/saturday.json` (3 minutes, up to 10,000 devices).
 */
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { killAllServers } from "../../bench/src/serverProcess.ts"
import { parseLoadgenArgs, USAGE } from "./cli.ts"
import { runSeason } from "./run.ts"

const parsed = parseLoadgenArgs(process.argv.slice(2))
if ("error" in parsed) {
  process.stderr.write(`loadgen: ${parsed.error}\n\n${USAGE}\n`)
  process.exit(2)
}
process.on("exit", killAllServers)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAllServers()
    process.exit(130)
  })
}
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
// `npm run loadgen` at the root runs in tools/: paths on the command line are the caller's, from INIT_CWD.
const callerDir = process.env["INIT_CWD"] ?? process.cwd()
const options = {
  ...parsed.options,
  calendar: resolve(callerDir, parsed.options.calendar),
  out: resolve(callerDir, parsed.options.out)
}
try {
  const { summary, reportPath, summaryPath } = await runSeason(options, repoRoot)
  const { latency } = summary
  console.log(
    `season: ${summary.weddings} weddings, ${summary.devicesJoined}/${summary.devicesPlanned} devices joined, ` +
      `${summary.broadcastsSent} broadcasts, ${summary.deliveries} deliveries, ${summary.lost} lost, ` +
      `latency p50 ${latency.p50Ms?.toFixed(1) ?? "n/a"} ms p99 ${latency.p99Ms?.toFixed(1) ?? "n/a"} ms`
  )
  console.log(`report: ${reportPath}\nsummary: ${summaryPath}`)
  process.exit(summary.joinFailures === 0 && summary.lost === 0 ? 0 : 1)
} catch (error) {
  process.stderr.write(`loadgen: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}

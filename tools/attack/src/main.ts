/**
 * `npm run attack -- [--full] [--only id,id] [--json]`: runs the attack suite against fresh gateway processes on
 * loopback and prints the results as markdown (the tables in docs/security.md). Exit code 1 when a check failed, a
 * victim lost a message or the gateway died.
 */
import { parseArgs } from "node:util"
import { killAll } from "./gateway.ts"
import { markdown, threatModel } from "./report.ts"
import { FULL, run, SHORT } from "./suite.ts"

const { values } = parseArgs({
  options: {
    full: { type: "boolean", default: false },
    only: { type: "string" },
    json: { type: "boolean", default: false },
    "threat-model": { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  }
})

if (values.help) {
  console.log(
    "npm run attack -- [--full] [--only id,id] [--json] [--threat-model]\n  short mode by default (what npm test runs); --full: 100,000 fuzz frames, 50 victims, larger floods"
  )
  process.exit(0)
}
if (values["threat-model"]) {
  console.log(threatModel())
  process.exit(0)
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => (killAll(), process.exit(130)))
process.once("exit", killAll)

const base = values.full ? FULL : SHORT
const mode = { ...base, only: values.only === undefined ? [] : values.only.split(",") }
const report = await run(mode, (line) => console.error(line))
if (values.json) console.log(JSON.stringify(report, null, 2))
else console.log(markdown(report, `npm run attack -- ${process.argv.slice(2).join(" ")}`.trim()))
const ok = report.checks.every((c) => c.passed) && report.victims.lost === 0 && report.processUp
process.exitCode = ok ? 0 : 1

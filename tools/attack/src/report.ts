/** Markdown for docs/security.md: the checks with both sides, the fuzzer, the victims per phase, the memory. */
import { CHECKS } from "./expectations.ts"
import { QUIET_PHASE, type SuiteReport } from "./suite.ts"

const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : "–")
const percent = (v: number | undefined): string => (v !== undefined && Number.isFinite(v) ? `${v.toFixed(1)} %` : "–")
const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\n/g, " ")

export const markdown = (report: SuiteReport, command: string): string => {
  const lines: Array<string> = []
  lines.push(`Command: \`${command}\` (${report.mode} mode, ${(report.totalMs / 1000).toFixed(0)} s).`, "")
  lines.push("| check | item | result | attack got | accepted case |", "|---|---|---|---|---|")
  for (const c of report.checks) {
    lines.push(
      `| \`${c.id}\` | ${c.item} | ${c.passed ? "pass" : "**FAIL**"} | ${cell(c.hostile.observed)} | ${
        cell(c.accepted.observed)
      } |`
    )
  }
  const base = report.victims.phases.find((p) => p.phase === "baseline")
  lines.push(
    "",
    `Victims: ${report.victims.victims} supabase-js clients; lost ${report.victims.lost}, duplicates ${report.victims.duplicates}, disruptions ${report.victims.disruptions.length}.`,
    ""
  )
  lines.push(
    "| phase | ticks | delivered / expected | p50 ms | p99 ms | max ms | p99 vs baseline | CPU stolen by the host |",
    "|---|---|---|---|---|---|---|---|"
  )
  for (const p of report.victims.phases) {
    const ratio = base === undefined || !Number.isFinite(p.p99Ms) || !(base.p99Ms > 0)
      ? "–"
      : `${((p.p99Ms / base.p99Ms) * 100).toFixed(0)} %`
    lines.push(
      `| ${p.phase} | ${p.sent} | ${p.delivered} / ${p.expected} | ${ms(p.p50Ms)} | ${ms(p.p99Ms)} | ${
        ms(p.maxMs)
      } | ${ratio} | ${percent(report.stealByPhase[p.phase])} |`
    )
  }
  const quiet = report.victims.phases.find((p) => p.phase === QUIET_PHASE)
  if (base !== undefined && quiet !== undefined && base.p99Ms > 0 && Number.isFinite(quiet.p99Ms)) {
    lines.push(
      "",
      `Noise floor: the quiet phase after the attacks had p99 ${ms(quiet.p99Ms)} ms against the baseline's ${
        ms(base.p99Ms)
      } ms (${((quiet.p99Ms / base.p99Ms) * 100).toFixed(0)} %), with no attack in either.`
    )
  }
  lines.push(
    "",
    `Gateway process: ${report.processUp ? "up" : `DOWN (${report.exitStatus})`}; RSS before ${
      (report.rssBeforeKiB / 1024).toFixed(0)
    } MiB, peak ${(report.rssPeakKiB / 1024).toFixed(0)} MiB, after (GC) ${(report.rssAfterKiB / 1024).toFixed(0)} MiB.`
  )
  return lines.join("\n")
}

/** The threat model table: class, attack, expected refusal, accepted case, test name. */
export const threatModel = (): string => {
  const lines = [
    "| check (test name) | item | class | what the attacker sends | expected refusal | accepted case beside it |",
    "|---|---|---|---|---|---|"
  ]
  for (const c of CHECKS)
    lines.push(
      `| \`${c.id}\` | ${c.item} | ${cell(c.title)} | ${cell(c.attack)} | ${cell(c.refusal)} | ${cell(c.accepted)} |`
    )
  return lines.join("\n")
}

/**
 * Renders a run as a markdown section: machine facts, the exact command, one side-by-side table per
 * scenario with gateway ratios, the saturation steps of each target, and a check against the
 * targets of issue #2. A target that did not produce a number shows why instead of a number.
 */
import type { BenchOptions } from "./cli.ts"
import { fixed, int, mib, ratio } from "./format.ts"
import type { MachineFacts } from "./machine.ts"
import type { TargetRun } from "./runTarget.ts"
import { perMessage } from "./redisStats.ts"
import { perProcessLine } from "./scaleOut.ts"
import { NOISE_LIMIT_PCT, noiseOf, type WindowResult } from "./scenarios/window.ts"
import { TARGET_NAMES, type TargetName } from "./targets/Target.ts"

export interface BenchReport {
  readonly facts: MachineFacts
  readonly command: string
  readonly options: BenchOptions
  readonly serverCpu: number | undefined
  readonly benchPinned: boolean
  readonly runs: ReadonlyArray<TargetRun>
  readonly notes: ReadonlyArray<string>
}

const NOT_MEASURED = "not yet measured"

type Pick = (run: TargetRun) => number | undefined

interface Row {
  readonly label: string
  readonly pick: Pick
  readonly show: (n: number | undefined) => string
  /** Whether a gateway ÷ other ratio is meaningful for this row. */
  readonly ratio: boolean
}

const row = (label: string, pick: Pick, show: (n: number | undefined) => string, withRatio = true): Row => ({
  label,
  pick,
  show,
  ratio: withRatio
})

const table = (report: BenchReport, rows: ReadonlyArray<Row>, has: (run: TargetRun) => boolean): string => {
  const byName = new Map(report.runs.map((r) => [r.target, r]))
  const cell = (name: TargetName, r: Row): string => {
    const run = byName.get(name)
    if (run === undefined) return "not run"
    if (!has(run))
      return name === "gateway" && run.error !== undefined
        ? NOT_MEASURED
        : run.error !== undefined
        ? "failed"
        : "—"
    return r.show(r.pick(run))
  }
  const gateway = byName.get("gateway")
  const ratioCell = (other: TargetName, r: Row): string => {
    const o = byName.get(other)
    if (!r.ratio || gateway === undefined || o === undefined || !has(gateway) || !has(o)) return "—"
    return ratio(r.pick(gateway), r.pick(o))
  }
  const head = `| metric | ${TARGET_NAMES.join(" | ")} | gateway ÷ ws-relay | gateway ÷ socketio |`
  const rule = `|---|${TARGET_NAMES.map(() => "---:").join("|")}|---:|---:|`
  const lines = rows.map(
    (r) =>
      `| ${r.label} | ${TARGET_NAMES.map((n) => cell(n, r)).join(" | ")} | ${ratioCell("ws-relay", r)} | ${
        ratioCell("socketio", r)
      } |`
  )
  return [head, rule, ...lines].join("\n")
}

const ms = (n: number | undefined): string => fixed(n, 1)
const pct = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? "—" : `${fixed(n, 0)}%`)

const idleSection = (report: BenchReport): string => {
  const rows: ReadonlyArray<Row> = [
    row("connections joined", (r) => r.idle?.connections, int, false),
    row("connect rate (conn/s)", (r) => r.idle?.connectPerSec, int),
    row("join rate (joins/s)", (r) => r.idle?.joinPerSec, int),
    row("server RSS before (MiB)", (r) => r.idle?.rssBeforeKiB, mib),
    row("server RSS after (MiB)", (r) => r.idle?.rssAfterKiB, mib),
    row("**server RSS per connection (KiB)**", (r) => r.idle?.rssPerConnectionKiB, (n) => fixed(n, 2)),
    row("idle server CPU (µs per conn per s)", (r) => r.idle?.idleCpuUsPerConnSec, (n) => fixed(n, 2)),
    row("connect/join failures", (r) => r.idle?.failures, int, false),
    row("other processes on the server's core during connect+join", (r) => r.idle?.otherOnServerCorePct, pct, false)
  ]
  return `### idle: ${int(report.options.idleConnections)} connections\n\n${
    table(report, rows, (r) => r.idle !== undefined)
  }`
}

const windowRows = (pick: (run: TargetRun) => WindowResult | undefined): ReadonlyArray<Row> => [
  row("subscribers", (r) => pick(r)?.subscribers, int, false),
  row("publish rate achieved (msg/s)", (r) => pick(r)?.achievedPublishRate, (n) => fixed(n, 1), false),
  row("offered deliveries/s", (r) => pick(r)?.offeredDeliveriesPerSec, int, false),
  row("**deliveries/s**", (r) => pick(r)?.deliveriesPerSec, int),
  row("p50 latency (ms)", (r) => pick(r)?.p50, ms),
  row("**p99 latency (ms)**", (r) => pick(r)?.p99, ms),
  row("p99.9 latency (ms)", (r) => pick(r)?.p999, ms),
  row("max latency (ms)", (r) => pick(r)?.max, ms),
  row("expected deliveries", (r) => pick(r)?.expected, int, false),
  row("received", (r) => pick(r)?.received, int, false),
  row("**lost**", (r) => pick(r)?.loss, int, false),
  row("duplicate or out-of-order deliveries", (r) => pick(r)?.reordered, int, false),
  row("unexpected disconnects", (r) => pick(r)?.unexpectedCloses, int, false),
  row("server CPU (% of one core)", (r) => pick(r)?.serverCpuPct, pct),
  row("server CPU per 1,000 deliveries (ms, all processes)", (r) => pick(r)?.serverCpuMsPer1000, (n) => fixed(n, 2)),
  row("Redis commands per published message", (r) => redisPerMessage(pick(r)), (n) => fixed(n, 2), false),
  row("Redis CPU per 1,000 deliveries (ms)", (r) => redisCpuPer1000(pick(r)), (n) => fixed(n, 3), false),
  row("bench client CPU (% of one core)", (r) => pick(r)?.clientCpuPct, pct, false),
  row("other processes on the server's core", (r) => pick(r)?.otherOnServerCorePct, pct, false),
  row("other processes on the bench's core", (r) => pick(r)?.otherOnClientCorePct, pct, false),
  row("measurement attempts (noisy windows are repeated)", (r) => pick(r)?.attempts, int, false),
  row("server RSS at end (MiB)", (r) => pick(r)?.serverRssKiB, mib)
]

const redisPerMessage = (w: WindowResult | undefined): number | undefined =>
  w?.redis === undefined || w.published === 0 ? undefined : w.redis.totalCalls / w.published

const redisCpuPer1000 = (w: WindowResult | undefined): number | undefined =>
  w?.redis === undefined || w.received === 0 ? undefined : (w.redis.cpuSeconds * 1e6) / w.received

/**
 * For a gateway run on several processes or on Redis: where the deliveries landed per process, and which Redis
 * commands each published message cost (the figure that must stay constant as subscribers grow).
 */
const scaleOutSection = (report: BenchReport): string | undefined => {
  const o = report.options
  if (o.scale.processes === 1 && o.scale.redis === undefined) return undefined
  const lines: Array<string> = []
  for (const run of report.runs) {
    if (run.processes !== undefined) lines.push(`- ${run.target}: ${run.processes}`)
    const windows: ReadonlyArray<readonly [string, WindowResult | undefined]> = [
      ["fanout", run.fanout],
      ...(run.saturate?.steps ?? []).map((step): readonly [string, WindowResult] => [
        `saturate ${fixed(step.rate, 1)} msg/s`,
        step
      ])
    ]
    for (const [what, w] of windows) {
      if (w === undefined) continue
      const redis = w.redis === undefined
        ? ""
        : `; Redis commands per published message ${perMessage(w.redis, w.published)}`
      lines.push(`- ${what}: deliveries ${perProcessLine(w.receivedByProcess, w.expectedByProcess)}${redis}`)
    }
  }
  return `### Scale-out: ${o.scale.processes} process(es), Redis ${
    o.scale.redis === undefined ? "none" : o.scale.redis === "spawn" ? "private (spawned)" : "given"
  }\n\n${lines.join("\n")}`
}

const fanoutSection = (report: BenchReport): string => {
  const o = report.options
  return `### fanout: ${
    int(o.subscribers)
  } subscribers, ${o.rate} msg/s, ${o.durationS} s after ${o.warmupS} s warm-up, ${o.payloadBytes} B payload\n\n${
    table(
      report,
      windowRows((r) => r.fanout),
      (r) => r.fanout !== undefined
    )
  }`
}

const stepsTable = (run: TargetRun): string => {
  const steps = run.saturate?.steps ?? []
  if (steps.length === 0)
    return `**${run.target}**: ${
      run.error === undefined ? "no steps" : run.target === "gateway" ? NOT_MEASURED : "failed"
    }`
  const lines = steps.map(
    (s) =>
      `| ${fixed(s.rate, 1)} | ${int(s.offeredDeliveriesPerSec)} | ${int(s.deliveriesPerSec)} | ${ms(s.p50)} | ${
        ms(s.p99)
      } | ${int(s.loss)} | ${int(s.reordered)} | ${pct(s.serverCpuPct)} | ${pct(s.clientCpuPct)} | ${
        pct(s.otherOnServerCorePct)
      } / ${pct(s.otherOnClientCorePct)} | ${s.attempts} |`
  )
  return [
    `**${run.target}** (stopped: ${run.saturate?.stopReason ?? "—"})`,
    "",
    "| publish msg/s | offered deliveries/s | deliveries/s | p50 ms | p99 ms | lost | reordered | server CPU | bench CPU | others on server / bench core | attempts |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...lines
  ].join("\n")
}

const saturateSection = (report: BenchReport): string => {
  const o = report.options
  const rows: ReadonlyArray<Row> = [
    row(
      `**max sustained deliveries/s** (p99 ≤ ${o.p99LimitMs} ms, no loss)`,
      (r) => r.saturate?.sustained?.deliveriesPerSec,
      int
    ),
    row("publish rate at max sustained (msg/s)", (r) => r.saturate?.sustained?.rate, (n) => fixed(n, 1)),
    row("p99 at max sustained (ms)", (r) => r.saturate?.sustained?.p99, ms),
    row("server CPU at max sustained", (r) => r.saturate?.sustained?.serverCpuPct, pct),
    row("bench client CPU at max sustained", (r) => r.saturate?.sustained?.clientCpuPct, pct, false),
    row("peak deliveries/s (any step)", (r) => r.saturate?.peakDeliveriesPerSec, int)
  ]
  const steps = report.runs.map(stepsTable).join("\n\n")
  return `### saturate: ${
    int(o.subscribers)
  } subscribers, rate ×${o.stepFactor} per step from ${o.rate} msg/s, ${o.stepS} s steps\n\n${
    table(
      report,
      rows,
      (r) => r.saturate !== undefined
    )
  }\n\nSteps:\n\n${steps}`
}

// The bench client at or above this share of its core may itself be the limit.
const CLIENT_BOUND_PCT = 90

/** Warnings that change how a number should be read: a busy bench client or busy neighbours. */
const caveats = (report: BenchReport): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (const run of report.runs) {
    const windows: ReadonlyArray<readonly [string, WindowResult | undefined]> = [
      ["fanout", run.fanout],
      ["saturate max sustained step", run.saturate?.sustained]
    ]
    for (const [what, w] of windows) {
      if (w === undefined) continue
      if (w.clientCpuPct >= CLIENT_BOUND_PCT) {
        out.push(
          `${run.target} ${what}: the bench client used ${
            pct(w.clientCpuPct)
          } of its core, so the client may be the limit; read the figure as a lower bound for the server`
        )
      }
      if (noiseOf(w) > NOISE_LIMIT_PCT) {
        out.push(
          `${run.target} ${what}: other processes used ${pct(w.otherOnServerCorePct)} of the server's core and ${
            pct(w.otherOnClientCorePct)
          } of the bench's core even after ${w.attempts} attempt(s); latency and throughput are pessimistic`
        )
      }
    }
    const idleOther = run.idle?.otherOnServerCorePct
    if (idleOther !== undefined && idleOther > NOISE_LIMIT_PCT) {
      out.push(
        `${run.target} idle: other processes used ${
          pct(idleOther)
        } of the server's core while connecting; connect and join rates are pessimistic`
      )
    }
  }
  return out
}

const verdict = (
  ok: boolean | undefined
): string => (ok === undefined ? "not yet measured" : ok ? "**met**" : "**not met**")

const targetsSection = (report: BenchReport): string => {
  const byName = new Map(report.runs.map((r) => [r.target, r]))
  const gw = byName.get("gateway")
  const relay = byName.get("ws-relay")?.saturate?.sustained?.deliveriesPerSec
  const sio = byName.get("socketio")?.saturate?.sustained?.deliveriesPerSec
  const gwSat = gw?.saturate?.sustained?.deliveriesPerSec
  const lines = [
    `- idle: 10,000 joined connections at ≤ 12 KiB server RSS each: ${
      verdict(
        gw?.idle === undefined ? undefined : gw.idle.connections >= 10_000 && gw.idle.rssPerConnectionKiB <= 12
      )
    }${gw?.idle === undefined ? "" : ` (${int(gw.idle.connections)} at ${fixed(gw.idle.rssPerConnectionKiB, 2)} KiB)`}`,
    `- fanout: 40,000 deliveries/s with p99 ≤ 150 ms and no loss: ${
      verdict(
        gw?.fanout === undefined
          ? undefined
          : gw.fanout.deliveriesPerSec >= 39_000 && gw.fanout.p99 <= 150 && gw.fanout.loss === 0 &&
            gw.fanout.reordered === 0
      )
    }${
      gw?.fanout === undefined
        ? ""
        : ` (${int(gw.fanout.deliveriesPerSec)}/s, p99 ${ms(gw.fanout.p99)} ms, lost ${int(gw.fanout.loss)})`
    }`,
    `- saturate: gateway ≥ bare ws relay: ${
      verdict(gwSat === undefined || relay === undefined ? undefined : gwSat >= relay)
    } (${ratio(gwSat, relay)})`,
    `- saturate: gateway ≥ 2× Socket.IO: ${
      verdict(gwSat === undefined || sio === undefined ? undefined : gwSat >= 2 * sio)
    } (${ratio(gwSat, sio)})`
  ]
  return `### Targets (issue #2)\n\n${lines.join("\n")}`
}

export const renderReport = (report: BenchReport): string => {
  const f = report.facts
  const o = report.options
  const pinning = report.serverCpu === undefined
    ? "not pinned (taskset unavailable or --no-pin)"
    : `server pinned to CPU ${report.serverCpu} with \`taskset -c ${report.serverCpu}\`; bench clients ${
      report.benchPinned ? "pinned to CPU 1 (`taskset -a -p -c 1`)" : "not pinned"
    }`
  const errors = report.runs.filter((r) => r.error !== undefined).map((r) =>
    `- ${r.target}: ${r.error?.split("\n")[0]}`
  )
  const sections = [
    `## Results ${f.date.slice(0, 10)}`,
    "",
    `- command: \`${report.command}\``,
    `- machine: ${f.nproc} CPUs (\`nproc\`), ${f.cpuModel}, ${f.memGiB} GiB RAM, ${f.kernel}, open-files limit ${f.fdLimit}`,
    `- node ${f.node}; run started ${f.date}; load average at start ${f.loadAvg.map((l) => l.toFixed(2)).join(" / ")}`,
    `- ${pinning}`,
    `- servers: ${
      report.runs.map((r) =>
        `${r.target} = \`${r.serverCommand}\`${r.processes === undefined ? "" : ` (${r.processes})`}`
      ).join("; ")
    }`,
    ...report.notes.map((n) => `- ${n}`)
  ]
  if (o.scenarios.includes("idle")) sections.push("", idleSection(report))
  if (o.scenarios.includes("fanout")) sections.push("", fanoutSection(report))
  if (o.scenarios.includes("saturate")) sections.push("", saturateSection(report))
  const scaleOut = scaleOutSection(report)
  if (scaleOut !== undefined) sections.push("", scaleOut)
  sections.push("", targetsSection(report))
  const warnings = caveats(report)
  if (warnings.length > 0) sections.push("", "### Caveats for this run", "", ...warnings.map((w) => `- ${w}`))
  if (errors.length > 0) sections.push("", "### Errors", "", ...errors)
  return `${sections.join("\n")}\n`
}

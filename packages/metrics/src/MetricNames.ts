/**
 * Naming and label rules for every metric the gateway exports, as a pure lint.
 *
 * Names follow `wedsync_<subsystem>_<name>_<unit>`: counters end in `_total`, histograms and summaries carry a unit
 * suffix, every metric has a description. Label names come from a fixed allow-list of bounded dimensions, and label
 * values must look like identifiers, so a topic, user id or email cannot become a label by accident. The lint accepts
 * registry snapshots (`Metric.snapshot`) and plain metric definitions alike; it reports, it does not rename.
 */
import { Effect, Metric } from "effect"

/** Every exported metric name must match this. */
// Our own metrics are `wedsync_<subsystem>_…`; `process_*` and `nodejs_*` are the names stock Node.js dashboards
// query (prom-client's defaults), kept as they are so those dashboards work unchanged.
const namePattern = /^(wedsync_[a-z]+|process|nodejs)_[a-z0-9_]+$/

/** The only label names allowed: each is a small, fixed set of values, never user data. */
const allowedLabels: ReadonlyArray<string> = [
  "reason",
  "kind",
  "vsn",
  "result",
  "quantile",
  "tier",
  "event",
  "code",
  "target",
  // nodejs_version_info only: one series per process.
  "version",
  // wedsync_worker_info only: one series per process (its worker number and pid).
  "worker",
  "pid"
]

/** Unit suffixes accepted on histograms and summaries. */
const unitSuffixes: ReadonlyArray<string> = ["_seconds", "_bytes"]

// Identifier-like values (`l1`, `2.0.0`, `0.99`, `ChannelRateLimitReached`); rejects `realtime:room-1`, emails, spaces.
const labelValuePattern = /^[A-Za-z0-9_.+-]{1,64}$/

// Attributes that the Prometheus exporter drops instead of rendering as labels.
const ignoredAttributes = new Set(["unit", "time_unit"])

/** What the lint needs from a metric: a snapshot entry or the metric object itself. */
export interface Described {
  readonly id: string
  readonly type: Metric.Metric.Type
  readonly description: string | undefined
  readonly attributes: Metric.Metric.AttributeSet | undefined
}

/** The rule a violation broke. */
type Rule =
  | "name"
  | "description"
  | "counter-suffix"
  | "total-suffix"
  | "unit-suffix"
  | "frequency"
  | "label-name"
  | "label-value"
  | "type-conflict"
  | "cardinality"

/** One broken rule on one metric. */
export interface Violation {
  readonly metric: string
  readonly rule: Rule
  readonly message: string
}

/** Lint options. */
export interface Options {
  /** Most series (label combinations) one metric may have; more means a label is unbounded. Default 64. */
  readonly maxSeriesPerMetric?: number | undefined
}

/** Checks every metric against the naming and label rules; an empty result means all pass. */
export const lint = (metrics: Iterable<Described>, options: Options = {}): ReadonlyArray<Violation> => {
  const maxSeries = options.maxSeriesPerMetric ?? 64
  const violations: Array<Violation> = []
  const add = (metric: string, rule: Rule, message: string) => {
    if (!violations.some((v) => v.metric === metric && v.rule === rule && v.message === message)) {
      violations.push({ metric, rule, message })
    }
  }
  const byName = new Map<string, { type: Metric.Metric.Type; series: number }>()
  for (const m of metrics) {
    const name = m.id
    const seen = byName.get(name)
    if (seen === undefined) {
      byName.set(name, { type: m.type, series: 1 })
    } else {
      seen.series++
      if (seen.type !== m.type) {
        add(name, "type-conflict", `${name} is registered as both ${seen.type} and ${m.type}`)
      }
    }
    if (!namePattern.test(name)) {
      add(name, "name", `${name} does not match ${namePattern.source} (wedsync_<subsystem>_<name>_<unit>)`)
    }
    if (m.description === undefined || m.description.trim() === "") {
      add(name, "description", `${name} has no description (it becomes the # HELP line)`)
    }
    switch (m.type) {
      case "Counter":
        if (!name.endsWith("_total")) add(name, "counter-suffix", `counter ${name} must end with _total`)
        break
      case "Frequency":
        add(
          name,
          "frequency",
          `${name} is a Frequency, whose free-form "key" label is unbounded; use a counter with an allowed label`
        )
        break
      case "Gauge":
        if (name.endsWith("_total"))
          add(name, "total-suffix", `gauge ${name} must not end with _total (reserved for counters)`)
        break
      case "Histogram":
      case "Summary":
        if (!unitSuffixes.some((suffix) => name.endsWith(suffix))) {
          add(name, "unit-suffix", `${m.type.toLowerCase()} ${name} must end with a unit: ${unitSuffixes.join(" or ")}`)
        }
        break
    }
    for (const [label, value] of Object.entries(m.attributes ?? {})) {
      if (ignoredAttributes.has(label)) continue
      if (!allowedLabels.includes(label)) {
        add(name, "label-name", `${name} has label "${label}", not in the allow-list (${allowedLabels.join(", ")})`)
      } else if (!labelValuePattern.test(value)) {
        add(
          name,
          "label-value",
          `${name}{${label}} has value ${JSON.stringify(value)}, which does not look like a bounded identifier`
        )
      }
    }
  }
  for (const [name, { series }] of byName) {
    if (series > maxSeries) {
      add(name, "cardinality", `${name} has ${series} series (> ${maxSeries}); one of its labels is unbounded`)
    }
  }
  return violations
}

/** Lints everything registered in the current `MetricRegistry`. */
export const lintRegistered = (options: Options = {}): Effect.Effect<ReadonlyArray<Violation>> =>
  Effect.map(Metric.snapshot, (snapshot) => lint(snapshot, options))

/** One line per violation, for test failure messages and CI logs. */
export const formatViolations = (violations: ReadonlyArray<Violation>): string =>
  violations.map((v) => `${v.metric}: [${v.rule}] ${v.message}`).join("\n")

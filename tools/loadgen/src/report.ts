/** A self-contained HTML report of a season run: inline SVG line charts drawn from the summary's samples. */
import type { Sample, Summary } from "./summary.ts"

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const fmt = (n: number | null, digits = 1): string => (n === null || !Number.isFinite(n) ? "n/a" : n.toFixed(digits))

interface Series {
  readonly name: string
  readonly color: string
  readonly values: ReadonlyArray<number | null>
}

const WIDTH = 640
const HEIGHT = 200
const PAD = 40

/** One line chart; `id` lets a reader (and the tests) find it. Points without a value break the line. */
export const lineChart = (
  id: string,
  title: string,
  times: ReadonlyArray<number>,
  series: ReadonlyArray<Series>
): string => {
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)))
  const maxY = Math.max(1, ...all)
  const maxT = Math.max(1, ...times)
  const x = (t: number) => PAD + ((WIDTH - 2 * PAD) * t) / maxT
  const y = (v: number) => HEIGHT - PAD + -((HEIGHT - 2 * PAD) * v) / maxY
  const paths = series.map((s) => {
    let d = ""
    let pen = "M"
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = "M"
        return
      }
      d += `${pen}${x(times[i] ?? 0).toFixed(1)},${y(v).toFixed(1)} `
      pen = "L"
    })
    return `<path d="${d.trim()}" fill="none" stroke="${s.color}" stroke-width="2"><title>${
      escapeHtml(s.name)
    }</title></path>`
  })
  const legend = series.map((s, i) =>
    `<text x="${PAD + i * 150}" y="14" fill="${s.color}" font-size="12">${escapeHtml(s.name)}</text>`
  )
  return `<figure><figcaption>${escapeHtml(title)}</figcaption>` +
    `<svg id="${id}" xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">` +
    `<line x1="${PAD}" y1="${HEIGHT - PAD}" x2="${WIDTH - PAD}" y2="${HEIGHT - PAD}" stroke="#888"/>` +
    `<line x1="${PAD}" y1="${PAD}" x2="${PAD}" y2="${HEIGHT - PAD}" stroke="#888"/>` +
    `<text x="2" y="${PAD + 4}" font-size="11">${fmt(maxY, maxY < 10 ? 2 : 0)}</text>` +
    `<text x="${WIDTH - PAD - 20}" y="${HEIGHT - PAD + 16}" font-size="11">${fmt(maxT, 0)} s</text>` +
    legend.join("") + paths.join("") + `</svg></figure>`
}

const pick = (samples: ReadonlyArray<Sample>, f: (s: Sample) => number | null) => samples.map(f)

export const renderReport = (summary: Summary): string => {
  const s = summary.samples
  const times = s.map((x) => x.t)
  const charts = [
    lineChart("latency", "Delivery latency (ms), per sample window", times, [
      { name: "p50", color: "#1f77b4", values: pick(s, (x) => x.p50Ms) },
      { name: "p99", color: "#d62728", values: pick(s, (x) => x.p99Ms) }
    ]),
    lineChart("connections", "Connections", times, [
      { name: "devices (loadgen)", color: "#2ca02c", values: pick(s, (x) => x.devices) },
      { name: "gateway open", color: "#9467bd", values: pick(s, (x) => x.gatewayConnections) }
    ]),
    lineChart("deliveries", "Deliveries per second", times, [
      { name: "deliveries/s", color: "#ff7f0e", values: pick(s, (x) => x.deliveriesPerS) }
    ]),
    lineChart("replicas", "Policy's desired replicas", times, [
      { name: "desired replicas", color: "#8c564b", values: pick(s, (x) => x.desiredReplicas) }
    ])
  ]
  if (s.some((x) => x.cacheHitRatio !== null)) {
    charts.push(
      lineChart("cache", "Cache hit ratio", times, [
        { name: "hit ratio", color: "#17becf", values: pick(s, (x) => x.cacheHitRatio) }
      ])
    )
  }
  const reasons = s.filter((x, i) => x.reason !== null && x.reason !== s[i - 1]?.reason)
  const rows: ReadonlyArray<readonly [string, string]> = [
    ["Calendar", summary.calendar],
    ["Weddings", String(summary.weddings)],
    ["Run", `${fmt(summary.durationS, 0)} s (the day compressed ${fmt(summary.compression, 0)}×)`],
    [
      "Devices planned / joined",
      `${summary.devicesPlanned} / ${summary.devicesJoined} (forecast ${summary.forecastDevices})`
    ],
    [
      "Join failures",
      `${summary.joinFailures}${summary.firstJoinFailure === null ? "" : ` (first: ${summary.firstJoinFailure})`}`
    ],
    ["Presence tracks", String(summary.presenceTracks)],
    ["Broadcasts sent", String(summary.broadcastsSent)],
    ["Rate", `${summary.rate.basePerWedding}/s per wedding rising to ${summary.rate.growth}×`],
    ["Deliveries", String(summary.deliveries)],
    ["Lost", String(summary.lost)],
    [
      "Latency p50 / p99 / max",
      `${fmt(summary.latency.p50Ms)} / ${fmt(summary.latency.p99Ms)} / ${fmt(summary.latency.maxMs)} ms`
    ],
    ["Gateway", summary.gateway],
    ["Postgres Changes", summary.postgresChanges],
    ...(summary.changes === null ? [] : [
      [
        "Rows inserted / delivered / lost",
        `${summary.changes.inserted} / ${summary.changes.deliveries} / ${summary.changes.lost}`
      ],
      [
        "Row latency p50 / p99 / max (commit to device)",
        `${fmt(summary.changes.latency.p50Ms)} / ${fmt(summary.changes.latency.p99Ms)} / ${
          fmt(summary.changes.latency.maxMs)
        } ms`
      ]
    ] as const)
  ]
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WedSync season simulation</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:720px}td,th{padding:2px 8px;text-align:left}
figure{margin:1.5em 0}figcaption{font-weight:600}</style></head><body>
<h1>Season simulation, ${escapeHtml(summary.startedAt)}</h1>
<table id="summary">${
    rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")
  }</table>
${charts.join("\n")}
<h2>Scaling reasons</h2>
<ul id="reasons">${
    reasons.length === 0
      ? "<li>not sampled (no /admin/scaling)</li>"
      : reasons.map((x) => `<li>${fmt(x.t, 0)} s: ${escapeHtml(x.reason ?? "")}</li>`).join("")
  }</ul>
</body></html>
`
}

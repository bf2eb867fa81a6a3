/**
 * What the benches and the load generator read from a gateway's `/metrics` (Prometheus text exposition): the sum of a
 * counter's series, and the p99 of a histogram, over the process's life or over a window between two scrapes.
 */

/**
 * The sum of every series of `name` (labelled or not) whose line contains `match`; undefined when there is none, so a
 * metric the process does not export is told apart from one at 0.
 */
export const sumSeries = (exposition: string, name: string, match = ""): number | undefined => {
  let found = false
  let sum = 0
  for (const line of exposition.split("\n")) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `)) || !line.includes(match)) continue
    const value = Number(line.slice(line.lastIndexOf(" ") + 1))
    if (!Number.isFinite(value)) continue
    found = true
    sum += value
  }
  return found ? sum : undefined
}

interface Bucket {
  readonly le: number
  readonly count: number
}

/** Cumulative bucket counts of a histogram without labels, by upper bound. */
const bucketsOf = (exposition: string, name: string): ReadonlyArray<Bucket> =>
  [...exposition.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, "gm"))].map((m) => ({
    le: m[1] === "+Inf" ? Number.POSITIVE_INFINITY : Number(m[1]),
    count: Number(m[2])
  }))

/** The upper bound (ms, from seconds) of the bucket holding the 99th percentile; NaN without observations. */
const p99Ms = (buckets: ReadonlyArray<Bucket>): number => {
  const total = buckets.at(-1)?.count ?? 0
  if (total <= 0) return Number.NaN
  return (buckets.find((b) => b.count >= total * 0.99)?.le ?? Number.NaN) * 1000
}

/** The p99 (bucket upper bound, ms) of a histogram in seconds over the process's life; NaN if it has none. */
export const histogramP99Ms = (exposition: string, name: string): number => p99Ms(bucketsOf(exposition, name))

/** The p99 (bucket upper bound, ms) of the observations a histogram gained between two expositions; NaN if none. */
export const windowP99Ms = (before: string, after: string, name: string): number => {
  const earlier = bucketsOf(before, name)
  return p99Ms(bucketsOf(after, name).map((b, i) => ({ le: b.le, count: b.count - (earlier[i]?.count ?? 0) })))
}

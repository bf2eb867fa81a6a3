/**
 * Latency statistics. `percentile` is the exact nearest-rank definition used as the reference;
 * `LatencyHistogram` records millions of samples in constant memory with a bounded relative error,
 * which is what the hot receive path uses.
 */

/** Nearest-rank percentile of an ascending-sorted sample, `q` in [0, 1]. `NaN` for an empty sample. */
export const percentile = (sorted: ArrayLike<number>, q: number): number => {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const clamped = Math.min(1, Math.max(0, q))
  const rank = Math.max(1, Math.ceil(clamped * n))
  return sorted[rank - 1] ?? Number.NaN
}

/** Log-bucketed histogram: every recorded value lands in a bucket whose width is `precision` of its lower bound. */
export class LatencyHistogram {
  readonly #min: number
  readonly #logBase: number
  readonly #counts: Float64Array
  #count = 0
  #sum = 0
  #max = Number.NEGATIVE_INFINITY
  #lowest = Number.POSITIVE_INFINITY

  /** `minValue` is the smallest distinguishable value; anything below shares the first bucket. */
  constructor(options: { readonly minValue?: number; readonly maxValue?: number; readonly precision?: number } = {}) {
    this.#min = options.minValue ?? 0.001
    const max = options.maxValue ?? 600_000
    this.#logBase = Math.log1p(options.precision ?? 0.01)
    this.#counts = new Float64Array(Math.ceil(Math.log(max / this.#min) / this.#logBase) + 2)
  }

  get count(): number {
    return this.#count
  }

  get max(): number {
    return this.#count === 0 ? Number.NaN : this.#max
  }

  get min(): number {
    return this.#count === 0 ? Number.NaN : this.#lowest
  }

  get mean(): number {
    return this.#count === 0 ? Number.NaN : this.#sum / this.#count
  }

  record(value: number): void {
    const v = value > 0 ? value : 0
    this.#counts[this.#bucketOf(v)]! += 1
    this.#count += 1
    this.#sum += v
    if (v > this.#max) this.#max = v
    if (v < this.#lowest) this.#lowest = v
  }

  /**
   * Nearest-rank percentile. Returns the upper bound of the bucket holding that rank, clamped to the
   * observed min/max, so the answer never understates the true value by more than `precision`.
   */
  percentile(q: number): number {
    if (this.#count === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(Math.min(1, Math.max(0, q)) * this.#count))
    let seen = 0
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!
      if (seen >= rank) {
        // The last bucket also holds everything above the range, so only the max bounds it.
        if (i === this.#counts.length - 1) return this.#max
        const upper = this.#min * Math.exp(i * this.#logBase)
        return Math.max(this.#lowest, Math.min(this.#max, upper))
      }
    }
    return this.#max
  }

  reset(): void {
    this.#counts.fill(0)
    this.#count = 0
    this.#sum = 0
    this.#max = Number.NEGATIVE_INFINITY
    this.#lowest = Number.POSITIVE_INFINITY
  }

  #bucketOf(v: number): number {
    if (v <= this.#min) return 0
    const i = Math.floor(Math.log(v / this.#min) / this.#logBase) + 1
    return i < this.#counts.length ? i : this.#counts.length - 1
  }
}

/**
 * Wrong admin tokens per client address (`/admin/…` bearer tokens and the dashboard's login form). Past
 * `maxFailures` wrong tokens within `windowMs` from one address, every attempt from it is refused with 429 until the
 * window that began with its first failure ends, the right token included: a guesser learns nothing more from that
 * address, and an operator who mistyped waits a minute. `ADMIN_TOKEN` is at least 32 bytes (`checkEnvironment`), so
 * this is the second line, not the first.
 *
 * The table is bounded (`maxAddresses`): expired windows are dropped first, then the oldest, so many addresses cost
 * memory once, not without end.
 */
interface Window {
  readonly since: number
  failures: number
}

export interface Options {
  readonly maxFailures: number
  readonly windowMs: number
  readonly maxAddresses: number
}

export const defaults: Options = { maxFailures: 10, windowMs: 60_000, maxAddresses: 10_000 }

export class AdminAttempts {
  private readonly windows = new Map<string, Window>()
  private readonly options: Options

  constructor(options: Options = defaults) {
    this.options = options
  }

  /** Whole seconds until `address` may try again, or undefined when it may try now. */
  blockedFor(address: string, now: number): number | undefined {
    const window = this.windows.get(address)
    if (window === undefined) return undefined
    const left = window.since + this.options.windowMs - now
    if (left <= 0) {
      this.windows.delete(address)
      return undefined
    }
    return window.failures >= this.options.maxFailures ? Math.ceil(left / 1000) : undefined
  }

  /** Counts a wrong token from `address`. */
  failed(address: string, now: number): void {
    const window = this.windows.get(address)
    if (window !== undefined && now - window.since < this.options.windowMs) {
      window.failures++
      return
    }
    this.windows.delete(address)
    if (this.windows.size >= this.options.maxAddresses) this.evict(now)
    this.windows.set(address, { since: now, failures: 1 })
  }

  get size(): number {
    return this.windows.size
  }

  private evict(now: number): void {
    for (const [address, window] of this.windows) {
      if (now - window.since >= this.options.windowMs) this.windows.delete(address)
    }
    // Still full: the oldest window goes (a Map iterates in insertion order).
    while (this.windows.size >= this.options.maxAddresses) {
      const oldest = this.windows.keys().next()
      if (oldest.done === true) return
      this.windows.delete(oldest.value)
    }
  }
}

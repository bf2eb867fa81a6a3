/**
 * A count of events against a limit per time window, kept in numbers only: counting allocates
 * nothing, so it can sit on the per-frame path.
 *
 * `fixed` windows start at the first event after the previous window ended and reset all at once
 * (the per-socket frame, event and join rates: cheap, and Supabase's own limits are per second).
 * `sliding` windows count the events of the last `windowMs` exactly, from a ring of the last
 * `limit + 1` event times made on the first event (presence calls, where a burst straddling a window
 * edge must not pass twice the limit). The sliding state lives in a subclass so that the three fixed
 * windows every socket holds carry only their four numbers.
 */
export class RateWindow {
  /** Events counted in the current fixed window, including a refused one. */
  count = 0
  readonly limit: number
  readonly windowMs: number
  private start = 0

  protected constructor(limit: number, windowMs: number) {
    this.limit = limit
    this.windowMs = windowMs
  }

  /** A window of `windowMs` that resets once it is over. */
  static fixed(limit: number, windowMs: number): RateWindow {
    return new RateWindow(limit, windowMs)
  }

  /** A window of the last `windowMs` before each event. */
  static sliding(limit: number, windowMs: number): RateWindow {
    return new SlidingWindow(limit, windowMs)
  }

  /** Starts a new fixed window when `now` (Clock millis) is past the current one. */
  roll(now: number): void {
    if (now - this.start >= this.windowMs) {
      this.start = now
      this.count = 0
    }
  }

  /** Counts one event at `now` (Clock millis); false when it is over the limit. */
  hit(now: number): boolean {
    this.roll(now)
    return ++this.count <= this.limit
  }

  /** Counts one event in the current fixed window without rolling it; false when it is over the limit. */
  add(): boolean {
    return ++this.count <= this.limit
  }

  /** Whether the current fixed window has counted more than the limit. */
  get exceeded(): boolean {
    return this.count > this.limit
  }
}

class SlidingWindow extends RateWindow {
  private ring: Float64Array | undefined = undefined
  private next = 0

  override hit(now: number): boolean {
    // Over the limit when the `limit + 1`-th latest event, this one included, is inside the window.
    const ring = (this.ring ??= new Float64Array(this.limit + 1).fill(Number.NEGATIVE_INFINITY))
    ring[this.next] = now
    this.next = (this.next + 1) % ring.length
    return now - ring[this.next]! >= this.windowMs
  }
}

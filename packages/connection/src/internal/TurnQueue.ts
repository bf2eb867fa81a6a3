/**
 * Work done at most `perTurn` items per turn of the event loop, in arrival order; the rest waits for the next turns
 * (`setImmediate`, so the reads and writes of every other socket run in between). A burst (a thousand upgrades at
 * once) then costs the loop a few milliseconds per turn instead of holding it for the whole burst; its total cost is
 * the same. The queue keeps a head index, so a turn costs its own items, not the length of the backlog.
 */
export class TurnQueue<A> {
  #items: Array<A | undefined> = []
  #head = 0
  #scheduled = false
  readonly #perTurn: number
  readonly #handle: (item: A) => void

  constructor(perTurn: number, handle: (item: A) => void) {
    this.#perTurn = perTurn
    this.#handle = handle
  }

  /** Items waiting for their turn. */
  get size(): number {
    return this.#items.length - this.#head
  }

  push(item: A): void {
    this.#items.push(item)
    this.#schedule()
  }

  /** Takes every waiting item out, unhandled (a transport that stops answers them itself); safe from `handle` too. */
  takeAll(): Array<A> {
    const rest = this.#items.slice(this.#head) as Array<A>
    this.#items = []
    this.#head = 0
    return rest
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#run)
  }

  readonly #run = (): void => {
    this.#scheduled = false
    const items = this.#items
    // Items pushed while this turn's run handles others wait for the next turn: the bound holds for re-entry too.
    const end = Math.min(items.length, this.#head + this.#perTurn)
    try {
      // Stops early when `handle` took everything out (`takeAll` replaced the array).
      while (this.#head < end && this.#items === items) {
        const item = items[this.#head] as A
        items[this.#head++] = undefined
        this.#handle(item)
      }
    } finally {
      // Also after a `handle` that threw: the rest of the backlog still gets its turns.
      this.#afterTurn()
    }
  }

  #afterTurn(): void {
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
      return
    }
    // Handled slots are dropped once they are most of the array, so a long burst does not keep them all.
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    this.#schedule()
  }
}

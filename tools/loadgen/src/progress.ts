/** The run's progress on stderr: a redrawn bar on a terminal, a plain line every 10 s when piped to a file or CI log. */

const WIDTH = 30
const PLAIN_EVERY_MS = 10_000

export class Progress {
  readonly #stream: NodeJS.WriteStream
  readonly #totalMs: number
  #lastPlainAt = Number.NEGATIVE_INFINITY

  constructor(stream: NodeJS.WriteStream, totalMs: number) {
    this.#stream = stream
    this.#totalMs = totalMs
  }

  /** The text of the bar at `elapsedMs`; exported through the class for tests. */
  line(elapsedMs: number, detail: string): string {
    const fraction = Math.min(1, Math.max(0, elapsedMs / this.#totalMs))
    const filled = Math.round(fraction * WIDTH)
    return `[${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${(elapsedMs / 1000).toFixed(0)}/${(this.#totalMs / 1000).toFixed(0)} s  ${detail}`
  }

  draw(elapsedMs: number, detail: string): void {
    if (this.#stream.isTTY) {
      this.#stream.write(`\r${this.line(elapsedMs, detail)}\x1b[K`)
    } else if (elapsedMs - this.#lastPlainAt >= PLAIN_EVERY_MS) {
      this.#lastPlainAt = elapsedMs
      this.#stream.write(`${this.line(elapsedMs, detail)}\n`)
    }
  }

  done(detail: string): void {
    const text = this.line(this.#totalMs, detail)
    this.#stream.write(this.#stream.isTTY ? `\r${text}\x1b[K\n` : `${text}\n`)
  }
}

/**
 * Publishes at a fixed rate from one connection. A short timer tick sends however many messages
 * are due by the clock, so the offered rate holds even when timers fire late; if the bench process
 * itself cannot keep up, the achieved rate in the result says so.
 */
import type { Connection } from "./targets/Target.ts"

interface PublishResult {
  readonly firstSeq: number
  readonly published: number
  /** performance.now() of the first and last send. */
  readonly startedAt: number
  readonly endedAt: number
  readonly achievedRate: number
}

export const publishFor = (
  publisher: Connection,
  options: {
    readonly rate: number
    readonly durationMs: number
    readonly firstSeq: number
    readonly payloadBytes: number
  }
): Promise<PublishResult> =>
  new Promise((resolve) => {
    const { rate, durationMs, firstSeq, payloadBytes } = options
    const total = Math.max(1, Math.round((rate * durationMs) / 1000))
    const tickMs = Math.min(10, Math.max(1, Math.floor(1000 / rate)))
    const startedAt = performance.now()
    let sent = 0
    let endedAt = startedAt
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - startedAt) * rate) / 1000) + 1)
      while (sent < due) publisher.publish(firstSeq + sent++, payloadBytes)
      endedAt = performance.now()
      if (sent >= total) {
        clearInterval(timer)
        const seconds = Math.max(durationMs, endedAt - startedAt) / 1000
        resolve({ firstSeq, published: sent, startedAt, endedAt, achievedRate: sent / seconds })
      }
    }
    const timer = setInterval(tick, tickMs)
    tick()
  })

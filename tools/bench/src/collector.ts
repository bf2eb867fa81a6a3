/**
 * Counts and times broadcast deliveries for the current measurement window. Deliveries of messages
 * published before the window (warm-up, earlier steps) are ignored by sequence number. With several
 * gateway processes, `eventsOf(process)` also counts each process's subscribers' deliveries apart.
 */
import { LatencyHistogram } from "./stats.ts"
import type { ConnectionEvents } from "./targets/Target.ts"
import { nowMs } from "./wire.ts"

export class DeliveryCollector implements ConnectionEvents {
  readonly latency = new LatencyHistogram()
  received = 0
  /** Deliveries in the window that were duplicates or out of order on their connection. */
  reordered = 0
  lastReceivedAt = 0
  unexpectedCloses = 0
  firstCloseReason: string | undefined
  /** In-window deliveries per gateway process (index 0 = process 1). */
  readonly receivedByProcess: Array<number> = []
  #fromSeq = Number.POSITIVE_INFINITY

  /** Starts counting deliveries of messages with `seq >= fromSeq`. */
  startWindow(fromSeq: number): void {
    this.latency.reset()
    this.received = 0
    this.reordered = 0
    this.lastReceivedAt = 0
    this.receivedByProcess.fill(0)
    this.#fromSeq = fromSeq
  }

  /** The events of a connection to gateway process `process` (0-based): counted in total and for that process. */
  eventsOf(process: number): ConnectionEvents {
    while (this.receivedByProcess.length <= process) this.receivedByProcess.push(0)
    const byProcess = this.receivedByProcess
    return {
      onDelivery: (sentAt, seq) => {
        if (seq >= this.#fromSeq) byProcess[process]!++
        this.onDelivery(sentAt, seq)
      },
      onReorder: this.onReorder,
      onUnexpectedClose: this.onUnexpectedClose
    }
  }

  readonly onDelivery = (sentAt: number, seq: number): void => {
    if (seq < this.#fromSeq) return
    const now = nowMs()
    this.latency.record(now - sentAt)
    this.received++
    this.lastReceivedAt = now
  }

  readonly onReorder = (seq: number): void => {
    if (seq >= this.#fromSeq) this.reordered++
  }

  readonly onUnexpectedClose = (reason: string): void => {
    this.unexpectedCloses++
    this.firstCloseReason ??= reason
  }
}

/**
 * The bounded, coalescing send queue of one socket.
 *
 * Frames enqueued during one event-loop turn are written to the socket in a single write at the
 * next turn (the `WriteCoalescer`), which is what lets one core fan out hundreds of thousands of
 * frames per second: the cost of a socket write is paid per socket per turn, not per message.
 * The bound counts both the frames still queued here and the bytes the socket has accepted but
 * not sent; a consumer past the bound is closed through `onOverflow` and its frames are dropped,
 * so one slow reader can neither grow memory nor slow the others.
 *
 * Only a backlog closes a socket, never one frame: a frame offered when nothing is queued or
 * unsent is always taken, whatever its size, so a large message to a reader that keeps up is
 * delivered (memory stays below the bound plus one frame). The gateway also refuses limits whose
 * largest frame does not fit the bound twice (`ConnectionConfig.limitProblems`).
 */

/** The socket as the outbox sees it: a byte sink that reports its own backlog. */
export interface Wire {
  write(bytes: Uint8Array): void
  /** Bytes accepted by `write` that the kernel has not taken yet. */
  readonly bufferedBytes: number
}

/** What a coalescer reports after each turn's writes (for metrics); called once per turn. */
interface FlushReport {
  (sockets: number, frames: number, bytes: number, delayMs: number): void
}

/** Runs `flush` of every outbox that received frames, once per event-loop turn. */
export class WriteCoalescer {
  // Two lists used in turn, so a turn allocates no list: the fan-out of 60,000 deliveries/s otherwise promoted
  // megabytes per second of short-lived arrays into the old generation, whose collections stalled delivery.
  private dirty: Array<Outbox> = []
  private spare: Array<Outbox> = []
  private scheduled = false
  private scheduledAt = 0
  /** Frames and bytes written in the current turn, summed by the outboxes. */
  frames = 0
  bytes = 0
  private readonly run = () => {
    const batch = this.dirty
    this.dirty = this.spare
    this.scheduled = false
    this.frames = 0
    this.bytes = 0
    const sockets = batch.length
    for (let i = 0; i < sockets; i++) batch[i]!.flush()
    batch.length = 0
    this.spare = batch
    this.report?.(sockets, this.frames, this.bytes, performance.now() - this.scheduledAt)
  }

  private readonly schedule: (run: () => void) => void
  private readonly report: FlushReport | undefined

  constructor(schedule: (run: () => void) => void = setImmediate, report?: FlushReport) {
    this.schedule = schedule
    this.report = report
  }

  markDirty(outbox: Outbox): void {
    this.dirty.push(outbox)
    if (!this.scheduled) {
      this.scheduled = true
      this.scheduledAt = performance.now()
      this.schedule(this.run)
    }
  }
}

export class Outbox {
  // The first frame of a turn waits in `single`; only a second one in the same turn allocates a list. Most sockets
  // get one frame per turn (many topics, a few messages each), so the common delivery allocates nothing here.
  private single: Uint8Array | undefined
  private more: Array<Uint8Array> | undefined
  private pendingBytes = 0
  private closed = false

  private readonly wire: Wire
  private readonly coalescer: WriteCoalescer
  private readonly limitBytes: number
  private readonly onOverflow: () => void

  constructor(wire: Wire, coalescer: WriteCoalescer, limitBytes: number, onOverflow: () => void) {
    this.wire = wire
    this.coalescer = coalescer
    this.limitBytes = limitBytes
    this.onOverflow = onOverflow
  }

  /** Queues a complete frame. Returns false when the outbox is closed or just overflowed. */
  enqueue(frame: Uint8Array): boolean {
    if (this.closed) return false
    const backlog = this.pendingBytes + this.wire.bufferedBytes
    if (backlog > 0 && backlog + frame.length > this.limitBytes) {
      this.close()
      this.onOverflow()
      return false
    }
    if (this.single === undefined) {
      this.single = frame
      this.coalescer.markDirty(this)
    } else if (this.more === undefined) {
      this.more = [this.single, frame]
    } else {
      this.more.push(frame)
    }
    this.pendingBytes += frame.length
    return true
  }

  /** Writes everything queued as one socket write. */
  flush(): void {
    const single = this.single
    if (single === undefined || this.closed) return
    const more = this.more
    this.single = undefined
    this.more = undefined
    this.coalescer.frames += more === undefined ? 1 : more.length
    this.coalescer.bytes += this.pendingBytes
    const bytes = more === undefined ? single : Buffer.concat(more, this.pendingBytes)
    this.pendingBytes = 0
    this.wire.write(bytes)
  }

  /** Drops what is queued and refuses further frames. */
  close(): void {
    this.closed = true
    this.single = undefined
    this.more = undefined
    this.pendingBytes = 0
  }

  get isClosed(): boolean {
    return this.closed
  }
}

/**
 * The actor's mail scheduling, kept apart from what the mail means. The actor extends this class rather
 * than holding a mailbox object: a connection's state stays one object, which the idle-socket memory
 * figure counts.
 *
 * No fiber exists while the mailbox is empty. `offer` to an idle mailbox starts one run that handles the
 * mail in order until none is left, then ends; at most one run exists at a time, which is what orders the
 * mail. Past `capacity` queued frames the socket stops being read until a run has worked the queue down to
 * half of it. A failure in a run is handed to `fail` there, and the run ends. `settle` runs whenever the queue
 * has been worked through, before the run may end: work a handler deferred to handle a run of mail together.
 */
import { Cause, type Context, Effect, type Fiber } from "effect"

/** The socket's reading, as the mailbox throttles it. */
export interface Reader {
  pauseReading(): void
  resumeReading(): void
}

export abstract class Mailbox<M extends { readonly _tag: string }, R> {
  /** Set once the actor is done with its socket: the run stops before the next mail, and the mailbox finishes. */
  protected ended = false
  private queue: Array<M> = []
  private processing: Fiber.Fiber<void> | undefined = undefined
  private running = false
  private paused = false
  private finished = false
  private stopped = false

  /** What a run is given to handle mail with. */
  protected abstract readonly context: Context.Context<R>
  protected abstract readonly reader: Reader
  /** Queued frames before the socket stops being read. */
  protected abstract readonly capacity: number
  protected abstract handle(mail: M): Effect.Effect<void, never, R>
  /** Called with a run's failure (not its interruption); the run ends after it. */
  protected abstract fail(cause: Cause.Cause<unknown>): Effect.Effect<void>
  /** Called once when the mailbox has finished (the actor ended or released). */
  protected abstract onFinish(): void
  /** Runs each time the queue is empty, before the run may end; mail that arrives meanwhile is handled after it. */
  protected abstract settle(): Effect.Effect<void, never, R>

  /** Mail waiting to be handled. */
  protected get queued(): number {
    return this.queue.length
  }

  offer(mail: M): void {
    if (this.finished || this.stopped) return
    this.queue.push(mail)
    if (!this.paused && mail._tag === "Frame" && this.queue.length >= this.capacity) {
      this.paused = true
      this.reader.pauseReading()
    }
    if (!this.running) this.startProcessing()
  }

  /** Interrupts a run in flight and takes no more mail; used when the connection scope closes. */
  stop(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.stopped = true
      this.processing?.interruptUnsafe()
    })
  }

  /** Drops the mail left and reports the end, once. */
  protected finish(): void {
    if (this.finished) return
    this.finished = true
    this.queue = []
    this.onFinish()
  }

  private startProcessing(): void {
    this.running = true
    // The run may complete synchronously inside runForkWith; only a run still going is kept.
    const fiber = Effect.runForkWith(this.context)(this.drain())
    if (this.running) this.processing = fiber
  }

  private drain(): Effect.Effect<void, never, R> {
    const self = this
    return Effect.gen(function*() {
      while (self.queue.length > 0 && !self.ended) {
        const batch = self.queue
        self.queue = []
        for (const mail of batch) {
          if (self.ended) break
          yield* self.handle(mail)
        }
        if (self.paused && self.queue.length < self.capacity / 2) {
          self.paused = false
          self.reader.resumeReading()
        }
        if (self.queue.length === 0 && !self.ended) yield* self.settle()
      }
    }).pipe(
      Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : self.fail(cause)),
      Effect.ensuring(Effect.sync(() => {
        self.processing = undefined
        self.running = false
        if (self.stopped) return
        if (self.ended) self.finish()
        // Mail that arrived after the loop's last check but before this point starts a new run.
        else if (self.queue.length > 0) self.startProcessing()
      }))
    )
  }
}

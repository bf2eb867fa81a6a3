/**
 * The primary of `WORKERS` > 1: it serves nothing itself, it runs that many gateway processes (workers) on one port
 * and keeps them running.
 *
 * Each worker is `main.ts` again, with `WEDSYNC_WORKER_ID` set, listening on the same port with `SO_REUSEPORT`: the
 * kernel spreads new connections over the listening workers, and no socket passes through the primary (Node's
 * `cluster` hands accepted sockets over from the primary instead; with `reusePort` there is nothing to hand over, the
 * primary's event loop carries no traffic, and a worker is an ordinary process with its own metrics and drain).
 *
 * - Start: every worker must report that it listens (IPC); one that exits first fails the start, the others are
 *   stopped and the primary exits with that worker's code (78 for invalid configuration, 1 otherwise).
 * - A worker that exits later, whatever the code, is started again after a pause that doubles with each quick exit
 *   (`restartDelayMs`), unless the primary is stopping.
 * - SIGTERM/SIGINT (the primary's scope closing): every worker gets SIGTERM, the primary waits for their drains and
 *   exits 0. A second signal is passed on as well (`forwardSignal`): workers exit at once.
 * - Workers run in their own process group, so a terminal's Ctrl-C reaches them once, through the primary; a worker
 *   whose primary is gone (its IPC channel closes) drains and exits by itself.
 */
import { Clock, Data, Deferred, Effect, Fiber, Runtime, Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { WORKER_ID_VARIABLE } from "./GatewayConfig.ts"

/** The message a worker sends its primary once it listens. */
export interface ListeningMessage {
  readonly type: "listening"
  readonly port: number
}

export const isListeningMessage = (message: unknown): message is ListeningMessage =>
  typeof message === "object" && message !== null && "type" in message && message.type === "listening" &&
  "port" in message && typeof message.port === "number"

/** A worker that ran at least this long counts as healthy: its next restart starts the backoff over. */
const STABLE_RUN_MS = 30_000
const FIRST_RESTART_DELAY_MS = 250
const MAX_RESTART_DELAY_MS = 30_000

/** Pause before restart `attempt` (1-based) of a worker that keeps exiting quickly. */
export const restartDelayMs = (attempt: number): number =>
  Math.min(MAX_RESTART_DELAY_MS, FIRST_RESTART_DELAY_MS * 2 ** Math.min(attempt - 1, 20))

/** A worker exited before it listened, while the workers were first started. */
class WorkerStartFailed extends Data.TaggedError("WorkerStartFailed")<{
  readonly worker: number
  readonly code: number
}> {
  // The worker printed why; the primary's own line says which worker.
  override readonly [Runtime.errorReported] = false
  override get [Runtime.errorExitCode](): number {
    return this.code === 0 ? 1 : this.code
  }
  override get message(): string {
    return `worker ${this.worker} exited with ${this.code} before it listened; stopping the others`
  }
}

export interface PrimaryOptions {
  readonly workers: number
  readonly host: string
  /** 0: a free port is chosen once, so that every worker listens on the same one. */
  readonly port: number
  /** The worker's entry (`main.ts`) and Node flags (the primary's own `execArgv`). */
  readonly entry: string
  readonly execArgv: ReadonlyArray<string>
}

const live = new Set<ChildProcess>()

/** Passes a signal on to every running worker (a second SIGTERM: they exit without finishing their drain). */
export const forwardSignal = (signal: NodeJS.Signals): void => {
  for (const child of live) child.kill(signal)
}

/** A free port on `host`, taken with `SO_REUSEPORT` and released, for the workers to share. */
const choosePort = (host: string) =>
  Effect.callback<number>((resume) => {
    const probe = createServer()
    probe.once("error", (cause) => resume(Effect.die(cause)))
    probe.listen({ host, port: 0, reusePort: true }, () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resume(Effect.succeed(port)))
    })
  })

interface Exited {
  readonly code: number
  readonly description: string
}

/**
 * Runs worker `id` until it exits, resolving `listening` when it reports that it listens. Interrupted (the primary is
 * stopping), it sends the worker SIGTERM and waits for it to exit, however long its drain takes.
 */
const runWorker = (
  id: number,
  options: PrimaryOptions,
  port: number,
  listening: Deferred.Deferred<void>
): Effect.Effect<Exited> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [...options.execArgv, options.entry], {
        env: { ...process.env, [WORKER_ID_VARIABLE]: String(id), PORT: String(port) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
        detached: true
      })
      live.add(child)
      const exited = new Promise<Exited>((resolve) => {
        child.once("exit", (code, signal) => {
          live.delete(child)
          resolve({
            code: code ?? 1,
            description: signal === null ? `with code ${code}` : `on ${signal}`
          })
        })
        // A process that could not be spawned at all (no `exit` follows). `on`, not `once`: a running worker can emit
        // `error` more than once (a failed kill or IPC send), and an `error` with no listener would throw in the primary.
        child.on("error", (error) => {
          if (child.pid !== undefined) return
          live.delete(child)
          resolve({ code: 1, description: `without starting (${error.message})` })
        })
      })
      child.on("message", (message) => {
        if (isListeningMessage(message)) Deferred.doneUnsafe(listening, Effect.void)
      })
      return { child, exited }
    }),
    ({ child, exited }) =>
      Effect.gen(function*() {
        yield* Effect.logInfo(`worker ${id} started (pid ${child.pid})`)
        return yield* Effect.promise(() => exited)
      }),
    ({ child, exited }, exit) =>
      exit._tag === "Success" ? Effect.void : Effect.sync(() => child.kill("SIGTERM")).pipe(
        Effect.andThen(Effect.promise(() => exited)),
        Effect.flatMap((result) => Effect.logInfo(`worker ${id} stopped ${result.description}`))
      )
  )

/** Keeps worker `id` running: restarts it with backoff whenever it exits, failing only if its first start does. */
const superviseWorker = (
  id: number,
  options: PrimaryOptions,
  port: number,
  started: Deferred.Deferred<void, WorkerStartFailed>
) =>
  Effect.gen(function*() {
    let quickExits = 0
    let first = true
    while (true) {
      const listening = yield* Deferred.make<void>()
      const startedAt = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.forkChild(runWorker(id, options, port, listening))
      const exited = yield* Effect.gen(function*() {
        if (first) {
          // The first start: listening, or an exit before it, decides whether the primary starts at all.
          const early = yield* Effect.raceFirst(Effect.as(Deferred.await(listening), undefined), Fiber.join(fiber))
          if (early !== undefined) {
            const failure = new WorkerStartFailed({ worker: id, code: early.code })
            yield* Effect.logError(failure.message)
            yield* Deferred.fail(started, failure)
            return undefined
          }
          yield* Deferred.succeed(started, undefined)
          first = false
        }
        return yield* Fiber.join(fiber)
      }).pipe(
        // Stopping: the worker's own fiber sends it SIGTERM and waits for its drain; wait for that too.
        Effect.onInterrupt(() => Fiber.interrupt(fiber))
      )
      if (exited === undefined) return
      const ranMs = (yield* Clock.currentTimeMillis) - startedAt
      quickExits = ranMs >= STABLE_RUN_MS ? 1 : quickExits + 1
      const delay = restartDelayMs(quickExits)
      yield* Effect.logWarning(`worker ${id} exited ${exited.description}; starting it again in ${delay} ms`)
      yield* Effect.sleep(delay)
    }
  })

/** Runs the workers until the scope closes (a signal), then waits for every worker's drain. */
export const run = (options: PrimaryOptions): Effect.Effect<void, WorkerStartFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const port = options.port === 0 ? yield* choosePort(options.host) : options.port
    const ids = Array.from({ length: options.workers }, (_, i) => i + 1)
    const supervisors: Array<Fiber.Fiber<void>> = []
    // All at once: each stop waits for that worker's drain, and the drains run side by side.
    yield* Effect.addFinalizer(() => Fiber.interruptAll(supervisors))
    const starts = yield* Effect.forEach(ids, (id) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void, WorkerStartFailed>()
        supervisors.push(yield* Effect.forkDetach(superviseWorker(id, options, port, started)))
        return started
      }))
    yield* Effect.forEach(starts, Deferred.await, { discard: true })
    yield* Effect.logInfo(`${options.workers} workers listening on http://${options.host}:${port}`)
    return yield* Effect.never
  })

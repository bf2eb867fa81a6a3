/**
 * The gateway process. SIGTERM or SIGINT interrupts the launched layer, which drains (see GatewayLayer) and exits 0:
 * a drain asked for by a signal is the normal way to stop, not a failure. A second signal during the drain exits at
 * once with 1 (an operator who asks twice wants the process gone). A failure to start exits 1, or 78 for invalid
 * configuration (reported by GatewayConfig.checkEnvironment).
 *
 * With `WORKERS` > 1 this process is the primary (Primary.ts): it starts that many workers, each this file again with
 * `WEDSYNC_WORKER_ID` set, and passes signals on to them. A worker tells its primary when it listens, and drains and
 * exits when its primary is gone.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Config, Effect, Exit, Layer, Option, Runtime } from "effect"
import { checkEnvironment, GatewayConfig, logConfig, WORKER_ID_VARIABLE, workersConfig } from "./GatewayConfig.ts"
import * as GatewayLayer from "./GatewayLayer.ts"
import * as Primary from "./Primary.ts"
import { fileURLToPath } from "node:url"

/** Exit code of a stop forced by a second signal during the drain. */
const FORCED_EXIT_CODE = 1

let signals = 0
const onSignal = (signal: NodeJS.Signals) => {
  if (++signals < 2) return
  process.stderr.write(`${signal} received again during the drain: exiting now\n`)
  Primary.forwardSignal(signal)
  process.exit(FORCED_EXIT_CODE)
}
process.on("SIGTERM", onSignal)
process.on("SIGINT", onSignal)

const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/** A worker reports to its primary that it listens, and treats the primary's disappearance as a SIGTERM. */
const WorkerLink = Layer.effectDiscard(
  Effect.gen(function*() {
    const { port } = yield* GatewayLayer.NodeServer
    if (process.send === undefined) return
    const listening: Primary.ListeningMessage = { type: "listening", port }
    process.send(listening)
    process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))
  })
)

const gateway = Layer.launch(WorkerLink.pipe(Layer.provide(GatewayLayer.fromEnv)))

const primary = (workers: number) =>
  Effect.gen(function*() {
    const { host, port } = yield* GatewayConfig
    yield* Primary.run({
      workers,
      host,
      port,
      entry: fileURLToPath(import.meta.url),
      execArgv: process.execArgv
    }).pipe(Effect.scoped)
  }).pipe(
    Effect.provide(GatewayConfig.layerConfig),
    Effect.provide(
      Layer.unwrap(Effect.map(logConfig, (options) => GatewayLayer.loggingLayer(options, { primary: true })))
    )
  )

const program = Effect.gen(function*() {
  const isWorker = Option.isSome(yield* Config.option(Config.String(WORKER_ID_VARIABLE)))
  const workers = yield* Effect.orDie(workersConfig)
  if (isWorker || workers <= 1) return yield* gateway
  // The environment is checked once here, so a mistake is reported once rather than by every worker.
  yield* checkEnvironment
  return yield* primary(workers)
})

program.pipe((main) => NodeRuntime.runMain(main, { teardown }))

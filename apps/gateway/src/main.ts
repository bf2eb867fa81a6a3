/**
 * The gateway process. SIGTERM or SIGINT interrupts the launched layer, which drains (see GatewayLayer) and exits 0:
 * a drain asked for by a signal is the normal way to stop, not a failure. A second signal during the drain exits at
 * once with 1 (an operator who asks twice wants the process gone). A failure to start exits 1, or 78 for invalid
 * configuration (reported by GatewayLayer.fromEnv).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Exit, Layer, Runtime } from "effect"
import * as GatewayLayer from "./GatewayLayer.ts"

/** Exit code of a stop forced by a second signal during the drain. */
const FORCED_EXIT_CODE = 1

let signals = 0
const onSignal = (signal: NodeJS.Signals) => {
  if (++signals < 2) return
  process.stderr.write(`${signal} received again during the drain: exiting now\n`)
  process.exit(FORCED_EXIT_CODE)
}
process.on("SIGTERM", onSignal)
process.on("SIGINT", onSignal)

const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

GatewayLayer.fromEnv.pipe(Layer.launch, (program) => NodeRuntime.runMain(program, { teardown }))

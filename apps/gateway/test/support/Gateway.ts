/**
 * Runs a real gateway in the test process on an ephemeral loopback port, built from the same
 * `GatewayLayer.make` as production with explicit options instead of the environment.
 */
import { Effect, ManagedRuntime } from "effect"
import * as GatewayLayer from "../../src/GatewayLayer.ts"

export interface RunningGateway {
  readonly url: string
  readonly wsUrl: string
  readonly port: number
  readonly stop: () => Promise<void>
}

export const startGateway = async (
  overrides: Parameters<typeof GatewayLayer.layerTest>[0] = {}
): Promise<RunningGateway> => {
  const runtime = ManagedRuntime.make(GatewayLayer.layerTest(overrides))
  const { port } = await runtime.runPromise(Effect.gen(function*() {
    return yield* GatewayLayer.NodeServer
  }))
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/realtime/v1/websocket`,
    stop: () => runtime.dispose()
  }
}

/**
 * The timeline worker process: the pool and the worker from the environment (`SUPABASE_URL`,
 * `SUPABASE_SERVICE_ROLE_KEY`, `UPSTREAM_*`, `TIMELINE_*`), running until SIGTERM/SIGINT, which closes every upstream
 * channel and socket.
 */
import { NodeRuntime } from "@effect/platform-node"
import { UpstreamPool } from "@wedsync/upstream"
import { Layer, Logger } from "effect"
import { TimelineWorker } from "./TimelineWorker.ts"
import { WorkerConfig } from "./WorkerConfig.ts"

const main = TimelineWorker.layer.pipe(
  Layer.provide(UpstreamPool.UpstreamPool.layerConfig),
  Layer.provide(WorkerConfig.layerConfig),
  Layer.provide(Logger.layer([Logger.consoleJson]))
)

NodeRuntime.runMain(Layer.launch(main))

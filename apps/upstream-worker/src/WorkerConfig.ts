/**
 * What the timeline worker watches. The upstream itself (`SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY`, `UPSTREAM_*`) is
 * read by `UpstreamPool.layerConfig`, as in the gateway.
 */
import { Config, Context, Layer } from "effect"

export interface WorkerOptions {
  /** Schema and table of the timeline rows (`wedding_id`, `title`, …). */
  readonly schema: string
  readonly table: string
  /** Weddings whose channels are joined (pre-warmed) at start, ahead of their day. */
  readonly weddings: ReadonlyArray<string>
}

export const config: Config.Config<WorkerOptions> = Config.all({
  schema: Config.String("TIMELINE_SCHEMA").pipe(Config.withDefault("public")),
  table: Config.String("TIMELINE_TABLE").pipe(Config.withDefault("timeline_items")),
  weddings: Config.String("TIMELINE_WEDDINGS").pipe(
    Config.withDefault(""),
    Config.map((list) => list.split(",").map((id) => id.trim()).filter((id) => id !== ""))
  )
})

export class WorkerConfig extends Context.Service<WorkerConfig, WorkerOptions>()(
  "@wedsync/upstream-worker/WorkerConfig"
) {
  static readonly layer = (options: WorkerOptions): Layer.Layer<WorkerConfig> => Layer.succeed(WorkerConfig, options)
  static readonly layerConfig: Layer.Layer<WorkerConfig, Config.ConfigError> = Layer.effect(WorkerConfig, config)
}

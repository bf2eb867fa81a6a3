/** Where and how to read changes. Built from the environment only in apps/gateway. */
import { Config, Context, Layer, Redacted } from "effect"

export interface ChangesOptions {
  readonly databaseUrl: Redacted.Redacted<string>
  /** Permanent logical slot; created when missing and kept, so a restart resumes from it. */
  readonly slotName: string
  /** Publication read by the slot; created (FOR ALL TABLES, or for `tables`) when missing. */
  readonly publicationName: string
  readonly tables: ReadonlyArray<string> | "all"
  /**
   * How long a starting gateway waits before it consumes the slot. Clients of a restarted gateway
   * reconnect within seconds; changes committed meanwhile stay in the slot until then, so those
   * clients receive them instead of missing them. Clients that rejoin later still miss them.
   */
  readonly startDelayMs: number
  /**
   * How often the acknowledged position is reported to Postgres even when nothing new was consumed
   * (pg_recvlogical's `--status-interval`). Optional so callers that build options by hand keep
   * compiling; `Replication` uses 10 s when it is absent.
   */
  readonly statusIntervalMs?: number | undefined
}

/** Everything but the database, which has no default. */
export const defaults: Omit<ChangesOptions, "databaseUrl"> = {
  slotName: "wedsync_realtime",
  publicationName: "wedsync_realtime",
  tables: "all",
  startDelayMs: 5_000,
  statusIntervalMs: 10_000
}

/**
 * `DATABASE_URL` (required here), `REPLICATION_SLOT`, `REPLICATION_PUBLICATION`, `REPLICATION_TABLES` (comma list),
 * `REPLICATION_START_DELAY_MS` (default 5000). The status interval is not configurable here (10 s).
 */
export const config: Config.Config<ChangesOptions> = Config.all({
  databaseUrl: Config.Redacted("DATABASE_URL"),
  slotName: Config.String("REPLICATION_SLOT").pipe(Config.withDefault(defaults.slotName)),
  publicationName: Config.String("REPLICATION_PUBLICATION").pipe(Config.withDefault(defaults.publicationName)),
  tables: Config.String("REPLICATION_TABLES").pipe(
    Config.withDefault(""),
    Config.map((list): ReadonlyArray<string> | "all" => {
      const tables = list.split(",").map((t) => t.trim()).filter((t) => t !== "")
      return tables.length === 0 ? "all" : tables
    })
  ),
  startDelayMs: Config.Int("REPLICATION_START_DELAY_MS").pipe(Config.withDefault(defaults.startDelayMs)),
  statusIntervalMs: Config.succeed(defaults.statusIntervalMs)
})

export class ChangesConfig extends Context.Service<ChangesConfig, ChangesOptions>()("@wedsync/changes/ChangesConfig") {
  /** `defaults` overridden by `options`; the database is always given. */
  static readonly layer = (
    options: Partial<ChangesOptions> & Pick<ChangesOptions, "databaseUrl">
  ): Layer.Layer<ChangesConfig> => Layer.succeed(ChangesConfig, { ...defaults, ...options })

  /** `config`, read through the current `ConfigProvider`. */
  static readonly layerConfig: Layer.Layer<ChangesConfig, Config.ConfigError> = Layer.effect(ChangesConfig, config)
}

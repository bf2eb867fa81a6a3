/** Where and how to read changes. Built from the environment only in apps/gateway. */
import { Config, Context, Layer, Redacted } from "effect"

export interface ChangesOptions {
  readonly databaseUrl: Redacted.Redacted<string>
  /** Permanent logical slot; created when missing and kept, so a restart resumes from it. */
  readonly slotName: string
  /** Publication read by the slot; created (FOR ALL TABLES, or for `tables`) when missing. */
  readonly publicationName: string
  readonly tables: ReadonlyArray<string> | "all"
}

export class ChangesConfig extends Context.Service<ChangesConfig, ChangesOptions>()("@wedsync/changes/ChangesConfig") {
  static readonly layer = (options: Partial<ChangesOptions> & Pick<ChangesOptions, "databaseUrl">): Layer.Layer<ChangesConfig> =>
    Layer.succeed(ChangesConfig, { slotName: "wedsync_realtime", publicationName: "wedsync_realtime", tables: "all", ...options })
}

/** `DATABASE_URL` (required here), `REPLICATION_SLOT`, `REPLICATION_PUBLICATION`, `REPLICATION_TABLES` (comma list). */
export const config: Config.Config<ChangesOptions> = Config.all({
  databaseUrl: Config.Redacted("DATABASE_URL"),
  slotName: Config.String("REPLICATION_SLOT").pipe(Config.withDefault("wedsync_realtime")),
  publicationName: Config.String("REPLICATION_PUBLICATION").pipe(Config.withDefault("wedsync_realtime")),
  tables: Config.String("REPLICATION_TABLES").pipe(
    Config.withDefault(""),
    Config.map((list): ReadonlyArray<string> | "all" => {
      const tables = list.split(",").map((t) => t.trim()).filter((t) => t !== "")
      return tables.length === 0 ? "all" : tables
    })
  )
})

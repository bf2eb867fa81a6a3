/** Failures of the change source. Postgres being away is expected in a gateway, so it is typed. */
import { Schema } from "effect"

export class PostgresUnavailable extends Schema.TaggedError<PostgresUnavailable>()("PostgresUnavailable", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

export class ChangesError extends Schema.TaggedError<ChangesError>()("ChangesError", { reason: PostgresUnavailable }) {
  override get message(): string {
    return this.reason.message
  }
}

export const unavailable = (what: string, cause: unknown) =>
  new ChangesError({ reason: new PostgresUnavailable({ message: `${what}: ${String(cause)}`, cause }) })

/**
 * Failures of the change source. Postgres being away is expected in a gateway, so every reason is typed
 * rather than a defect; `Replication.run` retries them itself, so they surface only from building the layer
 * and from `Replication.relation`.
 */
import { Schema } from "effect"

/** Postgres could not be reached or a catalog query failed. */
class PostgresUnavailable extends Schema.TaggedError<PostgresUnavailable>()("PostgresUnavailable", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

/** The replication slot could not be created or used, or the stream broke off. */
class ReplicationFailed extends Schema.TaggedError<ReplicationFailed>()("ReplicationFailed", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

/** The publication does not exist and could not be created (for example a listed table does not exist). */
class PublicationMissing extends Schema.TaggedError<PublicationMissing>()("PublicationMissing", {
  message: Schema.String,
  publication: Schema.String,
  cause: Schema.Unknown
}) {}

export class ChangesError extends Schema.TaggedError<ChangesError>()("ChangesError", {
  reason: Schema.Union([PostgresUnavailable, ReplicationFailed, PublicationMissing])
}) {
  override get message(): string {
    return this.reason.message
  }
}

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** `PostgresUnavailable`, with what was being done. */
export const unavailable = (what: string, cause: unknown): ChangesError =>
  new ChangesError({ reason: new PostgresUnavailable({ message: `${what}: ${describe(cause)}`, cause }) })

/** `ReplicationFailed`, with what was being done. */
export const replicationFailed = (what: string, cause: unknown): ChangesError =>
  new ChangesError({ reason: new ReplicationFailed({ message: `${what}: ${describe(cause)}`, cause }) })

/** `PublicationMissing` for `publication`. */
export const publicationMissing = (publication: string, cause: unknown): ChangesError =>
  new ChangesError({
    reason: new PublicationMissing({
      message: `Publication ${publication} does not exist and could not be created: ${describe(cause)}`,
      publication,
      cause
    })
  })

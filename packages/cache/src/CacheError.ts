/**
 * Failures of the shared store and the invalidation bus. A store that is down is expected in a gateway, so these are
 * typed; `LayeredCache` absorbs every one of them (reads fall back, writes are dropped and counted) and never hands
 * them to its callers.
 */
import { Schema } from "effect"

/** The store or the bus could not be reached, or refused the command. */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  reason: Schema.Union([StoreUnavailable])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/** `StoreUnavailable`, with what was being done. */
export const unavailable = (what: string, cause: unknown): CacheError =>
  new CacheError({
    reason: new StoreUnavailable({
      message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`,
      cause
    })
  })

/**
 * Failures of the Redis client. Redis being away or slow is expected in a gateway, so every reason is typed rather
 * than a defect: callers decide whether to fall back (the cache serves L1), retry or give up. No message carries the
 * password of the URL or a value read from Redis.
 */
import { Schema } from "effect"

/** Redis could not be reached, or the connection is down (the client is reconnecting on its own). */
export class RedisUnavailable extends Schema.TaggedError<RedisUnavailable>()("RedisUnavailable", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

/** Redis did not answer within the command timeout. The command may still have run on the server. */
export class RedisTimeout extends Schema.TaggedError<RedisTimeout>()("RedisTimeout", {
  message: Schema.String,
  timeoutMs: Schema.Number
}) {}

/** Redis answered with an error (wrong type, unknown command, script error, …). */
export class RedisCommandFailed extends Schema.TaggedError<RedisCommandFailed>()("RedisCommandFailed", {
  message: Schema.String,
  cause: Schema.Unknown
}) {}

/** `REDIS_URL` or `REDIS_PREFIX` cannot be used; the message says why and what is expected. */
export class RedisConfigInvalid extends Schema.TaggedError<RedisConfigInvalid>()("RedisConfigInvalid", {
  message: Schema.String
}) {}

export const RedisErrorReason = Schema.Union([RedisUnavailable, RedisTimeout, RedisCommandFailed, RedisConfigInvalid])
export type RedisErrorReason = typeof RedisErrorReason.Type

export class RedisError extends Schema.TaggedError<RedisError>()("RedisError", {
  reason: RedisErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** `RedisUnavailable`, with what was being done. */
export const unavailable = (what: string, cause: unknown): RedisError =>
  new RedisError({ reason: new RedisUnavailable({ message: `${what}: ${describe(cause)}`, cause }) })

/** `RedisTimeout` for `what`. */
export const timeout = (what: string, timeoutMs: number): RedisError =>
  new RedisError({
    reason: new RedisTimeout({ message: `${what}: no answer from Redis within ${timeoutMs} ms`, timeoutMs })
  })

/** `RedisCommandFailed`, with the server's reply. */
export const commandFailed = (what: string, cause: unknown): RedisError =>
  new RedisError({ reason: new RedisCommandFailed({ message: `${what}: ${describe(cause)}`, cause }) })

/** `RedisConfigInvalid` with the whole explanation. */
export const configInvalid = (message: string): RedisError =>
  new RedisError({ reason: new RedisConfigInvalid({ message }) })

/**
 * Classifies an ioredis rejection: a server reply error is `RedisCommandFailed`, ioredis's own command timeout is
 * `RedisTimeout`, anything else (closed connection, refused connect, offline queue disabled) is `RedisUnavailable`.
 */
export const fromIoredis = (what: string, cause: unknown, timeoutMs: number): RedisError => {
  if (cause instanceof Error) {
    if (cause.name === "ReplyError") return commandFailed(what, cause)
    if (cause.message === "Command timed out") return timeout(what, timeoutMs)
  }
  return unavailable(what, cause)
}

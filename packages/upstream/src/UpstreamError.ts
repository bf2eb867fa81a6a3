/**
 * Failures of the upstream pool. An upstream that refuses a join, answers late or is away is expected, so every
 * reason is typed: a batch reports them per item, the gateway turns them into its own refusals. No message carries the
 * service-role key.
 */
import { Schema } from "effect"

/** The upstream answered the join with an error (its policy, an unknown topic, a bad binding…). */
export class JoinRefused extends Schema.TaggedError<JoinRefused>()("JoinRefused", {
  message: Schema.String,
  topic: Schema.String
}) {}

/** The upstream did not answer the join within the join timeout (it may be away: the socket keeps reconnecting). */
export class JoinTimeout extends Schema.TaggedError<JoinTimeout>()("JoinTimeout", {
  message: Schema.String,
  topic: Schema.String
}) {}

/** Every socket the pool may open (`maxSockets`) already holds `channelsPerSocket` channels. */
export class PoolExhausted extends Schema.TaggedError<PoolExhausted>()("PoolExhausted", {
  message: Schema.String
}) {}

/** A message could not be handed to the upstream (the channel is not joined, or the socket refused it). */
export class SendFailed extends Schema.TaggedError<SendFailed>()("SendFailed", {
  message: Schema.String,
  topic: Schema.String
}) {}

export const UpstreamErrorReason = Schema.Union([JoinRefused, JoinTimeout, PoolExhausted, SendFailed])
export type UpstreamErrorReason = typeof UpstreamErrorReason.Type

export class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  reason: UpstreamErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}

export const joinRefused = (topic: string, why: string): UpstreamError =>
  new UpstreamError({ reason: new JoinRefused({ message: `upstream refused ${topic}: ${why}`, topic }) })

export const joinTimeout = (topic: string, timeoutMs: number): UpstreamError =>
  new UpstreamError({
    reason: new JoinTimeout({ message: `upstream did not answer the join of ${topic} within ${timeoutMs} ms`, topic })
  })

export const poolExhausted = (maxSockets: number, channelsPerSocket: number): UpstreamError =>
  new UpstreamError({
    reason: new PoolExhausted({
      message: `all ${maxSockets} upstream sockets hold ${channelsPerSocket} channels (UPSTREAM_MAX_SOCKETS)`
    })
  })

export const sendFailed = (topic: string, why: string): UpstreamError =>
  new UpstreamError({ reason: new SendFailed({ message: `upstream send on ${topic} failed: ${why}`, topic }) })

/**
 * Why a connection or one of its channels was refused or closed. Tags that reach the wire equal
 * the Supabase error codes; `ErrorReply` is the one place that turns them into replies, HTTP
 * statuses and close codes.
 */
import { Schema } from "effect"
import { reason } from "./internal/reason.ts"

export class TopicNameRequired extends reason("TopicNameRequired") {}
export class UnmatchedTopic extends reason("UnmatchedTopic") {}
export class ChannelRateLimitReached extends reason("ChannelRateLimitReached") {}
export class ClientJoinRateLimitReached extends reason("ClientJoinRateLimitReached") {}
export class ConnectionRateLimitReached extends reason("ConnectionRateLimitReached") {}
export class RealtimeRestarting extends reason("RealtimeRestarting") {}
export class OutboxOverflow extends reason("OutboxOverflow") {}
export class HeartbeatTimeout extends reason("HeartbeatTimeout") {}
export class PayloadTooLarge extends reason("PayloadTooLarge") {}
export class EventRateLimitReached extends reason("EventRateLimitReached") {}
export class PresenceRateLimitReached extends reason("PresenceRateLimitReached") {}
export class TooManyPresenceKeys extends reason("TooManyPresenceKeys") {}
export class PresenceStateTooLarge extends reason("PresenceStateTooLarge") {}
export class InvalidJoinPayload extends reason("InvalidJoinPayload") {}
export class BindingLimitReached extends reason("BindingLimitReached") {}
export class FrameRateLimitReached extends reason("FrameRateLimitReached") {}
export class PayloadTooDeep extends reason("PayloadTooDeep") {}
export class InvalidPresencePayload extends reason("InvalidPresencePayload") {}
export class UnknownPresenceEvent extends reason("UnknownPresenceEvent") {}
export class TrackPayloadTooLarge extends reason("TrackPayloadTooLarge") {}
export class TokenExpired extends reason("TokenExpired") {}
export class FieldTooLong extends reason("FieldTooLong") {}
export class UnableToReplayMessages extends reason("UnableToReplayMessages") {}

export type Reason =
  | TopicNameRequired
  | UnmatchedTopic
  | ChannelRateLimitReached
  | ClientJoinRateLimitReached
  | ConnectionRateLimitReached
  | RealtimeRestarting
  | OutboxOverflow
  | HeartbeatTimeout
  | PayloadTooLarge
  | EventRateLimitReached
  | PresenceRateLimitReached
  | TooManyPresenceKeys
  | PresenceStateTooLarge
  | InvalidJoinPayload
  | BindingLimitReached
  | FrameRateLimitReached
  | PayloadTooDeep
  | InvalidPresencePayload
  | UnknownPresenceEvent
  | TrackPayloadTooLarge
  | TokenExpired
  | FieldTooLong
  | UnableToReplayMessages

export class ConnectionError extends Schema.TaggedError<ConnectionError>()("ConnectionError", {
  reason: Schema.Union([
    TopicNameRequired,
    UnmatchedTopic,
    ChannelRateLimitReached,
    ClientJoinRateLimitReached,
    ConnectionRateLimitReached,
    RealtimeRestarting,
    OutboxOverflow,
    HeartbeatTimeout,
    PayloadTooLarge,
    EventRateLimitReached,
    PresenceRateLimitReached,
    TooManyPresenceKeys,
    PresenceStateTooLarge,
    InvalidJoinPayload,
    BindingLimitReached,
    FrameRateLimitReached,
    PayloadTooDeep,
    InvalidPresencePayload,
    UnknownPresenceEvent,
    TrackPayloadTooLarge,
    TokenExpired,
    FieldTooLong,
    UnableToReplayMessages
  ])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/** `replay` on a public channel: history is kept for private channels only (Supabase's text). */
export const replayOnPublicChannel = () =>
  new UnableToReplayMessages({ message: "Replay is not allowed for public channels" })
/** `replay` without an integer `since` or with a `limit` that is not an integer >= 1 (Supabase's text). */
export const replayParamsInvalid = () => new UnableToReplayMessages({ message: "Replay params are not valid" })
/** The history could not be read (Redis down or timed out); Supabase's text. */
export const replayFailed = () => new UnableToReplayMessages({ message: "Realtime was unable to replay messages" })
/** A push or binary broadcast on a topic this socket has not joined; Phoenix's own text. */
export const unmatchedTopic = () => new UnmatchedTopic({ message: "unmatched topic" })
/** A broadcast payload over `maxPayloadBytes` (socket and REST; each answers it in Supabase's form, see ErrorReply). */
export const payloadTooLarge = () => new PayloadTooLarge({ message: "Payload size exceeds tenant limit" })
/** Topic, event or metadata longer than the 255 bytes a binary broadcast's length fields can carry. */
export const fieldTooLong = (max: number) =>
  new FieldTooLong({ message: `Topic, event and metadata must each be at most ${max} bytes` })
export const invalidPresencePayload = () =>
  new InvalidPresencePayload({ message: "Presence track payload must be a map" })
/** A presence push whose event is neither `track` nor `untrack`; Supabase answers with an empty error. */
export const unknownPresenceEvent = () => new UnknownPresenceEvent({ message: "Unknown presence event" })
export const trackPayloadTooLarge = () => new TrackPayloadTooLarge({ message: "Track message size exceeded" })
/** A channel whose token expired while it was joined; Supabase's text when it shuts the channel down. */
export const tokenExpired = (secondsAgo: number) =>
  new TokenExpired({ message: `Token has expired ${secondsAgo} seconds ago` })
export const topicNameRequired = () => new TopicNameRequired({ message: "You must provide a topic name" })
export const tooManyChannels = () => new ChannelRateLimitReached({ message: "Too many channels" })
export const tooManyJoins = () => new ClientJoinRateLimitReached({ message: "Too many joins per second" })
export const tooManyConnections = (scope: string) =>
  new ConnectionRateLimitReached({ message: `Too many connected users${scope}` })
export const restarting = () => new RealtimeRestarting({ message: "Realtime is restarting, please standby" })
export const outboxOverflow = () => new OutboxOverflow({ message: "slow consumer: outbox overflow" })
export const heartbeatTimeout = () => new HeartbeatTimeout({ message: "heartbeat timeout" })
export const tooManyEvents = () => new EventRateLimitReached({ message: "Too many messages per second" })
export const presenceRateLimited = () =>
  new PresenceRateLimitReached({ message: "Client presence rate limit exceeded" })
export const tooManyPresenceKeys = (max: number) =>
  new TooManyPresenceKeys({ message: `Too many presence keys in this channel (at most ${max})` })
export const presenceChannelTooLarge = (max: number) =>
  new PresenceStateTooLarge({ message: `Presence state of this channel would exceed ${max} bytes` })
export const presenceSocketTooLarge = (max: number) =>
  new PresenceStateTooLarge({ message: `Presence tracked by this connection would exceed ${max} bytes` })
/** A `postgres_changes` binding whose `event` is not `*`, `INSERT`, `UPDATE` or `DELETE`. */
export const unknownChangeEvent = (event: string) =>
  new InvalidJoinPayload({ message: `Unknown postgres_changes event ${event}; expected *, INSERT, UPDATE or DELETE` })
export const tooManyBindings = (max: number) =>
  new BindingLimitReached({ message: `Too many postgres_changes bindings; at most ${max} per channel` })
export const tooManyFrames = () => new FrameRateLimitReached({ message: "Too many frames per second" })
export const payloadTooDeep = (max: number) =>
  new PayloadTooDeep({ message: `JSON is nested more than ${max} levels deep` })

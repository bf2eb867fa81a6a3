/**
 * The one translation point from failure reasons to what a client sees: the `phx_reply` error payload, the text of a
 * channel shutdown, the HTTP status and body of a refused upgrade or REST call, and the WebSocket close code. No
 * reply text is written where a refusal happens: the refusal names a reason (`ConnectionError`, `AuthError`,
 * `RestError`, `ChangesError`), and this module answers it. Every text is catalogued in docs/error-codes.md, whose
 * test reads `catalogue` below.
 */
import { AuthError } from "@wedsync/auth"
import { ChangeFeed } from "@wedsync/hub"
import { Reply } from "@wedsync/protocol"
import type { Admission } from "@wedsync/scaling"
import * as ConnectionError from "./ConnectionError.ts"
import * as RestError from "./RestError.ts"

/**
 * Close codes. 1000-1015 are RFC 6455's; 4000-4099 are ours. realtime-js reconnects after any
 * close that it did not initiate, so every code here means "reconnect (with backoff)".
 */
export const CloseCode = {
  normal: 1000,
  internalError: 1011,
  serviceRestart: 1012,
  heartbeatTimeout: 4000,
  payloadTooDeep: 4003,
  slowConsumer: 4008,
  tooManyJoins: 4029,
  tooManyFrames: 4030
} as const

/** Any reason that reaches a client (tag = Supabase's code where Supabase has one): one of the areas' reasons. */
export interface WireReason {
  readonly _tag:
    (ConnectionError.Reason | AuthError.AuthErrorReason | RestError.Reason | ChangeFeed.RefusalReason)["_tag"]
  readonly message: string
}

/** `"<Code>: <message>"`: the reason text Supabase puts in a join error, and supabase-js shows in `CHANNEL_ERROR`. */
export const reasonText = (reason: { readonly _tag: string; readonly message: string }): string =>
  `${reason._tag}: ${reason.message}`

/** The `phx_reply` error payload for a refused join or push. */
export const errorPayload = (reason: WireReason): Reply.ReplyPayload => {
  switch (reason._tag) {
    // Phoenix's own answers, which clients match on: bare texts, not `<Code>: <message>`.
    case "UnmatchedTopic":
    case "InvalidPresencePayload":
      return Reply.error(reason.message)
    case "PayloadTooLarge":
      return Reply.errorRaw(Reply.PAYLOAD_SIZE_EXCEEDED)
    case "UnknownPresenceEvent":
      return Reply.errorRaw({})
    default:
      return Reply.error(reasonText(reason))
  }
}

/**
 * The message of a `system` error: a channel shut down, or a `postgres_changes` binding refused (Supabase sends the
 * bare message there, without the code).
 */
export const shutdownText = (reason: WireReason | { readonly _tag: string; readonly message: string }): string =>
  reason.message

export interface HttpRefusal {
  readonly status: number
  readonly body: string
  /** Sent as `Retry-After` (whole seconds) when set. */
  readonly retryAfterSeconds?: number | undefined
}

const SHED_TEXT: Readonly<Record<Admission.ShedReason, string>> = {
  "connections": "too many connections",
  "delivery-latency": "delivery latency too high",
  "event-loop-delay": "event-loop delay too high"
}

/**
 * A socket shed by admission control: 503 with `Retry-After`. The body says which guard was crossed, never the
 * process's numbers (those go to the log).
 */
export const shedRefusal = (reason: Admission.ShedReason, retryAfterSeconds: number): HttpRefusal => ({
  status: 503,
  retryAfterSeconds,
  body: JSON.stringify({
    error: `Server at capacity (${SHED_TEXT[reason]}), retry after ${retryAfterSeconds} seconds`,
    reason,
    retry_after: retryAfterSeconds
  })
})

/** Status and JSON body of a refused upgrade (`{"error": …}`, as Supabase's user socket). */
export const upgradeRefusal = (reason: WireReason): HttpRefusal => {
  switch (reason._tag) {
    case "ConnectionRateLimitReached":
    case "ClientJoinRateLimitReached":
      return { status: 429, body: JSON.stringify({ error: reason.message }) }
    case "RealtimeRestarting":
      return { status: 503, body: JSON.stringify({ error: reason.message }) }
    case "InvalidJWTToken":
      // At connect time Supabase says only "Token has expired", without the age.
      return {
        status: 401,
        body: JSON.stringify({
          error: reason.message.startsWith("Token has expired") ? "Token has expired" : reason.message
        })
      }
    default:
      return { status: 401, body: JSON.stringify({ error: reason.message }) }
  }
}

/** Status and JSON body of a refused REST broadcast, as Supabase's broadcast API answers (`{"message": …}`). */
export const restRefusal = (reason: WireReason): HttpRefusal => {
  const message = (status: number, text: string) => ({ status, body: JSON.stringify({ message: text }) })
  switch (reason._tag) {
    case "BodyTooLarge":
      return message(413, `Payload Too Large: ${reason.message}`)
    case "BodyUnreadable":
    case "PayloadTooDeep":
      return message(400, reason.message)
    case "UnsupportedMediaType":
      return { status: 415, body: JSON.stringify({ error: reason.message }) }
    case "Unauthorized":
      // The token is valid but may not write to this private topic.
      return message(403, "Unauthorized")
    case "InvalidJWTToken":
    case "MalformedJWT":
    case "JwtSignatureError":
    case "JwtSignerError":
    case "ApiKeyMissing":
      return message(401, "Unauthorized")
    case "AdminTokenMissing":
    case "AdminTokenInvalid":
      // Only operators call these endpoints: the reason is worth more to them than Supabase's bare "Unauthorized".
      return message(401, reason.message)
    case "AdminTooManyAttempts":
      return message(429, reason.message)
    case "WarmingNotConfigured":
      return message(409, reason.message)
    case "WarmingFailed":
      return message(503, reason.message)
    default:
      return message(422, reason.message)
  }
}

export const closeCodeOf = (reason: WireReason): number => {
  switch (reason._tag) {
    case "OutboxOverflow":
      return CloseCode.slowConsumer
    case "HeartbeatTimeout":
      return CloseCode.heartbeatTimeout
    case "ClientJoinRateLimitReached":
      return CloseCode.tooManyJoins
    case "RealtimeRestarting":
      return CloseCode.serviceRestart
    case "PayloadTooDeep":
      return CloseCode.payloadTooDeep
    case "FrameRateLimitReached":
      return CloseCode.tooManyFrames
    default:
      return CloseCode.normal
  }
}

/**
 * One instance of every reason a client can be sent, built as the code builds it (templates filled with example
 * values). docs/error-codes.md is checked against this list, and this list against the reason unions, so neither
 * can drift.
 */
export const catalogue: ReadonlyArray<WireReason> = [
  ConnectionError.topicNameRequired(),
  ConnectionError.unmatchedTopic(),
  ConnectionError.tooManyChannels(),
  ConnectionError.tooManyJoins(),
  ConnectionError.tooManyConnections(""),
  ConnectionError.restarting(),
  ConnectionError.outboxOverflow(),
  ConnectionError.heartbeatTimeout(),
  ConnectionError.payloadTooLarge(),
  ConnectionError.tooManyEvents(),
  ConnectionError.presenceRateLimited(),
  ConnectionError.tooManyPresenceKeys(10_000),
  ConnectionError.presenceChannelTooLarge(3_000_000),
  ConnectionError.unknownChangeEvent('"UPSERT"'),
  ConnectionError.tooManyBindings(100),
  ConnectionError.tooManyFrames(),
  ConnectionError.payloadTooDeep(64),
  ConnectionError.invalidPresencePayload(),
  ConnectionError.unknownPresenceEvent(),
  ConnectionError.trackPayloadTooLarge(),
  ConnectionError.tokenExpired(5),
  ConnectionError.fieldTooLong(255),
  ConnectionError.replayOnPublicChannel(),
  AuthError.InvalidJWTToken.expired(5),
  new AuthError.MalformedJWT(),
  new AuthError.JwtSignatureError(),
  new AuthError.JwtSignerError({ kid: "key-1" }),
  new AuthError.Unauthorized({ subtopic: "wedding:42" }),
  new AuthError.ApiKeyMissing(),
  RestError.bodyTooLarge(3_000_000),
  RestError.bodyUnreadable(),
  RestError.invalidJson(),
  RestError.invalidBody(`Missing key at ["messages"]`),
  RestError.topicAndEventRequired(),
  RestError.unsupportedMediaType(),
  RestError.adminTokenMissing(),
  RestError.adminTokenInvalid(),
  RestError.adminTooManyAttempts(42),
  RestError.warmingNotConfigured(),
  RestError.warmingFailed('running WEDDING_CALENDAR_SQL: relation "calendar" does not exist'),
  ChangeFeed.unableToSubscribe(
    { id: 1, event: "*", schema: "public", table: "guests", filter: "wedding_id=eq.42", select: undefined },
    "Table public.guests does not exist or is not in publication wedsync_changes"
  ),
  new ChangeFeed.InvalidFilter({ message: 'Error parsing `filter` params: ["wedding_id","42"]' })
]

/**
 * The one translation point from failure reasons to what a client sees: the `reason` text of a
 * `phx_reply` error, the HTTP status and body of a refused upgrade or REST call, and WebSocket
 * close codes. Every code is catalogued in docs/error-codes.md.
 */
import type { AuthError } from "@wedsync/auth"
import type { Reason } from "./ConnectionError.ts"

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

/** Any reason that reaches a client: a `ConnectionError` or `AuthError` reason (tag = Supabase code). */
export interface WireReason {
  readonly _tag: Reason["_tag"] | AuthError.AuthError["reason"]["_tag"]
  readonly message: string
}

/** `"<Code>: <message>"`, the join error reason Supabase sends. */
export const joinReason = (reason: WireReason): string => `${reason._tag}: ${reason.message}`

export interface HttpRefusal {
  readonly status: number
  readonly body: string
}

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
        body: JSON.stringify({ error: reason.message.startsWith("Token has expired") ? "Token has expired" : reason.message })
      }
    default:
      return { status: 401, body: JSON.stringify({ error: reason.message }) }
  }
}

export const closeCodeOf = (reason: Reason): number => {
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

/**
 * Why a REST broadcast (`POST /api/broadcast…`) was refused before anything was published, or an admin endpoint
 * (`/admin/…`, `ADMIN_TOKEN`) refused its caller. The routes live in the
 * gateway; the reasons live here, beside `ConnectionError`, because `ErrorReply` (this package) is the one place that
 * turns any reason into what a client sees. Payload size, nesting and field lengths are shared with the socket and
 * are `ConnectionError` reasons (`BroadcastRules`).
 */
import { Schema } from "effect"
import { reason } from "./internal/reason.ts"

export class BodyTooLarge extends reason("BodyTooLarge") {}
export class BodyUnreadable extends reason("BodyUnreadable") {}
export class InvalidJson extends reason("InvalidJson") {}
export class InvalidBody extends reason("InvalidBody") {}
export class TopicAndEventRequired extends reason("TopicAndEventRequired") {}
export class UnsupportedMediaType extends reason("UnsupportedMediaType") {}
export class AdminTokenMissing extends reason("AdminTokenMissing") {}
export class AdminTokenInvalid extends reason("AdminTokenInvalid") {}
export class AdminTooManyAttempts extends reason("AdminTooManyAttempts") {}
export class WarmingNotConfigured extends reason("WarmingNotConfigured") {}
export class WarmingFailed extends reason("WarmingFailed") {}

export type Reason =
  | BodyTooLarge
  | BodyUnreadable
  | InvalidJson
  | InvalidBody
  | TopicAndEventRequired
  | UnsupportedMediaType
  | AdminTokenMissing
  | AdminTokenInvalid
  | AdminTooManyAttempts
  | WarmingNotConfigured
  | WarmingFailed

export class RestError extends Schema.TaggedError<RestError>()("RestError", {
  reason: Schema.Union([
    BodyTooLarge,
    BodyUnreadable,
    InvalidJson,
    InvalidBody,
    TopicAndEventRequired,
    UnsupportedMediaType,
    AdminTokenMissing,
    AdminTokenInvalid,
    AdminTooManyAttempts,
    WarmingNotConfigured,
    WarmingFailed
  ])
}) {
  override get message(): string {
    return this.reason.message
  }
}

export const bodyTooLarge = (limit: number) => new BodyTooLarge({ message: `Request body exceeds ${limit} bytes` })
export const bodyUnreadable = () => new BodyUnreadable({ message: "Could not read the request body" })
export const invalidJson = () => new InvalidJson({ message: "Request body is not valid JSON" })
/** A JSON body of the wrong shape; `detail` says where (from its Schema). */
export const invalidBody = (detail: string) => new InvalidBody({ message: `Invalid request body: ${detail}` })
export const topicAndEventRequired = () => new TopicAndEventRequired({ message: "topic and event are required" })
export const unsupportedMediaType = () =>
  new UnsupportedMediaType({ message: "Unsupported Media Type. Use application/json or application/octet-stream" })
/** An admin endpoint (`/admin/…`) called without `Authorization: Bearer …`. */
export const adminTokenMissing = () =>
  new AdminTokenMissing({ message: "Authorization: Bearer <ADMIN_TOKEN> is required" })
/** An admin endpoint called with a bearer token that is not `ADMIN_TOKEN`. */
export const adminTokenInvalid = () => new AdminTokenInvalid({ message: "The bearer token is not the admin token" })
/** Too many wrong admin tokens from one client address: its attempts are refused until the window ends. */
export const adminTooManyAttempts = (retryAfterSeconds: number) =>
  new AdminTooManyAttempts({
    message: `Too many wrong admin tokens from this address; try again in ${retryAfterSeconds} seconds`
  })
/** `POST /admin/cache/warm` on a gateway without `WEDDING_CALENDAR_SQL` (or without `DATABASE_URL`). */
export const warmingNotConfigured = () =>
  new WarmingNotConfigured({ message: "Cache warming is off: set DATABASE_URL and WEDDING_CALENDAR_SQL" })
/** The calendar query or a membership query failed; `detail` says which and why. */
export const warmingFailed = (detail: string) => new WarmingFailed({ message: `Cache warming failed: ${detail}` })

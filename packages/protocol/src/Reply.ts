/**
 * Builders for the payloads the server sends: `phx_reply`, `system`, and the fixed events.
 * Shapes and strings follow the Supabase Realtime server byte for byte (spec §2.4-§2.7).
 */

export const PHX_REPLY = "phx_reply"
export const PHX_CLOSE = "phx_close"
export const PHX_JOIN = "phx_join"
export const PHX_LEAVE = "phx_leave"
export const HEARTBEAT = "heartbeat"
export const ACCESS_TOKEN = "access_token"
export const BROADCAST = "broadcast"
export const PRESENCE = "presence"
export const PRESENCE_STATE = "presence_state"
export const PRESENCE_DIFF = "presence_diff"
export const SYSTEM = "system"
/** The topic of socket-level messages such as heartbeats. */
export const PHOENIX_TOPIC = "phoenix"

export interface ReplyPayload {
  readonly status: "ok" | "error"
  readonly response: unknown
}

export const ok = (response: unknown = {}): ReplyPayload => ({ status: "ok", response })

/** `{"status":"error","response":{"reason":"<Code>: <message>"}}`, the join error shape. */
export const error = (reason: string): ReplyPayload => ({ status: "error", response: { reason } })

/** An error whose response is a bare value, e.g. `"payload_size_exceeded"` for broadcasts. */
export const errorRaw = (response: unknown): ReplyPayload => ({ status: "error", response })

export const UNMATCHED_TOPIC = "unmatched topic"
export const PAYLOAD_SIZE_EXCEEDED = "payload_size_exceeded"

interface SystemPayload {
  readonly extension: "system" | "postgres_changes" | "broadcast"
  readonly status: "ok" | "error"
  readonly message: string
  readonly channel: string
}

export const system = (
  extension: SystemPayload["extension"],
  status: SystemPayload["status"],
  message: string,
  channel: string
): SystemPayload => ({ extension, status, message, channel })

/**
 * The `system` message (extension `broadcast`, status `error`) a channel gets when the node's connection to the other
 * nodes was interrupted: broadcasts published elsewhere meanwhile did not reach it.
 */
export const MESSAGES_MAY_HAVE_BEEN_MISSED =
  "Messages may have been missed: the server's connection to the other servers was interrupted and is restored; " +
  "replay or resync this channel"

/**
 * The `system` message (extension `postgres_changes`, status `error`) a channel gets when its changes come from an
 * upstream whose connection was interrupted: changes committed meanwhile did not reach it.
 */
export const CHANGES_MAY_HAVE_BEEN_MISSED =
  "Changes may have been missed: the server's connection to the upstream was interrupted and is restored; " +
  "refetch the rows of this channel"

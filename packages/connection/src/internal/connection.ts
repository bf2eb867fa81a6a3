/**
 * What the join pipeline, the channel lifecycle and the broadcast and presence handlers see of their
 * actor. The actor is the one object that holds a connection's state; these modules are plain functions
 * over it, so a message handled costs no per-socket closures.
 */
import type { ChannelPolicy, Principal, TokenVerifier } from "@wedsync/auth"
import type { ChangeFeed, History, Hub, Presence } from "@wedsync/hub"
import type { Frame, Reply } from "@wedsync/protocol"
import type { Context, Effect, Scope } from "effect"
import type { Channel } from "../Channel.ts"
import type { ConnectionConfig, ConnectionOptions } from "../ConnectionConfig.ts"
import type { DeviceCounts } from "../DeviceCounts.ts"
import type { Outbox } from "../Outbox.ts"
import type { RateWindow } from "../RateWindow.ts"

export type Mail =
  | { readonly _tag: "Frame"; readonly data: string | Uint8Array }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Deadline" }
  | { readonly _tag: "Drain" }
  | { readonly _tag: "Overflow" }
  | { readonly _tag: "Send"; readonly frame: Uint8Array }
  /** A membership of `userId` on `subtopic` was revoked: its private channels there are decided again. */
  | { readonly _tag: "Recheck"; readonly userId: string; readonly subtopic: string }

export type Services =
  | ConnectionConfig
  | ChangeFeed.ChangeFeed
  | Hub.Hub
  | History.History
  | Presence.Presence
  | TokenVerifier.TokenVerifier
  | ChannelPolicy.ChannelPolicy
  | DeviceCounts

export interface Connection {
  readonly vsn: Frame.Vsn
  readonly config: ConnectionOptions
  readonly context: Context.Context<Services>
  /** The connection scope: work forked beside the actor (delayed replies, subscriptions) ends with it. */
  readonly scope: Scope.Scope
  /** The connect token's principal; a join or `access_token` push without a token of its own uses it. */
  readonly principal: Principal.Principal
  readonly outbox: Outbox
  /** Joined channels by topic. */
  readonly channels: Map<string, Channel>
  /** Client pushes per second; `onFrame` counts every frame but joins. */
  readonly events: RateWindow
  readonly joins: RateWindow
  /** Inbound frame time (Clock millis) of the frame being handled. */
  readonly lastSeenMs: number
  readonly isDraining: () => boolean
  offer(mail: Mail): void
  sendText(text: string): void
  send(joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown): void
  reply(joinRef: string | null, ref: string | null, topic: string, payload: Reply.ReplyPayload): void
  closeSocket(code: number, reason: string): Effect.Effect<void>
  /** Recomputes the earliest channel token expiry after a channel or its principal changed. */
  refreshExpiry(): void
  /** Counts the socket against the principal's user when it is a new one for this socket; false over the cap. */
  countUser(principal: Principal.Principal): boolean
}

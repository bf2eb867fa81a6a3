/**
 * Client broadcasts on a joined channel, as text pushes (`broadcast` event) or binary kind-3 frames:
 * within the socket's event rate and the payload bound they are published through the hub, to every
 * subscriber but the sender unless the join asked for `self`; `ack` joins get a reply either way.
 * Per message: no closure beyond the handler's own effect, and the payload is encoded once, by the hub. Broadcasts on
 * private channels go through `History.publish`: they get an id (`meta.id`) and are kept for `replay`.
 */
import { History, Hub, Publication } from "@wedsync/hub"
import { type Frame, Reply } from "@wedsync/protocol"
import { Context, Effect, Result } from "effect"
import * as BroadcastRules from "./BroadcastRules.ts"
import { type Channel, shutdown } from "./Channel.ts"
import * as ConnectionError from "./ConnectionError.ts"
import { errorPayload } from "./ErrorReply.ts"
import type { Connection, Services } from "./internal/connection.ts"

const STATIC_OK = Reply.ok()
const UNMATCHED = errorPayload(ConnectionError.unmatchedTopic())

/**
 * Whether a client push on a joined channel is within the per-socket rate (`onFrame` counts every frame);
 * false when it is not and the channel was shut down.
 */
const admitEvent = (conn: Connection, channel: Channel): Effect.Effect<boolean> =>
  Effect.suspend(() =>
    conn.events.exceeded
      ? Effect.as(shutdown(conn, channel, ConnectionError.tooManyEvents()), false)
      : Effect.succeed(true)
  )

/** A `broadcast` push whose payload is a JSON object. */
export const text = (
  conn: Connection,
  channel: Channel,
  message: Frame.Message
): Effect.Effect<void, never, Services> =>
  Effect.gen(function*() {
    if (!(yield* admitEvent(conn, channel))) return
    const payload = message.payload
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return
    // A large payload goes out as the client wrote it (already parsed, so valid JSON of the same value).
    const json = message.payloadJson ?? JSON.stringify(payload)
    const tooLarge = BroadcastRules.jsonPayloadSize(json, conn.config.maxPayloadBytes)
    if (tooLarge !== undefined) {
      if (channel.ack) conn.reply(message.joinRef, message.ref, channel.topic, errorPayload(tooLarge))
      return
    }
    yield* History.publish(
      Context.get(conn.context, Hub.Hub),
      Context.get(conn.context, History.History),
      Publication.json(channel.topic, channel.isPrivate, Reply.BROADCAST, json),
      channel.self ? undefined : channel.sink
    )
    if (channel.ack) conn.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
  })

/** A binary user broadcast (kind 3); a topic not joined is answered as Phoenix answers an unmatched topic. */
export const binary = (conn: Connection, broadcast: Frame.UserBroadcast): Effect.Effect<void, never, Services> =>
  Effect.gen(function*() {
    const channel = conn.channels.get(broadcast.topic)
    if (channel === undefined) {
      return conn.reply(broadcast.joinRef, broadcast.ref, broadcast.topic, UNMATCHED)
    }
    if (!(yield* admitEvent(conn, channel))) return
    const publication = BroadcastRules.userBroadcast(
      channel.topic,
      channel.isPrivate,
      broadcast.userEvent,
      broadcast.encoding,
      broadcast.payload,
      conn.config.maxPayloadBytes,
      broadcast.meta
    )
    if (Result.isFailure(publication)) {
      // The kind-3 frame's one-byte lengths keep its fields within bounds: only the payload can be refused here.
      if (channel.ack) conn.reply(broadcast.joinRef, broadcast.ref, channel.topic, errorPayload(publication.failure))
      return
    }
    yield* History.publish(
      Context.get(conn.context, Hub.Hub),
      Context.get(conn.context, History.History),
      publication.success,
      channel.self ? undefined : channel.sink
    )
    if (channel.ack) conn.reply(broadcast.joinRef, broadcast.ref, channel.topic, STATIC_OK)
  })

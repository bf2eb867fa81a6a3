/**
 * `presence` pushes on a joined channel: `track` (a meta object, bounded per channel in keys and bytes and per
 * socket in bytes) and `untrack`, at most `presenceMaxCalls` per `presenceWindowMs` per channel. Breaking the
 * call rate or sending a meta over `maxPayloadBytes` shuts the channel down; a bound refuses the track only,
 * and the channel and its current entry stay.
 */
import { Presence } from "@wedsync/hub"
import { type Frame, Reply } from "@wedsync/protocol"
import { Clock, Context, Effect, Result } from "effect"
import { type Channel, shutdown } from "./Channel.ts"
import * as ConnectionError from "./ConnectionError.ts"
import { errorPayload, type WireReason } from "./ErrorReply.ts"
import type { Connection, Services } from "./internal/connection.ts"
import { RateWindow } from "./RateWindow.ts"

const STATIC_OK = Reply.ok()

export const push = (
  conn: Connection,
  channel: Channel,
  message: Frame.Message
): Effect.Effect<void, never, Services> =>
  Effect.gen(function*() {
    const presence = Context.get(conn.context, Presence.Presence)
    const config = conn.config
    const now = yield* Clock.currentTimeMillis
    const calls = (channel.presenceCalls ??= RateWindow.sliding(config.presenceMaxCalls, config.presenceWindowMs))
    if (!calls.hit(now)) return yield* shutdown(conn, channel, ConnectionError.presenceRateLimited())
    const body = message.payload as { readonly event?: unknown; readonly payload?: unknown } | null
    const event = typeof body?.event === "string" ? body.event.toLowerCase() : ""
    if (event === "track") {
      const meta = body?.payload
      if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
        return conn.reply(
          message.joinRef,
          message.ref,
          channel.topic,
          errorPayload(ConnectionError.invalidPresencePayload())
        )
      }
      const metaBytes = Buffer.byteLength(JSON.stringify(meta))
      if (metaBytes > config.maxPayloadBytes)
        return yield* shutdown(conn, channel, ConnectionError.trackPayloadTooLarge())
      const refuse = (reason: WireReason) =>
        Effect.sync(() => conn.reply(message.joinRef, message.ref, channel.topic, errorPayload(reason)))
      let socketBytes = metaBytes
      for (const other of conn.channels.values())
        if (other !== channel) socketBytes += other.presenceBytes
      if (metaBytes > channel.presenceBytes && socketBytes > config.presenceMaxBytesPerSocket) {
        return yield* refuse(ConnectionError.presenceSocketTooLarge(config.presenceMaxBytesPerSocket))
      }
      const tracked = yield* Effect.result(presence.track(
        channel.topic,
        channel.isPrivate,
        channel.presenceKeyOrNew(),
        channel.sink,
        meta as Record<string, unknown>,
        { maxKeys: config.presenceMaxKeysPerChannel, maxBytes: config.presenceMaxBytesPerChannel }
      ))
      if (Result.isFailure(tracked)) {
        const { limit, max } = tracked.failure
        return yield* refuse(
          limit === "keys" ? ConnectionError.tooManyPresenceKeys(max) : ConnectionError.presenceChannelTooLarge(max)
        )
      }
      channel.presenceTracked = true
      channel.presenceBytes = metaBytes
      return conn.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
    }
    if (event === "untrack") {
      yield* presence.untrack(channel.topic, channel.isPrivate, channel.sink)
      channel.presenceBytes = 0
      return conn.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
    }
    conn.reply(message.joinRef, message.ref, channel.topic, errorPayload(ConnectionError.unknownPresenceEvent()))
  })

/**
 * One joined channel of a socket: what its join admitted (topic, privacy, broadcast options,
 * `postgres_changes` bindings), the principal it acts with, its presence, and its sink, by which the
 * hub, the presence and the change feed know it. `release` undoes the join's subscriptions; `remove`
 * (a leave, a rejoin) and `shutdown` (Supabase's server-side close) are the ways a channel ends while
 * its socket stays. Not exported from the package: it is part of the actor.
 */
import type { Principal } from "@wedsync/auth"
import { ChangeFeed, History, Hub, Presence, Publication, type Sink } from "@wedsync/hub"
import { type Frame, type JoinConfig, Reply } from "@wedsync/protocol"
import { Context, Effect, Metric } from "effect"
import { randomUUID } from "node:crypto"
import * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { DeviceCounts } from "./DeviceCounts.ts"
import { shutdownText } from "./ErrorReply.ts"
import type { Connection, Services } from "./internal/connection.ts"
import type { Outbox } from "./Outbox.ts"
import type { RateWindow } from "./RateWindow.ts"

/**
 * A channel's way into the socket's outbox; its identity tells the hub who the sender is.
 *
 * While a replay is read, the sink holds live frames back (`hold`) so that they reach the client after the replayed
 * ones; `release` then passes them on, leaving out the live copies of what was replayed. Held frames are bounded by
 * `holdLimitBytes`: past it the sink stops holding and reports `overflowed`, and the socket is treated as a slow
 * consumer (it could not have taken that backlog either).
 */
/**
 * How long after a replay a live copy of a replayed message may still arrive: the time between a publisher's history
 * append and its broker message reaching this process (a Redis round trip, seconds at worst under load).
 */
export const IN_FLIGHT_MS = 5_000

export class ChannelSink implements Sink.Sink {
  readonly vsn: Frame.Vsn
  private readonly outbox: Outbox
  private heldFrames: Array<Uint8Array> | undefined = undefined
  private heldPublications: Array<Publication.Publication | undefined> = []
  private heldBytes = 0
  private holdLimitBytes = 0
  /**
   * After `release`: ids read from the history whose live copy may still be on its way (published by another process,
   * appended to the history before its broker message arrived here), dropped when it comes.
   */
  private inFlight: Set<string> | undefined = undefined
  overflowed = false

  constructor(vsn: Frame.Vsn, outbox: Outbox) {
    this.vsn = vsn
    this.outbox = outbox
  }

  enqueue(frame: Uint8Array, publication?: Publication.Publication): void {
    const held = this.heldFrames
    if (held === undefined) {
      if (this.inFlight !== undefined && publication !== undefined && this.isLiveCopy(publication)) return
      return void this.outbox.enqueue(frame)
    }
    this.heldBytes += frame.length
    if (this.heldBytes > this.holdLimitBytes) {
      this.overflowed = true
      return
    }
    held.push(frame)
    this.heldPublications.push(publication)
  }

  /** Holds live frames back from now until `release`. */
  hold(limitBytes: number): void {
    this.heldFrames = []
    this.holdLimitBytes = limitBytes
  }

  /** Drops the held frames and stops holding: the channel is closing. */
  discard(): void {
    this.heldFrames = undefined
    this.heldPublications = []
    this.heldBytes = 0
  }

  /**
   * Passes the held frames on, in order, except those of a publication whose id is in `replayed`. The ids of
   * `replayed` no held frame matched and that are younger than `IN_FLIGHT_MS` at `now` stay suppressed for that long:
   * their live copies may not have arrived yet.
   */
  release(replayed: ReadonlySet<string>, now: number): void {
    const frames = this.heldFrames
    const publications = this.heldPublications
    this.heldFrames = undefined
    this.heldPublications = []
    this.heldBytes = 0
    if (frames === undefined) return
    const unmatched = new Set<string>()
    for (const id of replayed) if (now - History.timeOf(id) < IN_FLIGHT_MS) unmatched.add(id)
    for (let i = 0; i < frames.length; i++) {
      const publication = publications[i]
      const id = publication === undefined || replayed.size === 0 ? undefined : History.idOf(publication)
      if (id !== undefined && replayed.has(id)) {
        unmatched.delete(id)
        continue
      }
      this.outbox.enqueue(frames[i]!)
    }
    if (unmatched.size > 0) this.inFlight = unmatched
  }

  /**
   * Whether `publication` is the late live copy of a replayed id. An id is forgotten once its copy came, or once a live
   * message `IN_FLIGHT_MS` younger came (the ids' own times are the clock: no timer, nothing on the path of other
   * sinks), so the set never outlives the replay's stragglers for long.
   */
  private isLiveCopy(publication: Publication.Publication): boolean {
    const inFlight = this.inFlight!
    const id = History.idOf(publication)
    if (id === undefined) return false
    const copy = inFlight.delete(id)
    if (!copy) {
      const horizon = History.timeOf(id) - IN_FLIGHT_MS
      for (const waiting of inFlight) if (History.timeOf(waiting) < horizon) inFlight.delete(waiting)
    }
    if (inFlight.size === 0) this.inFlight = undefined
    return copy
  }
}

/** A stable, non-negative 27-bit id for a postgres_changes binding (Supabase uses phash2). */
export const bindingId = (raw: unknown): number => {
  let hash = 0x811c9dc5
  const text = JSON.stringify(raw)
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return (hash >>> 0) & 0x7ffffff
}

export class Channel {
  readonly topic: string
  readonly subtopic: string
  readonly joinRef: string | null
  readonly isPrivate: boolean
  readonly key: Publication.TopicKey
  readonly sink: ChannelSink
  readonly ack: boolean
  readonly self: boolean
  /** The join's `postgres_changes` bindings with their ids, or undefined when it had none. */
  readonly bindings: ReadonlyArray<ChangeFeed.Binding> | undefined
  /** The join's presence key, or a UUID made when presence is first used (Supabase makes one per join). */
  presenceKey: string | undefined
  principal: Principal.Principal
  presenceTracked = false
  /** Bytes of the meta this channel tracks (0 when none), counted against `presenceMaxBytesPerSocket`. */
  presenceBytes = 0
  /** Recent track/untrack calls; made on first use, most channels never use presence. */
  presenceCalls: RateWindow | undefined = undefined

  constructor(
    topic: string,
    subtopic: string,
    joinRef: string | null,
    config: JoinConfig.JoinConfig,
    principal: Principal.Principal,
    sink: ChannelSink
  ) {
    this.topic = topic
    this.subtopic = subtopic
    this.joinRef = joinRef
    this.isPrivate = config.isPrivate
    this.key = Publication.topicKey(topic, config.isPrivate)
    this.sink = sink
    this.ack = config.broadcastAck
    this.self = config.broadcastSelf
    this.bindings = config.postgresChanges.length === 0
      ? undefined
      : config.postgresChanges.map((b) => ({
        id: bindingId(b.raw),
        event: b.event,
        schema: b.schema,
        table: b.table,
        filter: b.filter,
        select: b.select
      }))
    this.presenceKey = config.presenceKey
    this.principal = principal
  }

  presenceKeyOrNew(): string {
    return (this.presenceKey ??= randomUUID())
  }

  /** Whether the channel's principal has expired by `now` (Clock millis). */
  hasExpired(now: number): boolean {
    const exp = this.principal.exp
    return exp !== undefined && exp * 1000 <= now
  }

  /** Undoes a join: the hub subscription, then the presence entry (whose leave the channel itself is not sent). */
  release(context: Context.Context<Services>): Effect.Effect<void> {
    Context.get(context, Hub.Hub).remove(this.key, this.sink)
    Context.get(context, DeviceCounts).ended(this)
    if (this.bindings !== undefined) Context.get(context, ChangeFeed.ChangeFeed).unsubscribe(this.sink)
    if (!this.presenceTracked) return Effect.void
    return Context.get(context, Presence.Presence).untrack(this.topic, this.isPrivate, this.sink, this.sink)
  }
}

/** Takes the channel off its socket and releases it. */
export const remove = (conn: Connection, channel: Channel): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (conn.channels.get(channel.topic) === channel) conn.channels.delete(channel.topic)
    conn.refreshExpiry()
    return Effect.andThen(channel.release(conn.context), Metric.modify(ConnectionMetrics.channels, -1))
  })

/** Any reason a channel can be shut down for: a connection, auth or Postgres Changes reason. */
export interface Reason {
  readonly _tag: string
  readonly message: string
}

/** Supabase's "shutdown" of one channel: a `system` error, then `phx_close`; the socket stays. */
export const shutdown = (conn: Connection, channel: Channel, reason: Reason): Effect.Effect<void> => {
  const message = shutdownText(reason)
  conn.send(
    channel.joinRef,
    null,
    channel.topic,
    Reply.SYSTEM,
    Reply.system("system", "error", message, channel.subtopic)
  )
  conn.send(channel.joinRef, channel.joinRef, channel.topic, Reply.PHX_CLOSE, {})
  return remove(conn, channel)
}

/** Shuts down a channel whose principal has expired, with Supabase's `Token has expired N seconds ago`. */
export const shutdownExpired = (conn: Connection, channel: Channel, now: number): Effect.Effect<void> => {
  const secondsAgo = Math.max(0, Math.floor((now - (channel.principal.exp ?? 0) * 1000) / 1000))
  return shutdown(conn, channel, ConnectionError.tokenExpired(secondsAgo))
}

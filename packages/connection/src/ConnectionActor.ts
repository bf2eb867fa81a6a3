/**
 * One actor per socket: it owns the connection's state and processes its mailbox (frames from the
 * client, deadlines from the registry's sweep, drain requests) strictly in order.
 *
 * The actor holds no fiber while it is idle. Mail that arrives at an idle actor starts one
 * processing fiber that drains the mailbox and ends; a failure in it is caught there (the socket
 * is closed with 1011, nothing else is touched). An idle joined socket therefore costs a few
 * small objects, not a suspended fiber, which is what keeps memory near that of a bare `ws`
 * connection. A joined channel holds a hub subscription and maybe a presence entry; leaving
 * releases them, and the actor's finalizer in the connection scope releases every channel left.
 *
 * This module is the shell: construction, dispatch of mail and frames, deadlines, drain and output. The
 * scheduling is `internal/mailbox.ts`; a joined channel is `Channel.ts`; joins go through `Join.ts`'s
 * steps; broadcasts and presence have their handlers (`BroadcastHandler.ts`, `PresenceHandler.ts`).
 * It runs past 300 lines because it also holds the types the transport and the registry use (`Socket`,
 * `Init`, `ConnectionHandle`), and the frame checks that must run before any handler (rates, depth).
 */
import { ChannelPolicy, type Principal } from "@wedsync/auth"
import { Frame, Json, Reply, Serializer, WsFrame } from "@wedsync/protocol"
import { Cause, Clock, Context, Effect, Metric, Result, Scope } from "effect"
import * as BroadcastHandler from "./BroadcastHandler.ts"
import { type Channel, remove, shutdown, shutdownExpired } from "./Channel.ts"
import { ConnectionConfig, type ConnectionOptions } from "./ConnectionConfig.ts"
import * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { CloseCode, closeCodeOf, errorPayload } from "./ErrorReply.ts"
import type { Connection, Mail, Services } from "./internal/connection.ts"
import { Mailbox } from "./internal/mailbox.ts"
import * as Join from "./Join.ts"
import { Outbox, type Wire, type WriteCoalescer } from "./Outbox.ts"
import * as PresenceHandler from "./PresenceHandler.ts"
import { RateWindow } from "./RateWindow.ts"
import * as RefusalLog from "./RefusalLog.ts"

export type { Mail, Services } from "./internal/connection.ts"

/** The accepted socket, as the actor drives it. */
export interface Socket {
  readonly wire: Wire
  close(code: number, reason: string): void
  pauseReading(): void
  resumeReading(): void
}

/** What the registry sees of a running actor. */
export interface ConnectionHandle {
  readonly id: number
  readonly ip: string
  /** JWT `sub` of the connect token, when there is one. */
  readonly userKey: string | undefined
  /** Last inbound frame (Clock millis). */
  readonly lastSeenMs: number
  /** Earliest channel token expiry (Clock millis), or +Infinity. */
  readonly nextExpiryMs: number
  offer(mail: Mail): void
}

export interface Init {
  readonly id: number
  readonly vsn: Frame.Vsn
  readonly ip: string
  readonly principal: Principal.Principal
  readonly socket: Socket
  readonly coalescer: WriteCoalescer
  /** Whether the node is draining (new joins refused). */
  readonly isDraining: () => boolean
  /** Called once the handle exists, before the first frame is processed; runs in the connection scope. */
  readonly register: (handle: ConnectionHandle) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Counts the socket against the user a join's token names (`ConnectionRegistry`'s `Admission.claimUser`);
   * false refuses the join. Absent: users are not counted (tests without a registry).
   */
  readonly claimUser?: (userKey: string) => boolean
  /** Called once when the actor has ended (socket closed by either side). */
  readonly onEnd?: () => void
}

/** Joins opened before the earlier ones are finished, at most: past it they are finished first. */
const MAX_OPENING = 100

/** A join begun (`Join.begin`) and not yet finished. */
interface Opening {
  readonly topic: string
  readonly finish: Join.Finish
}

const STATIC_OK = Reply.ok()
const TOO_MANY_EVENTS = errorPayload(ConnectionError.tooManyEvents())
const UNMATCHED = errorPayload(ConnectionError.unmatchedTopic())

class Actor extends Mailbox<Mail, Services> implements ConnectionHandle, Connection {
  readonly id: number
  readonly ip: string
  readonly userKey: string | undefined
  lastSeenMs = 0
  nextExpiryMs = Number.POSITIVE_INFINITY

  // The parts of `Init` the actor keeps; `Init` itself (with its one-off register callback) is not retained.
  private readonly socket: Socket
  readonly principal: Principal.Principal
  readonly isDraining: () => boolean
  private readonly onEnd: (() => void) | undefined
  private readonly claimUser: ((userKey: string) => boolean) | undefined
  /** Users this socket was counted against through joins (besides the connect token's); allocated on first use. */
  private users: Set<string> | undefined
  readonly vsn: Frame.Vsn
  readonly config: ConnectionOptions
  readonly context: Context.Context<Services>
  readonly scope: Scope.Scope
  readonly outbox: Outbox
  readonly channels = new Map<string, Channel>()
  /** Frames of any kind per second; past `frameBudget` the socket is closed. */
  private readonly frames: RateWindow
  readonly events: RateWindow
  readonly joins: RateWindow
  /** Joins begun and not finished, in arrival order (`onJoin`). */
  private openings: Array<Opening> = []

  constructor(init: Init, context: Context.Context<Services>, scope: Scope.Scope) {
    super()
    this.socket = init.socket
    this.principal = init.principal
    this.isDraining = init.isDraining
    this.onEnd = init.onEnd
    this.claimUser = init.claimUser
    this.id = init.id
    this.ip = init.ip
    this.userKey = init.principal.sub
    this.vsn = init.vsn
    this.context = context
    this.scope = scope
    const config = (this.config = Context.get(context, ConnectionConfig))
    // Never below what the event and join limits admit.
    const frameBudget = Math.max(config.maxFramesPerSecond, config.maxEventsPerSecond + config.maxJoinsPerSecond)
    this.frames = RateWindow.fixed(frameBudget, 1000)
    this.events = RateWindow.fixed(config.maxEventsPerSecond, 1000)
    this.joins = RateWindow.fixed(config.maxJoinsPerSecond, 1000)
    this.outbox = new Outbox(
      init.socket.wire,
      init.coalescer,
      config.outboxLimitBytes,
      () => this.offer({ _tag: "Overflow" })
    )
  }

  // ---- mailbox ------------------------------------------------------------------------------

  protected get reader(): Socket {
    return this.socket
  }

  protected get capacity(): number {
    return this.config.mailboxCapacity
  }

  protected fail(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    return Effect.andThen(
      Effect.logError("connection actor failed", Cause.pretty(cause)),
      this.closeSocket(CloseCode.internalError, "internal error")
    )
  }

  protected onFinish(): void {
    this.openings = []
    this.onEnd?.()
  }

  /**
   * The queue is empty: the joins begun meanwhile are finished. After one more turn of the event loop, though: the
   * rest of a run of joins a client sent together may still be arriving, and is then begun first.
   */
  protected settle(): Effect.Effect<void, never, Services> {
    if (this.openings.length === 0) return Effect.void
    return Effect.andThen(Effect.yieldNow, Effect.suspend(() => this.queued > 0 ? Effect.void : this.finishJoins()))
  }

  protected handle(mail: Mail): Effect.Effect<void, never, Services> {
    switch (mail._tag) {
      case "Frame":
        return this.onFrame(mail.data)
      case "Deadline":
        return this.openings.length === 0 ? this.onDeadline() : Effect.andThen(this.finishJoins(), this.onDeadline())
      case "Drain":
        return this.onDrain()
      case "Overflow": {
        const reason = ConnectionError.outboxOverflow()
        return this.closeSocket(closeCodeOf(reason), reason.message)
      }
      case "Send":
        return Effect.sync(() => void this.outbox.enqueue(mail.frame))
      case "Recheck":
        return Effect.andThen(this.finishJoins(), this.onRecheck(mail.userId, mail.subtopic))
      case "Closed":
        return Effect.sync(() => {
          this.ended = true
          this.outbox.close()
        })
    }
  }

  // ---- output -------------------------------------------------------------------------------

  sendText(text: string): void {
    this.outbox.enqueue(WsFrame.text(text))
  }

  send(joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown): void {
    this.sendText(Serializer.encode(this.vsn, { joinRef, ref, topic, event, payload }))
  }

  reply(joinRef: string | null, ref: string | null, topic: string, payload: Reply.ReplyPayload): void {
    this.send(joinRef, ref, topic, Reply.PHX_REPLY, payload)
  }

  closeSocket(code: number, reason: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.ended) return Effect.void
      this.ended = true
      // Queued frames must reach the socket before the close frame does.
      this.outbox.flush()
      this.outbox.close()
      this.socket.close(code, reason)
      return Metric.update(Metric.withAttributes(ConnectionMetrics.closed, { reason: String(code) }), 1)
    })
  }

  /** Closes the socket for what its client sent, with the reason's close code, logged at most once per socket. */
  private refuseSocket(reason: ConnectionError.Reason): Effect.Effect<void> {
    return Effect.andThen(RefusalLog.logLine("socket", reason), this.closeSocket(closeCodeOf(reason), reason.message))
  }

  // ---- connection state ---------------------------------------------------------------------

  refreshExpiry(): void {
    let next = Number.POSITIVE_INFINITY
    for (const channel of this.channels.values()) {
      const exp = channel.principal.exp
      if (exp !== undefined && exp * 1000 < next) next = exp * 1000
    }
    this.nextExpiryMs = next
  }

  countUser(principal: Principal.Principal): boolean {
    const sub = principal.sub
    if (sub === undefined || sub === this.userKey || this.claimUser === undefined || this.users?.has(sub)) return true
    if (!this.claimUser(sub)) return false
    ;(this.users ??= new Set()).add(sub)
    return true
  }

  // ---- inbound ------------------------------------------------------------------------------

  private onFrame(data: string | Uint8Array): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      self.lastSeenMs = now
      // Events and frames share one window, rolled by every frame.
      self.events.roll(now)
      if (!self.frames.hit(now)) return yield* self.refuseSocket(ConnectionError.tooManyFrames())
      // Refused before parsing: deep JSON parses, but stringifying or walking it again would overflow the stack.
      if (typeof data === "string" && Json.nestedDeeperThan(data, Json.MAX_DEPTH)) {
        return yield* self.refuseSocket(ConnectionError.payloadTooDeep(Json.MAX_DEPTH))
      }
      const decoded = Serializer.decode(self.vsn, data)
      if (Result.isFailure(decoded)) {
        self.events.add()
        yield* Metric.update(ConnectionMetrics.malformed, 1)
        return yield* Effect.logDebug("MalformedWebSocketMessage", decoded.failure.message)
      }
      const inbound = decoded.success
      // Joins have their own limit (`maxJoinsPerSecond`); every other frame counts as an event.
      if (inbound._tag === "Message" && inbound.message.event === Reply.PHX_JOIN)
        return yield* self.onJoin(inbound.message)
      self.events.add()
      // Whatever else the client sent comes after the joins it sent before, answered.
      if (self.openings.length > 0) yield* self.finishJoins()
      if (inbound._tag === "UserBroadcast") {
        const { encoding, meta, payload } = inbound.broadcast
        if (
          (encoding === "json" && Json.nestedDeeperThan(payload, Json.MAX_DEPTH)) ||
          (meta !== undefined && Json.nestedDeeperThan(meta, Json.MAX_DEPTH))
        ) {
          return yield* self.refuseSocket(ConnectionError.payloadTooDeep(Json.MAX_DEPTH))
        }
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind: "broadcast" }), 1)
        const channel = self.channels.get(inbound.broadcast.topic)
        if (channel !== undefined && channel.hasExpired(now)) return yield* shutdownExpired(self, channel, now)
        return yield* BroadcastHandler.binary(self, inbound.broadcast)
      }
      const kind = inbound.message.event === Reply.HEARTBEAT ? "heartbeat" : "push"
      yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind }), 1)
      return yield* self.onMessage(inbound.message)
    })
  }

  private onMessage(message: Frame.Message): Effect.Effect<void, never, Services> {
    const { topic, event } = message
    if (topic === Reply.PHOENIX_TOPIC && event === Reply.HEARTBEAT) {
      const payload = this.events.exceeded ? TOO_MANY_EVENTS : STATIC_OK
      return Effect.sync(() => this.reply(null, message.ref, topic, payload))
    }
    const channel = this.channels.get(topic)
    if (channel === undefined) {
      // A leave for a channel that never joined (REST-only use) is acknowledged, as Phoenix does.
      const payload = event === Reply.PHX_LEAVE ? STATIC_OK : UNMATCHED
      return Effect.sync(() => this.reply(message.joinRef, message.ref, topic, payload))
    }
    // A push is a decision made with the channel's principal: once it has expired the channel is shut down here,
    // not only at the next sweep (`lastSeenMs` is this frame's time). A leave is still a leave.
    if (event !== Reply.PHX_LEAVE && channel.hasExpired(this.lastSeenMs)) {
      return shutdownExpired(this, channel, this.lastSeenMs)
    }
    // Every push on a joined channel counts against the per-socket rate (broadcasts check it themselves).
    if (event !== Reply.BROADCAST && this.events.exceeded) {
      return shutdown(this, channel, ConnectionError.tooManyEvents())
    }
    switch (event) {
      case Reply.PHX_LEAVE:
        this.reply(message.joinRef, message.ref, topic, STATIC_OK)
        this.send(channel.joinRef, channel.joinRef, topic, Reply.PHX_CLOSE, {})
        return remove(this, channel)
      case Reply.BROADCAST:
        return BroadcastHandler.text(this, channel, message)
      case Reply.PRESENCE:
        return PresenceHandler.push(this, channel, message)
      case Reply.ACCESS_TOKEN:
        return Join.refreshToken(this, channel, message)
      default:
        return Effect.void
    }
  }

  /**
   * Begins a join and leaves its finish (the reply, presence state, replay) for `settle`: the joins a client sends
   * together are opened together, and their topics' subscriptions (a round trip to Redis or the upstream) awaited
   * together rather than one after the other. Joins are still answered in the order they came. A join of a topic
   * being opened finishes the earlier ones first, so that it replaces a channel that was answered.
   */
  private onJoin(message: Frame.Message): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind: "push" }), 1)
      if (self.openings.length >= MAX_OPENING || self.openings.some((opening) => opening.topic === message.topic)) {
        yield* self.finishJoins()
      }
      const finish = yield* Join.begin(self, message)
      if (!self.ended) self.openings.push({ topic: message.topic, finish })
    })
  }

  private finishJoins(): Effect.Effect<void, never, Services> {
    const openings = this.openings
    if (openings.length === 0) return Effect.void
    this.openings = []
    return Effect.forEach(openings, (opening) => opening.finish, { discard: true })
  }

  // ---- deadlines and drain ------------------------------------------------------------------

  private onDeadline(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - self.lastSeenMs >= self.config.idleTimeoutMs) {
        const reason = ConnectionError.heartbeatTimeout()
        return yield* self.closeSocket(closeCodeOf(reason), reason.message)
      }
      for (const channel of [...self.channels.values()]) {
        if (channel.hasExpired(now)) yield* shutdownExpired(self, channel, now)
      }
    })
  }

  /**
   * Decides again, with the same principal, each private channel of `userId` on `subtopic`; one it may no longer read
   * is shut down with the policy's reason (Supabase's `Unauthorized` for a lost authorization).
   */
  private onRecheck(userId: string, subtopic: string): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const policy = Context.get(self.context, ChannelPolicy.ChannelPolicy)
      for (const channel of [...self.channels.values()]) {
        if (!channel.isPrivate || channel.subtopic !== subtopic || channel.principal.sub !== userId) continue
        const decided = yield* Effect.result(policy.authorizeJoin(channel.principal, subtopic, true))
        if (Result.isFailure(decided) && self.channels.get(channel.topic) === channel) {
          yield* shutdown(self, channel, decided.failure.reason)
        }
      }
    })
  }

  private onDrain(): Effect.Effect<void> {
    for (const channel of this.channels.values()) {
      this.send(
        channel.joinRef,
        null,
        channel.topic,
        Reply.SYSTEM,
        Reply.system("system", "ok", "Server requested disconnect", channel.subtopic)
      )
    }
    return this.closeSocket(CloseCode.serviceRestart, "server draining")
  }

  /** Releases what the connection holds; runs as the connection scope's finalizer. */
  release(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const channels = [...this.channels.values()]
      this.channels.clear()
      return this.closeSocket(CloseCode.normal, "").pipe(
        Effect.andThen(Effect.forEach(channels, (channel) => channel.release(this.context), { discard: true })),
        Effect.andThen(Effect.sync(() => this.finish())),
        Effect.andThen(Metric.modify(ConnectionMetrics.open, -1)),
        Effect.andThen(Metric.modify(ConnectionMetrics.channels, -channels.length))
      )
    })
  }
}

/**
 * Starts an actor in the current scope and returns its handle. The actor lives until the socket
 * closes or the scope closes, whichever comes first; `init.onEnd` reports the former.
 */
export const make = (init: Init): Effect.Effect<ConnectionHandle, never, Scope.Scope | Services> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<Services>()
    const scope = yield* Effect.scope
    const actor = new Actor(init, context, scope)
    actor.lastSeenMs = yield* Clock.currentTimeMillis
    // Built when it runs, so that an idle connection holds one small finalizer, not a chain of effects.
    yield* Scope.addFinalizer(scope, Effect.suspend(() => Effect.andThen(actor.stop(), actor.release())))
    yield* init.register(actor)
    yield* Metric.modify(ConnectionMetrics.open, 1)
    return actor
  })

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
 */
import { AuthError, ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import { ChangeFeed, Hub, Presence, Publication, type Sink } from "@wedsync/hub"
import { Frame, JoinConfig, Json, Reply, Serializer, WsFrame } from "@wedsync/protocol"
import { Cause, Clock, Context, Deferred, Effect, Exit, type Fiber, Metric, Result, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { ConnectionConfig, type ConnectionOptions } from "./ConnectionConfig.ts"
import * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { CloseCode, closeCodeOf, joinReason, type WireReason } from "./ErrorReply.ts"
import * as RefusalLog from "./RefusalLog.ts"
import { Outbox, type Wire, type WriteCoalescer } from "./Outbox.ts"

/** The accepted socket, as the actor drives it. */
export interface Socket {
  readonly wire: Wire
  close(code: number, reason: string): void
  pauseReading(): void
  resumeReading(): void
}

export type Mail =
  | { readonly _tag: "Frame"; readonly data: string | Uint8Array }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Deadline" }
  | { readonly _tag: "Drain" }
  | { readonly _tag: "Overflow" }
  | { readonly _tag: "Send"; readonly frame: Uint8Array }

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

export type Services =
  | ConnectionConfig
  | ChangeFeed.ChangeFeed
  | Hub.Hub
  | Presence.Presence
  | TokenVerifier.TokenVerifier
  | ChannelPolicy.ChannelPolicy

interface Channel {
  readonly topic: string
  readonly subtopic: string
  readonly joinRef: string | null
  readonly isPrivate: boolean
  readonly key: Publication.TopicKey
  readonly sink: Sink.Sink
  readonly ack: boolean
  readonly self: boolean
  /** The join's `postgres_changes` bindings with their ids, or undefined when it had none. */
  readonly bindings: ReadonlyArray<ChangeFeed.Binding> | undefined
  /** The join's presence key, or a UUID made when presence is first used (Supabase makes one per join). */
  presenceKey: string | undefined
  principal: Principal.Principal
  presenceTracked: boolean
  /** Bytes of the meta this channel tracks (0 when none), counted against `presenceMaxBytesPerSocket`. */
  presenceBytes: number
  /** Times of recent track/untrack calls; allocated on first use, most channels never use presence. */
  presenceCalls: Array<number> | undefined
}

const presenceKeyOf = (channel: Channel): string => (channel.presenceKey ??= randomUUID())

const STATIC_OK = Reply.ok()

/** A channel's way into the socket's outbox; its identity tells the hub who the sender is. */
class ChannelSink implements Sink.Sink {
  readonly vsn: Frame.Vsn
  private readonly outbox: Outbox

  constructor(vsn: Frame.Vsn, outbox: Outbox) {
    this.vsn = vsn
    this.outbox = outbox
  }

  enqueue(frame: Uint8Array): void {
    this.outbox.enqueue(frame)
  }
}

/** A stable, non-negative 27-bit id for a postgres_changes binding (Supabase uses phash2). */
export const bindingId = (raw: unknown): number => {
  let hash = 0x811c9dc5
  const text = JSON.stringify(raw)
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return (hash >>> 0) & 0x7ffffff
}

const joinsWith = (result: string) => Metric.withAttributes(ConnectionMetrics.joins, { result })

class Actor implements ConnectionHandle {
  readonly id: number
  readonly ip: string
  readonly userKey: string | undefined
  lastSeenMs = 0
  nextExpiryMs = Number.POSITIVE_INFINITY

  // The parts of `Init` the actor keeps; `Init` itself (with its one-off register callback) is not retained.
  private readonly socket: Socket
  private readonly principal: Principal.Principal
  private readonly isDraining: () => boolean
  private readonly onEnd: (() => void) | undefined
  private readonly claimUser: ((userKey: string) => boolean) | undefined
  /** Users this socket was counted against through joins (besides the connect token's); allocated on first use. */
  private users: Set<string> | undefined
  private readonly vsn: Frame.Vsn
  private readonly config: ConnectionOptions
  private readonly context: Context.Context<Services>
  private readonly scope: Scope.Scope
  private readonly outbox: Outbox
  private readonly channels = new Map<string, Channel>()
  private mailbox: Array<Mail> = []
  private processing: Fiber.Fiber<void> | undefined
  private running = false
  private paused = false
  private ended = false
  private finished = false
  private stopped = false
  private joinWindowStart = 0
  private joinsInWindow = 0
  private eventWindowStart = 0
  private eventsInWindow = 0
  private framesInWindow = 0
  /** Frames per second before the socket is closed: never below what the event and join limits admit. */
  private readonly frameBudget: number

  constructor(init: Init, context: Context.Context<Services>, scope: Scope.Scope) {
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
    this.config = Context.get(context, ConnectionConfig)
    this.frameBudget = Math.max(this.config.maxFramesPerSecond, this.config.maxEventsPerSecond + this.config.maxJoinsPerSecond)
    this.outbox = new Outbox(init.socket.wire, init.coalescer, this.config.outboxLimitBytes, () => this.offer({ _tag: "Overflow" }))
  }

  // ---- mailbox ------------------------------------------------------------------------------

  offer(mail: Mail): void {
    if (this.finished || this.stopped) return
    this.mailbox.push(mail)
    if (!this.paused && mail._tag === "Frame" && this.mailbox.length >= this.config.mailboxCapacity) {
      this.paused = true
      this.socket.pauseReading()
    }
    if (!this.running) this.startProcessing()
  }

  private startProcessing(): void {
    this.running = true
    // The run may complete synchronously inside runForkWith; only a run still going is kept.
    const fiber = Effect.runForkWith(this.context)(this.drainMailbox())
    if (this.running) this.processing = fiber
  }

  private drainMailbox(): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      while (self.mailbox.length > 0 && !self.ended) {
        const batch = self.mailbox
        self.mailbox = []
        for (const mail of batch) {
          if (self.ended) break
          yield* self.onMail(mail)
        }
        if (self.paused && self.mailbox.length < self.config.mailboxCapacity / 2) {
          self.paused = false
          self.socket.resumeReading()
        }
      }
    }).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.void
          : Effect.andThen(
            Effect.logError("connection actor failed", Cause.pretty(cause)),
            self.closeSocket(CloseCode.internalError, "internal error")
          )
      ),
      Effect.ensuring(Effect.sync(() => {
        self.processing = undefined
        self.running = false
        if (self.stopped) return
        if (self.ended) self.finish()
        // Mail that arrived after the loop's last check but before this point starts a new run.
        else if (self.mailbox.length > 0) self.startProcessing()
      }))
    )
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.mailbox = []
    this.onEnd?.()
  }

  /** Interrupts a processing run in flight; used when the connection scope closes. */
  stop(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.stopped = true
      this.processing?.interruptUnsafe()
    })
  }

  private onMail(mail: Mail): Effect.Effect<void, never, Services> {
    switch (mail._tag) {
      case "Frame":
        return this.onFrame(mail.data)
      case "Deadline":
        return this.onDeadline()
      case "Drain":
        return this.onDrain()
      case "Overflow": {
        const reason = ConnectionError.outboxOverflow()
        return this.closeSocket(closeCodeOf(reason), reason.message)
      }
      case "Send":
        return Effect.sync(() => void this.outbox.enqueue(mail.frame))
      case "Closed":
        return Effect.sync(() => {
          this.ended = true
          this.outbox.close()
        })
    }
  }

  // ---- output -------------------------------------------------------------------------------

  private sendText(text: string): void {
    this.outbox.enqueue(WsFrame.text(text))
  }

  private send(joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown): void {
    this.sendText(Serializer.encode(this.vsn, { joinRef, ref, topic, event, payload }))
  }

  private reply(joinRef: string | null, ref: string | null, topic: string, payload: Reply.ReplyPayload): void {
    this.send(joinRef, ref, topic, Reply.PHX_REPLY, payload)
  }

  private closeSocket(code: number, reason: string): Effect.Effect<void> {
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

  // ---- channels -----------------------------------------------------------------------------

  private refreshExpiry(): void {
    let next = Number.POSITIVE_INFINITY
    for (const channel of this.channels.values()) {
      const exp = channel.principal.exp
      if (exp !== undefined && exp * 1000 < next) next = exp * 1000
    }
    this.nextExpiryMs = next
  }

  /** Undoes a join: the hub subscription, then the presence entry (whose leave the channel itself is not sent). */
  private releaseChannel(channel: Channel): Effect.Effect<void> {
    Context.get(this.context, Hub.Hub).remove(channel.key, channel.sink)
    if (channel.bindings !== undefined) Context.get(this.context, ChangeFeed.ChangeFeed).unsubscribe(channel.sink)
    if (!channel.presenceTracked) return Effect.void
    return Context.get(this.context, Presence.Presence).untrack(channel.topic, channel.isPrivate, channel.sink, channel.sink)
  }

  private removeChannel(channel: Channel): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.channels.get(channel.topic) === channel) this.channels.delete(channel.topic)
      this.refreshExpiry()
      return Effect.andThen(this.releaseChannel(channel), Metric.modify(ConnectionMetrics.channels, -1))
    })
  }

  /** Supabase's "shutdown" of one channel: a `system` error, then `phx_close`; the socket stays. */
  private shutdownChannel(channel: Channel, message: string): Effect.Effect<void> {
    this.send(channel.joinRef, null, channel.topic, Reply.SYSTEM, Reply.system("system", "error", message, channel.subtopic))
    this.send(channel.joinRef, channel.joinRef, channel.topic, Reply.PHX_CLOSE, {})
    return this.removeChannel(channel)
  }

  private joinError(joinRef: string | null, ref: string | null, topic: string, reason: WireReason): Effect.Effect<void> {
    const payload = Reply.error(joinReason(reason))
    const delay = this.config.joinErrorDelayMs
    const counted = Effect.andThen(Metric.update(joinsWith(reason._tag), 1), RefusalLog.log("join", reason))
    if (delay <= 0) return Effect.andThen(counted, Effect.sync(() => this.reply(joinRef, ref, topic, payload)))
    // The delay damps rejoin storms (Supabase waits 5 s); it runs beside the actor so heartbeats
    // and other channels are not held up.
    const frame = WsFrame.text(Serializer.encode(this.vsn, { joinRef, ref, topic, event: Reply.PHX_REPLY, payload }))
    const later = Effect.andThen(Effect.sleep(delay), Effect.sync(() => this.offer({ _tag: "Send", frame })))
    return Effect.andThen(counted, Effect.asVoid(Effect.forkIn(later, this.scope)))
  }

  /**
   * The principal, or `InvalidJWTToken` ("Token has expired N seconds ago") once its `exp` has passed by the
   * Clock. Every authorization decision goes through it: a socket's connect principal is verified once at the
   * upgrade and a cached principal may have outlived its token.
   */
  private unexpired(principal: Principal.Principal): Effect.Effect<Principal.Principal, AuthError.AuthError> {
    const exp = principal.exp
    if (exp === undefined) return Effect.succeed(principal)
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      exp * 1000 <= now
        ? Effect.fail(AuthError.make(AuthError.InvalidJWTToken.expired((now - exp * 1000) / 1000)))
        : Effect.succeed(principal))
  }

  /** Counts the socket against the principal's user when it is a new one for this socket; false over the cap. */
  private countUser(principal: Principal.Principal): boolean {
    const sub = principal.sub
    if (sub === undefined || sub === this.userKey || this.claimUser === undefined || this.users?.has(sub)) return true
    if (!this.claimUser(sub)) return false
    ;(this.users ??= new Set()).add(sub)
    return true
  }

  private join(message: Frame.Message): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const { topic, joinRef, ref } = message
      const subtopic = Frame.subtopicOf(topic)
      if (subtopic === undefined) return self.reply(joinRef, ref, topic, Reply.error(Reply.UNMATCHED_TOPIC))
      if (subtopic === "") return yield* self.joinError(joinRef, ref, topic, ConnectionError.topicNameRequired())
      if (self.isDraining()) return yield* self.joinError(joinRef, ref, topic, ConnectionError.restarting())
      const now = yield* Clock.currentTimeMillis
      if (now - self.joinWindowStart >= 1000) {
        self.joinWindowStart = now
        self.joinsInWindow = 0
      }
      if (++self.joinsInWindow > self.config.maxJoinsPerSecond) {
        const reason = ConnectionError.tooManyJoins()
        self.reply(joinRef, ref, topic, Reply.error(joinReason(reason)))
        yield* Metric.update(joinsWith(reason._tag), 1)
        yield* RefusalLog.log("join", reason)
        return yield* self.closeSocket(closeCodeOf(reason), reason.message)
      }
      const previous = self.channels.get(topic)
      if (previous === undefined && self.channels.size >= self.config.maxChannelsPerConnection) {
        return yield* self.joinError(joinRef, ref, topic, ConnectionError.tooManyChannels())
      }
      const joinConfig = JoinConfig.parse(message.payload)
      if (joinConfig.invalidFields.length > 0) {
        yield* Effect.logDebug("InvalidJoinPayload", { fields: joinConfig.invalidFields })
      }
      const unknownEvent = joinConfig.unknownEvents[0]
      if (unknownEvent !== undefined) {
        return yield* self.joinError(joinRef, ref, topic, ConnectionError.unknownChangeEvent(unknownEvent))
      }
      if (joinConfig.postgresChanges.length > self.config.maxBindingsPerChannel) {
        return yield* self.joinError(joinRef, ref, topic, ConnectionError.tooManyBindings(self.config.maxBindingsPerChannel))
      }
      const verifier = Context.get(self.context, TokenVerifier.TokenVerifier)
      const policy = Context.get(self.context, ChannelPolicy.ChannelPolicy)
      const token = joinConfig.accessToken
      // A join without its own token uses the connect principal; an `sb_` key is verified like any token, so the
      // join gets the rights of what it sent.
      const principal = token === undefined ? Effect.succeed(self.principal) : verifier.verify(token)
      const authorized = yield* principal.pipe(
        Effect.flatMap((p) => self.unexpired(p)),
        Effect.tap((p) => policy.authorizeJoin(p, subtopic, joinConfig.isPrivate)),
        Effect.result
      )
      if (Result.isFailure(authorized)) return yield* self.joinError(joinRef, ref, topic, authorized.failure.reason)
      if (!self.countUser(authorized.success)) {
        return yield* self.joinError(joinRef, ref, topic, ConnectionError.tooManyConnections(" for this user"))
      }
      if (previous !== undefined) {
        // Joining a topic twice on one socket replaces the old channel, as Phoenix does.
        self.send(previous.joinRef, previous.joinRef, topic, Reply.PHX_CLOSE, {})
        yield* self.removeChannel(previous)
      }
      const sink = new ChannelSink(self.vsn, self.outbox)
      const channel: Channel = {
        topic,
        subtopic,
        joinRef,
        isPrivate: joinConfig.isPrivate,
        key: Publication.topicKey(topic, joinConfig.isPrivate),
        sink,
        ack: joinConfig.broadcastAck,
        self: joinConfig.broadcastSelf,
        bindings: joinConfig.postgresChanges.length === 0
          ? undefined
          : joinConfig.postgresChanges.map((b) => ({
            id: bindingId(b.raw),
            event: b.event,
            schema: b.schema,
            table: b.table,
            filter: b.filter,
            select: b.select
          })),
        presenceKey: joinConfig.presenceKey,
        principal: authorized.success,
        presenceTracked: false,
        presenceBytes: 0,
        presenceCalls: undefined
      }
      const hub = Context.get(self.context, Hub.Hub)
      hub.add(channel.key, sink)
      self.channels.set(topic, channel)
      self.refreshExpiry()
      yield* Metric.modify(ConnectionMetrics.channels, 1)
      yield* Metric.update(joinsWith("ok"), 1)
      const echoed = joinConfig.postgresChanges.map((b) => ({ ...b.raw, id: bindingId(b.raw) }))
      self.reply(joinRef, ref, topic, Reply.ok({ postgres_changes: echoed }))
      if (joinConfig.presenceEnabled) {
        const state = Context.get(self.context, Presence.Presence).state(topic, channel.isPrivate)
        self.sendText(Serializer.encodeRaw(self.vsn, joinRef, null, topic, Reply.PRESENCE_STATE, state))
      }
      yield* self.subscribeChanges(channel)
    })
  }

  /**
   * Registers the channel's bindings with the change feed beside the actor (the feed answers only
   * once it really delivers, which may take a while) and reports the outcome with Supabase's
   * `system` messages. A channel that left meanwhile is unsubscribed again.
   */
  private subscribeChanges(channel: Channel): Effect.Effect<void> {
    const bindings = channel.bindings
    if (bindings === undefined) return Effect.void
    const feed = Context.get(this.context, ChangeFeed.ChangeFeed)
    const report = (results: ReadonlyArray<ChangeFeed.BindingResult>) =>
      Effect.sync(() => {
        if (this.channels.get(channel.topic) !== channel) return feed.unsubscribe(channel.sink)
        const system = (status: "ok" | "error", message: string) =>
          this.offer({
            _tag: "Send",
            frame: WsFrame.text(Serializer.encode(this.vsn, {
              joinRef: channel.joinRef,
              ref: null,
              topic: channel.topic,
              event: Reply.SYSTEM,
              payload: Reply.system("postgres_changes", status, message, channel.subtopic)
            }))
          })
        for (const result of results) if (result._tag === "Refused") system("error", result.message)
        if (results.some((result) => result._tag === "Subscribed")) system("ok", "Subscribed to PostgreSQL")
      })
    const subscriber = { sink: channel.sink, topic: channel.topic, bindings, access: channel.principal }
    const subscribe = Effect.asVoid(Effect.forkIn(Effect.flatMap(feed.subscribe(subscriber), report), this.scope))
    // The rows are authorized with this principal: it must not have expired.
    return Effect.matchEffect(this.unexpired(channel.principal), {
      onFailure: (e) => this.shutdownChannel(channel, e.reason.message),
      onSuccess: () => subscribe
    })
  }

  /**
   * Whether a client push on a joined channel is within the per-socket rate (`onFrame` counts every frame);
   * false when it is not and the channel was shut down.
   */
  private admitEvent(channel: Channel): Effect.Effect<boolean> {
    return Effect.suspend(() =>
      this.eventsInWindow <= this.config.maxEventsPerSecond
        ? Effect.succeed(true)
        : Effect.as(this.shutdownChannel(channel, ConnectionError.tooManyEvents().message), false)
    )
  }

  private broadcastText(channel: Channel, message: Frame.Message): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      if (!(yield* self.admitEvent(channel))) return
      const payload = message.payload
      if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return
      const json = JSON.stringify(payload)
      if (json.length > self.config.maxPayloadBytes && Buffer.byteLength(json) > self.config.maxPayloadBytes) {
        if (channel.ack) self.reply(message.joinRef, message.ref, channel.topic, Reply.errorRaw(Reply.PAYLOAD_SIZE_EXCEEDED))
        return
      }
      const hub = Context.get(self.context, Hub.Hub)
      yield* hub.publish(Publication.json(channel.topic, channel.isPrivate, Reply.BROADCAST, json), channel.self ? undefined : channel.sink)
      if (channel.ack) self.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
    })
  }

  private broadcastBinary(broadcast: Frame.UserBroadcast): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const channel = self.channels.get(broadcast.topic)
      if (channel === undefined) {
        return self.reply(broadcast.joinRef, broadcast.ref, broadcast.topic, Reply.error(Reply.UNMATCHED_TOPIC))
      }
      if (!(yield* self.admitEvent(channel))) return
      if (broadcast.payload.length > self.config.maxPayloadBytes) {
        if (channel.ack) self.reply(broadcast.joinRef, broadcast.ref, channel.topic, Reply.errorRaw(Reply.PAYLOAD_SIZE_EXCEEDED))
        return
      }
      const publication = Publication.userBroadcast(
        channel.topic,
        channel.isPrivate,
        broadcast.userEvent,
        broadcast.encoding,
        broadcast.payload,
        broadcast.meta
      )
      if (Result.isSuccess(publication)) {
        yield* Context.get(self.context, Hub.Hub).publish(publication.success, channel.self ? undefined : channel.sink)
      }
      if (channel.ack) self.reply(broadcast.joinRef, broadcast.ref, channel.topic, STATIC_OK)
    })
  }

  private presenceMessage(channel: Channel, message: Frame.Message): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const presence = Context.get(self.context, Presence.Presence)
      const now = yield* Clock.currentTimeMillis
      const calls = (channel.presenceCalls ?? []).filter((t) => now - t < self.config.presenceWindowMs)
      calls.push(now)
      channel.presenceCalls = calls
      if (calls.length > self.config.presenceMaxCalls) {
        return yield* self.shutdownChannel(channel, ConnectionError.presenceRateLimited().message)
      }
      const body = message.payload as { readonly event?: unknown; readonly payload?: unknown } | null
      const event = typeof body?.event === "string" ? body.event.toLowerCase() : ""
      if (event === "track") {
        const meta = body?.payload
        if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
          return self.reply(message.joinRef, message.ref, channel.topic, Reply.error("Presence track payload must be a map"))
        }
        const metaBytes = Buffer.byteLength(JSON.stringify(meta))
        if (metaBytes > self.config.maxPayloadBytes) {
          return yield* self.shutdownChannel(channel, "Track message size exceeded")
        }
        // A bound refuses this track only; the channel and its current entry stay.
        const refuse = (reason: WireReason) =>
          Effect.sync(() => self.reply(message.joinRef, message.ref, channel.topic, Reply.error(joinReason(reason))))
        let socketBytes = metaBytes
        for (const other of self.channels.values()) if (other !== channel) socketBytes += other.presenceBytes
        if (metaBytes > channel.presenceBytes && socketBytes > self.config.presenceMaxBytesPerSocket) {
          return yield* refuse(ConnectionError.presenceSocketTooLarge(self.config.presenceMaxBytesPerSocket))
        }
        const tracked = yield* Effect.result(presence.track(
          channel.topic,
          channel.isPrivate,
          presenceKeyOf(channel),
          channel.sink,
          meta as Record<string, unknown>,
          { maxKeys: self.config.presenceMaxKeysPerChannel, maxBytes: self.config.presenceMaxBytesPerChannel }
        ))
        if (Result.isFailure(tracked)) {
          const { limit, max } = tracked.failure
          return yield* refuse(limit === "keys" ? ConnectionError.tooManyPresenceKeys(max) : ConnectionError.presenceChannelTooLarge(max))
        }
        channel.presenceTracked = true
        channel.presenceBytes = metaBytes
        return self.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
      }
      if (event === "untrack") {
        yield* presence.untrack(channel.topic, channel.isPrivate, channel.sink)
        channel.presenceBytes = 0
        return self.reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
      }
      self.reply(message.joinRef, message.ref, channel.topic, Reply.errorRaw({}))
    })
  }

  private accessToken(channel: Channel, message: Frame.Message): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const sent = (message.payload as { readonly access_token?: unknown } | null)?.access_token
      // `null` is no token at all (a supabase-js token callback that answers null after sign-out): the channel drops
      // to the socket's own key, as a join without `access_token` would. Any other non-string is ignored.
      if (sent !== null && typeof sent !== "string") return
      const token = sent ?? self.principal.token
      if (token === channel.principal.token) {
        // Nothing changes, but the principal is still checked: a resent token may have expired meanwhile.
        const current = yield* Effect.result(self.unexpired(channel.principal))
        if (Result.isFailure(current)) return yield* self.shutdownChannel(channel, current.failure.reason.message)
        return
      }
      // Any other value replaces the channel's rights, also one that is not a user JWT: supabase-js sends the
      // project's anon JWT or `sb_publishable_` key on sign-out, and the channel drops to that key's rights
      // (a private channel they do not allow is shut down; a public one goes on with them).
      const verifier = Context.get(self.context, TokenVerifier.TokenVerifier)
      const policy = Context.get(self.context, ChannelPolicy.ChannelPolicy)
      const verified = yield* (sent === null ? Effect.succeed(self.principal) : verifier.verify(token)).pipe(
        Effect.flatMap((principal) => self.unexpired(principal)),
        Effect.tap((principal) => policy.authorizeJoin(principal, channel.subtopic, channel.isPrivate)),
        Effect.result
      )
      if (Result.isFailure(verified)) return yield* self.shutdownChannel(channel, verified.failure.reason.message)
      if (!self.countUser(verified.success)) {
        return yield* self.shutdownChannel(channel, ConnectionError.tooManyConnections(" for this user").message)
      }
      channel.principal = verified.success
      self.refreshExpiry()
      // As Supabase: the subscription is renewed with the new claims and confirmed again.
      yield* self.subscribeChanges(channel)
    })
  }

  private onMessage(message: Frame.Message): Effect.Effect<void, never, Services> {
    const { topic, event } = message
    if (topic === Reply.PHOENIX_TOPIC && event === Reply.HEARTBEAT) {
      const payload = this.eventsInWindow <= this.config.maxEventsPerSecond
        ? STATIC_OK
        : Reply.error(joinReason(ConnectionError.tooManyEvents()))
      return Effect.sync(() => this.reply(null, message.ref, topic, payload))
    }
    if (event === Reply.PHX_JOIN) return this.join(message)
    const channel = this.channels.get(topic)
    if (channel === undefined) {
      // A leave for a channel that never joined (REST-only use) is acknowledged, as Phoenix does.
      const payload = event === Reply.PHX_LEAVE ? STATIC_OK : Reply.error(Reply.UNMATCHED_TOPIC)
      return Effect.sync(() => this.reply(message.joinRef, message.ref, topic, payload))
    }
    // A push is a decision made with the channel's principal: once it has expired the channel is shut down here,
    // not only at the next sweep (`lastSeenMs` is this frame's time). A leave is still a leave.
    if (event !== Reply.PHX_LEAVE && this.hasExpired(channel, this.lastSeenMs)) {
      return this.shutdownExpired(channel, this.lastSeenMs)
    }
    // Every push on a joined channel counts against the per-socket rate (broadcasts check it themselves).
    if (event !== Reply.BROADCAST && this.eventsInWindow > this.config.maxEventsPerSecond) {
      return this.shutdownChannel(channel, ConnectionError.tooManyEvents().message)
    }
    switch (event) {
      case Reply.PHX_LEAVE:
        this.reply(message.joinRef, message.ref, topic, STATIC_OK)
        this.send(channel.joinRef, channel.joinRef, topic, Reply.PHX_CLOSE, {})
        return this.removeChannel(channel)
      case Reply.BROADCAST:
        return this.broadcastText(channel, message)
      case Reply.PRESENCE:
        return this.presenceMessage(channel, message)
      case Reply.ACCESS_TOKEN:
        return this.accessToken(channel, message)
      default:
        return Effect.void
    }
  }

  private onFrame(data: string | Uint8Array): Effect.Effect<void, never, Services> {
    const self = this
    return Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      self.lastSeenMs = now
      if (now - self.eventWindowStart >= 1000) {
        self.eventWindowStart = now
        self.eventsInWindow = 0
        self.framesInWindow = 0
      }
      if (++self.framesInWindow > self.frameBudget) return yield* self.refuseSocket(ConnectionError.tooManyFrames())
      // Refused before parsing: deep JSON parses, but stringifying or walking it again would overflow the stack.
      if (typeof data === "string" && Json.nestedDeeperThan(data, Json.MAX_DEPTH)) {
        return yield* self.refuseSocket(ConnectionError.payloadTooDeep(Json.MAX_DEPTH))
      }
      const decoded = Serializer.decode(self.vsn, data)
      if (Result.isFailure(decoded)) {
        self.eventsInWindow++
        yield* Metric.update(ConnectionMetrics.malformed, 1)
        return yield* Effect.logDebug("MalformedWebSocketMessage", decoded.failure.message)
      }
      const inbound = decoded.success
      // Joins have their own limit (`maxJoinsPerSecond`); every other frame counts as an event.
      if (inbound._tag === "UserBroadcast" || inbound.message.event !== Reply.PHX_JOIN) self.eventsInWindow++
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
        if (channel !== undefined && self.hasExpired(channel, now)) return yield* self.shutdownExpired(channel, now)
        return yield* self.broadcastBinary(inbound.broadcast)
      }
      const kind = inbound.message.event === Reply.HEARTBEAT ? "heartbeat" : "push"
      yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind }), 1)
      return yield* self.onMessage(inbound.message)
    })
  }

  /** Closes the socket for what its client sent, with the reason's close code, logged at most once per socket. */
  private refuseSocket(reason: ConnectionError.Reason): Effect.Effect<void> {
    return Effect.andThen(RefusalLog.logLine("socket", reason), this.closeSocket(closeCodeOf(reason), reason.message))
  }

  private onDeadline(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - self.lastSeenMs >= self.config.idleTimeoutMs) {
        const reason = ConnectionError.heartbeatTimeout()
        return yield* self.closeSocket(closeCodeOf(reason), reason.message)
      }
      for (const channel of [...self.channels.values()]) {
        if (self.hasExpired(channel, now)) yield* self.shutdownExpired(channel, now)
      }
    })
  }

  /** Whether the channel's principal has expired by `now` (Clock millis). */
  private hasExpired(channel: Channel, now: number): boolean {
    const exp = channel.principal.exp
    return exp !== undefined && exp * 1000 <= now
  }

  /** Shuts down a channel whose principal has expired, with Supabase's `Token has expired N seconds ago`. */
  private shutdownExpired(channel: Channel, now: number): Effect.Effect<void> {
    const secondsAgo = Math.max(0, Math.floor((now - (channel.principal.exp ?? 0) * 1000) / 1000))
    return this.shutdownChannel(channel, `Token has expired ${secondsAgo} seconds ago`)
  }

  private onDrain(): Effect.Effect<void> {
    for (const channel of this.channels.values()) {
      this.send(channel.joinRef, null, channel.topic, Reply.SYSTEM, Reply.system("system", "ok", "Server requested disconnect", channel.subtopic))
    }
    return this.closeSocket(CloseCode.serviceRestart, "server draining")
  }

  /** Releases what the connection holds; runs as the connection scope's finalizer. */
  release(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const channels = [...this.channels.values()]
      this.channels.clear()
      return this.closeSocket(CloseCode.normal, "").pipe(
        Effect.andThen(Effect.forEach(channels, (channel) => this.releaseChannel(channel), { discard: true })),
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

/** Runs an actor until its socket closes (tests and simple callers). */
export const run = (init: Init): Effect.Effect<void, never, Scope.Scope | Services> =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<void>()
    yield* make({ ...init, onEnd: () => Deferred.doneUnsafe(ended, Exit.void) })
    yield* Deferred.await(ended)
  })

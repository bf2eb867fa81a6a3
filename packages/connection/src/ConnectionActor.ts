/**
 * One actor per socket: a fiber that owns the connection's state and processes its mailbox in
 * order (frames from the client, deadlines from the registry's sweep, drain requests).
 *
 * Each joined channel holds a child scope with its hub subscription and presence entry; leaving
 * the channel closes that scope, and ending the actor closes them all, so nothing a connection
 * joined can outlive it. Outbound frames go through the socket's bounded `Outbox`.
 */
import { ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import { Hub, Presence, Publication, type Sink } from "@wedsync/hub"
import { Frame, JoinConfig, Reply, Serializer, WsFrame } from "@wedsync/protocol"
import { Clock, Effect, Exit, Metric, Queue, Result, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { ConnectionConfig } from "./ConnectionConfig.ts"
import * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { CloseCode, closeCodeOf, joinReason } from "./ErrorReply.ts"
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

interface Channel {
  readonly topic: string
  readonly subtopic: string
  readonly joinRef: string | null
  readonly isPrivate: boolean
  readonly key: Publication.TopicKey
  readonly sink: Sink.Sink
  readonly scope: Scope.Closeable
  readonly ack: boolean
  readonly self: boolean
  readonly presenceKey: string
  principal: Principal.Principal
  presenceTracked: boolean
  presenceCalls: Array<number>
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
  /** Called once the handle exists, before the first frame is processed. */
  readonly register: (handle: ConnectionHandle) => Effect.Effect<void, never, Scope.Scope>
}

const STATIC_OK = Reply.ok()

/** A stable, non-negative 27-bit id for a postgres_changes binding (Supabase uses phash2). */
export const bindingId = (raw: unknown): number => {
  let hash = 0x811c9dc5
  const text = JSON.stringify(raw)
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return (hash >>> 0) & 0x7ffffff
}

const describeBinding = (b: JoinConfig.PostgresChangeBinding): string =>
  `[event: ${b.event}, schema: ${b.schema}, table: ${b.table ?? "*"}, filters: [${b.filter ?? ""}]]`

/** Runs the actor until the socket closes; requires a scope that owns the connection. */
export const run = (init: Init) =>
  Effect.gen(function*() {
    const config = yield* ConnectionConfig
    const hub = yield* Hub.Hub
    const presence = yield* Presence.Presence
    const verifier = yield* TokenVerifier.TokenVerifier
    const policy = yield* ChannelPolicy.ChannelPolicy
    const connectionScope = yield* Effect.scope
    const { socket, vsn } = init

    const mailbox = yield* Queue.unbounded<Mail>()
    let paused = false
    let ended = false
    const channels = new Map<string, Channel>()
    let joinWindowStart = 0
    let joinsInWindow = 0
    let eventWindowStart = 0
    let eventsInWindow = 0

    const handle: { -readonly [K in keyof ConnectionHandle]: ConnectionHandle[K] } = {
      id: init.id,
      ip: init.ip,
      userKey: init.principal.sub,
      lastSeenMs: yield* Clock.currentTimeMillis,
      nextExpiryMs: Number.POSITIVE_INFINITY,
      offer: (mail) => {
        if (ended) return
        Queue.offerUnsafe(mailbox, mail)
        if (!paused && mail._tag === "Frame" && Queue.sizeUnsafe(mailbox) >= config.mailboxCapacity) {
          paused = true
          socket.pauseReading()
        }
      }
    }

    const outbox = new Outbox(socket.wire, init.coalescer, config.outboxLimitBytes, () => handle.offer({ _tag: "Overflow" }))

    const sendText = (text: string) => void outbox.enqueue(WsFrame.text(text))
    const send = (joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown) =>
      sendText(Serializer.encode(vsn, { joinRef, ref, topic, event, payload }))
    const reply = (joinRef: string | null, ref: string | null, topic: string, payload: Reply.ReplyPayload) =>
      send(joinRef, ref, topic, Reply.PHX_REPLY, payload)

    const closeSocket = (code: number, reason: string) =>
      Effect.gen(function*() {
        if (ended) return
        ended = true
        // Queued frames must reach the socket before the close frame does.
        outbox.flush()
        outbox.close()
        socket.close(code, reason)
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.closed, { reason: String(code) }), 1)
      })

    const refreshExpiry = () => {
      let next = Number.POSITIVE_INFINITY
      for (const channel of channels.values()) {
        const exp = channel.principal.exp
        if (exp !== undefined && exp * 1000 < next) next = exp * 1000
      }
      handle.nextExpiryMs = next
    }

    const removeChannel = (channel: Channel) =>
      Effect.gen(function*() {
        if (channels.get(channel.topic) === channel) channels.delete(channel.topic)
        refreshExpiry()
        yield* Scope.close(channel.scope, Exit.void)
        yield* Metric.modify(ConnectionMetrics.channels, -1)
      })

    /** Supabase's "shutdown" of one channel: a `system` error, then `phx_close`; the socket stays. */
    const shutdownChannel = (channel: Channel, message: string) =>
      Effect.gen(function*() {
        send(channel.joinRef, null, channel.topic, Reply.SYSTEM, Reply.system("system", "error", message, channel.subtopic))
        send(channel.joinRef, channel.joinRef, channel.topic, Reply.PHX_CLOSE, {})
        yield* removeChannel(channel)
      })

    const joinError = (joinRef: string | null, ref: string | null, topic: string, reason: string, code: string) =>
      Effect.gen(function*() {
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.joins, { result: code }), 1)
        const payload = Reply.error(reason)
        if (config.joinErrorDelayMs <= 0) return reply(joinRef, ref, topic, payload)
        // The delay damps rejoin storms (Supabase waits 5 s); it runs beside the actor so
        // heartbeats and other channels are not held up.
        const frame = WsFrame.text(Serializer.encode(vsn, { joinRef, ref, topic, event: Reply.PHX_REPLY, payload }))
        yield* Effect.forkIn(
          Effect.sleep(config.joinErrorDelayMs).pipe(Effect.andThen(Effect.sync(() => handle.offer({ _tag: "Send", frame })))),
          connectionScope
        )
      })

    const resolvePrincipal = (token: string | undefined) =>
      token === undefined || token.startsWith("sb_") ? Effect.succeed(init.principal) : verifier.verify(token)

    const join = (message: Frame.Message) =>
      Effect.gen(function*() {
        const { topic, joinRef, ref } = message
        const subtopic = Frame.subtopicOf(topic)
        if (subtopic === undefined) return reply(joinRef, ref, topic, Reply.error(Reply.UNMATCHED_TOPIC))
        if (subtopic === "") {
          const reason = ConnectionError.topicNameRequired()
          return yield* joinError(joinRef, ref, topic, joinReason(reason), reason._tag)
        }
        if (init.isDraining()) {
          const reason = ConnectionError.restarting()
          return yield* joinError(joinRef, ref, topic, joinReason(reason), reason._tag)
        }
        const now = yield* Clock.currentTimeMillis
        if (now - joinWindowStart >= 1000) {
          joinWindowStart = now
          joinsInWindow = 0
        }
        if (++joinsInWindow > config.maxJoinsPerSecond) {
          const reason = ConnectionError.tooManyJoins()
          reply(joinRef, ref, topic, Reply.error(joinReason(reason)))
          yield* Metric.update(Metric.withAttributes(ConnectionMetrics.joins, { result: reason._tag }), 1)
          return yield* closeSocket(closeCodeOf(reason), reason.message)
        }
        const previous = channels.get(topic)
        if (previous === undefined && channels.size >= config.maxChannelsPerConnection) {
          const reason = ConnectionError.tooManyChannels()
          return yield* joinError(joinRef, ref, topic, joinReason(reason), reason._tag)
        }
        const joinConfig = JoinConfig.parse(message.payload)
        if (joinConfig.invalidFields.length > 0) {
          yield* Effect.logDebug("InvalidJoinPayload", { fields: joinConfig.invalidFields })
        }
        const authorized = yield* resolvePrincipal(joinConfig.accessToken).pipe(
          Effect.tap((principal) => policy.authorizeJoin(principal, subtopic, joinConfig.isPrivate)),
          Effect.result
        )
        if (Result.isFailure(authorized)) {
          const reason = authorized.failure.reason
          return yield* joinError(joinRef, ref, topic, joinReason(reason), reason._tag)
        }
        if (previous !== undefined) {
          // Joining a topic twice on one socket replaces the old channel, as Phoenix does.
          send(previous.joinRef, previous.joinRef, topic, Reply.PHX_CLOSE, {})
          yield* removeChannel(previous)
        }
        const scope = yield* Scope.fork(connectionScope, "sequential")
        const sink: Sink.Sink = { vsn, enqueue: (frame) => void outbox.enqueue(frame) }
        const channel: Channel = {
          topic,
          subtopic,
          joinRef,
          isPrivate: joinConfig.isPrivate,
          key: Publication.topicKey(topic, joinConfig.isPrivate),
          sink,
          scope,
          ack: joinConfig.broadcastAck,
          self: joinConfig.broadcastSelf,
          presenceKey: joinConfig.presenceKey ?? randomUUID(),
          principal: authorized.success,
          presenceTracked: false,
          presenceCalls: []
        }
        yield* hub.subscribe(channel.key, sink).pipe(Scope.provide(scope))
        channels.set(topic, channel)
        refreshExpiry()
        yield* Metric.modify(ConnectionMetrics.channels, 1)
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.joins, { result: "ok" }), 1)
        const bindings = joinConfig.postgresChanges.map((b) => ({ ...b.raw, id: bindingId(b.raw) }))
        reply(joinRef, ref, topic, Reply.ok({ postgres_changes: bindings }))
        if (joinConfig.presenceEnabled) {
          sendText(Serializer.encodeRaw(vsn, joinRef, null, topic, Reply.PRESENCE_STATE, presence.state(topic, channel.isPrivate)))
        }
        for (const binding of joinConfig.postgresChanges) {
          send(
            joinRef,
            null,
            topic,
            Reply.SYSTEM,
            Reply.system(
              "postgres_changes",
              "error",
              `Unable to subscribe to changes with given parameters. Postgres Changes are not enabled on this gateway (DATABASE_URL is not set): ${describeBinding(binding)}`,
              subtopic
            )
          )
        }
      })

    /** Counts a client push against the per-socket rate; false when the channel was shut down. */
    const admitEvent = (channel: Channel) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - eventWindowStart >= 1000) {
          eventWindowStart = now
          eventsInWindow = 0
        }
        if (++eventsInWindow <= config.maxEventsPerSecond) return true
        yield* shutdownChannel(channel, ConnectionError.tooManyEvents().message)
        return false
      })

    const broadcastText = (channel: Channel, message: Frame.Message) =>
      Effect.gen(function*() {
        if (!(yield* admitEvent(channel))) return
        const payload = message.payload
        if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return
        const json = JSON.stringify(payload)
        if (json.length > config.maxPayloadBytes && Buffer.byteLength(json) > config.maxPayloadBytes) {
          if (channel.ack) reply(message.joinRef, message.ref, channel.topic, Reply.errorRaw(Reply.PAYLOAD_SIZE_EXCEEDED))
          return
        }
        yield* hub.publish(Publication.json(channel.topic, channel.isPrivate, Reply.BROADCAST, json), channel.self ? undefined : channel.sink)
        if (channel.ack) reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
      })

    const broadcastBinary = (broadcast: Frame.UserBroadcast) =>
      Effect.gen(function*() {
        const channel = channels.get(broadcast.topic)
        if (channel === undefined) {
          return reply(broadcast.joinRef, broadcast.ref, broadcast.topic, Reply.error(Reply.UNMATCHED_TOPIC))
        }
        if (!(yield* admitEvent(channel))) return
        if (broadcast.payload.length > config.maxPayloadBytes) {
          if (channel.ack) reply(broadcast.joinRef, broadcast.ref, channel.topic, Reply.errorRaw(Reply.PAYLOAD_SIZE_EXCEEDED))
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
          yield* hub.publish(publication.success, channel.self ? undefined : channel.sink)
        }
        if (channel.ack) reply(broadcast.joinRef, broadcast.ref, channel.topic, STATIC_OK)
      })

    const presenceMessage = (channel: Channel, message: Frame.Message) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        channel.presenceCalls = channel.presenceCalls.filter((t) => now - t < config.presenceWindowMs)
        channel.presenceCalls.push(now)
        if (channel.presenceCalls.length > config.presenceMaxCalls) {
          return yield* shutdownChannel(channel, ConnectionError.presenceRateLimited().message)
        }
        const body = message.payload as { readonly event?: unknown; readonly payload?: unknown } | null
        const event = typeof body?.event === "string" ? body.event.toLowerCase() : ""
        if (event === "track") {
          const meta = body?.payload
          if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
            return reply(message.joinRef, message.ref, channel.topic, Reply.error("Presence track payload must be a map"))
          }
          if (Buffer.byteLength(JSON.stringify(meta)) > config.maxPayloadBytes) {
            return yield* shutdownChannel(channel, "Track message size exceeded")
          }
          if (!channel.presenceTracked) {
            channel.presenceTracked = true
            yield* Scope.addFinalizer(channel.scope, presence.untrack(channel.topic, channel.isPrivate, channel.sink))
          }
          yield* presence.track(channel.topic, channel.isPrivate, channel.presenceKey, channel.sink, meta as Record<string, unknown>)
          return reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
        }
        if (event === "untrack") {
          yield* presence.untrack(channel.topic, channel.isPrivate, channel.sink)
          return reply(message.joinRef, message.ref, channel.topic, STATIC_OK)
        }
        reply(message.joinRef, message.ref, channel.topic, Reply.errorRaw({}))
      })

    const accessToken = (channel: Channel, message: Frame.Message) =>
      Effect.gen(function*() {
        const token = (message.payload as { readonly access_token?: unknown } | null)?.access_token
        if (typeof token !== "string" || token.startsWith("sb_") || token === channel.principal.token) return
        const verified = yield* verifier.verify(token).pipe(
          Effect.tap((principal) => policy.authorizeJoin(principal, channel.subtopic, channel.isPrivate)),
          Effect.result
        )
        if (Result.isFailure(verified)) return yield* shutdownChannel(channel, verified.failure.reason.message)
        channel.principal = verified.success
        refreshExpiry()
      })

    const onMessage = (message: Frame.Message) =>
      Effect.gen(function*() {
        const { topic, event } = message
        if (topic === Reply.PHOENIX_TOPIC && event === Reply.HEARTBEAT) {
          return reply(null, message.ref, topic, STATIC_OK)
        }
        if (event === Reply.PHX_JOIN) return yield* join(message)
        const channel = channels.get(topic)
        if (channel === undefined) {
          // A leave for a channel that never joined (REST-only use) is acknowledged, as Phoenix does.
          const payload = event === Reply.PHX_LEAVE ? STATIC_OK : Reply.error(Reply.UNMATCHED_TOPIC)
          return reply(message.joinRef, message.ref, topic, payload)
        }
        switch (event) {
          case Reply.PHX_LEAVE:
            reply(message.joinRef, message.ref, topic, STATIC_OK)
            send(channel.joinRef, channel.joinRef, topic, Reply.PHX_CLOSE, {})
            return yield* removeChannel(channel)
          case Reply.BROADCAST:
            return yield* broadcastText(channel, message)
          case Reply.PRESENCE:
            return yield* presenceMessage(channel, message)
          case Reply.ACCESS_TOKEN:
            return yield* accessToken(channel, message)
          default:
            return
        }
      })

    const onFrame = (data: string | Uint8Array) =>
      Effect.gen(function*() {
        handle.lastSeenMs = yield* Clock.currentTimeMillis
        const decoded = Serializer.decode(vsn, data)
        if (Result.isFailure(decoded)) {
          yield* Metric.update(ConnectionMetrics.malformed, 1)
          return yield* Effect.logDebug("MalformedWebSocketMessage", decoded.failure.message)
        }
        const inbound = decoded.success
        if (inbound._tag === "UserBroadcast") {
          yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind: "broadcast" }), 1)
          return yield* broadcastBinary(inbound.broadcast)
        }
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.messagesIn, { kind: inbound.message.event === "heartbeat" ? "heartbeat" : "push" }), 1)
        return yield* onMessage(inbound.message)
      })

    const onDeadline = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - handle.lastSeenMs >= config.idleTimeoutMs) {
        const reason = ConnectionError.heartbeatTimeout()
        return yield* closeSocket(closeCodeOf(reason), reason.message)
      }
      for (const channel of [...channels.values()]) {
        const exp = channel.principal.exp
        if (exp !== undefined && exp * 1000 <= now) {
          const secondsAgo = Math.max(0, Math.floor((now - exp * 1000) / 1000))
          yield* shutdownChannel(channel, `Token has expired ${secondsAgo} seconds ago`)
        }
      }
    })

    const onDrain = Effect.gen(function*() {
      for (const channel of channels.values()) {
        send(channel.joinRef, null, channel.topic, Reply.SYSTEM, Reply.system("system", "ok", "Server requested disconnect", channel.subtopic))
      }
      yield* closeSocket(CloseCode.serviceRestart, "server draining")
    })

    const onMail = (mail: Mail): Effect.Effect<void> => {
      switch (mail._tag) {
        case "Frame":
          return onFrame(mail.data)
        case "Deadline":
          return onDeadline
        case "Drain":
          return onDrain
        case "Overflow": {
          const reason = ConnectionError.outboxOverflow()
          return closeSocket(closeCodeOf(reason), reason.message)
        }
        case "Send":
          return Effect.sync(() => void outbox.enqueue(mail.frame))
        case "Closed":
          return Effect.sync(() => {
            ended = true
            outbox.close()
          })
      }
    }

    yield* init.register(handle)
    yield* Metric.modify(ConnectionMetrics.open, 1)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Metric.modify(ConnectionMetrics.open, -1)
        yield* Metric.modify(ConnectionMetrics.channels, -channels.size)
        channels.clear()
        if (!ended) yield* closeSocket(CloseCode.normal, "")
      })
    )
    while (!ended) {
      const mail = yield* Queue.take(mailbox)
      yield* onMail(mail)
      if (paused && Queue.sizeUnsafe(mailbox) < config.mailboxCapacity / 2) {
        paused = false
        socket.resumeReading()
      }
    }
  })

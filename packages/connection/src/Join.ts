/**
 * The join pipeline: one ordered chain of named steps, the shape of Supabase's `RealtimeChannel.join`.
 * Each step either continues (`undefined`) or returns a typed `Refusal`, which ends the join with the
 * reply Supabase gives for it. Steps before `open` decide whether the channel may exist; `open` makes it
 * and subscribes it to the hub; `confirm` waits until the topic is received and answers the join; the steps
 * after it set the channel up. A new check or setup step is a new function placed in `steps` (up to `open`)
 * or `setup` (from `confirm`) where it must run: the steps after it need not change.
 *
 * The two halves run apart (`begin` returns the second as `finish`) so that joins a client sends together are
 * opened together and wait for their topics together: the actor opens every join it has queued before it
 * finishes the first (`ConnectionActor`), and a broker that must subscribe a topic elsewhere (the upstream
 * pool, Redis) gets them in one batch, instead of one round trip per join.
 *
 * An `access_token` push on a joined channel goes through the same token, policy and user checks, written
 * for a channel that exists (`refreshToken`: a failure shuts it down rather than refusing a join).
 */
import { AuthError, ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import { ChangeFeed, History, Hub, Presence, Publication } from "@wedsync/hub"
import { Frame, JoinConfig, Reply, Serializer, WsFrame } from "@wedsync/protocol"
import { Clock, Context, Duration, Effect, Metric, Option, Result, Schedule } from "effect"
import { bindingId, Channel, ChannelSink, remove, shutdown } from "./Channel.ts"
import * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { DeviceCounts } from "./DeviceCounts.ts"
import { closeCodeOf, errorPayload, shutdownText, type WireReason } from "./ErrorReply.ts"
import type { Connection, Services } from "./internal/connection.ts"
import * as RefusalLog from "./RefusalLog.ts"

/** Why a join was refused, and so how it is answered. */
export type Refusal =
  /** The topic is not `realtime:…`: answered at once, as Phoenix answers an unmatched topic, and not counted. */
  | { readonly _tag: "UnmatchedTopic" }
  /** Answered with the reason after `joinErrorDelayMs`; the socket stays. */
  | { readonly _tag: "Refused"; readonly reason: WireReason }
  /** Answered with the reason at once, then the socket is closed with the reason's close code. */
  | { readonly _tag: "SocketClosed"; readonly reason: ConnectionError.Reason }

const refused = (reason: WireReason): Refusal => ({ _tag: "Refused", reason })
const UNMATCHED: Refusal = { _tag: "UnmatchedTopic" }
const CONTINUE = Effect.succeed<Refusal | undefined>(undefined)
const NO_CONFIG = JoinConfig.parse({})

/** One join in progress: what its steps have established so far. */
export class Attempt {
  readonly message: Frame.Message
  /** The topic without `realtime:`; undefined when the topic lacks that prefix. */
  readonly subtopic: string | undefined
  /** The channel this join replaces (the same topic joined before on this socket). */
  readonly previous: Channel | undefined
  /** Set by `payload`. */
  config: JoinConfig.JoinConfig = NO_CONFIG
  /** The connect principal until `token` sets the join's own. */
  principal: Principal.Principal
  /** Set by `open`. */
  channel: Channel | undefined = undefined

  constructor(conn: Connection, message: Frame.Message) {
    this.message = message
    this.subtopic = Frame.subtopicOf(message.topic)
    this.previous = conn.channels.get(message.topic)
    this.principal = conn.principal
  }
}

export type Step = (conn: Connection, attempt: Attempt) => Effect.Effect<Refusal | undefined, never, Services>

/** The topic names a channel: `realtime:` and a non-empty rest. */
export const topic: Step = (_conn, attempt) => {
  if (attempt.subtopic === undefined) return Effect.succeed(UNMATCHED)
  if (attempt.subtopic === "") return Effect.succeed(refused(ConnectionError.topicNameRequired()))
  return CONTINUE
}

/** The node takes joins, the socket is within its joins per second (or is closed) and its channel cap. */
export const limits: Step = (conn, attempt) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    if (conn.isDraining()) return refused(ConnectionError.restarting())
    if (!conn.joins.hit(now)) return { _tag: "SocketClosed", reason: ConnectionError.tooManyJoins() }
    if (attempt.previous === undefined && conn.channels.size >= conn.config.maxChannelsPerConnection) {
      return refused(ConnectionError.tooManyChannels())
    }
    return undefined
  })

/**
 * The join's config: fields of the wrong type are ignored (and logged); an unknown change event or more
 * bindings than `maxBindingsPerChannel` refuse.
 */
export const payload: Step = (conn, attempt) =>
  Effect.suspend(() => {
    const config = JoinConfig.parse(attempt.message.payload)
    attempt.config = config
    const unknownEvent = config.unknownEvents[0]
    const refusal = unknownEvent !== undefined
      ? refused(ConnectionError.unknownChangeEvent(unknownEvent))
      : config.postgresChanges.length > conn.config.maxBindingsPerChannel
      ? refused(ConnectionError.tooManyBindings(conn.config.maxBindingsPerChannel))
      : undefined
    if (config.invalidFields.length === 0) return Effect.succeed(refusal)
    return Effect.as(Effect.logDebug("InvalidJoinPayload", { fields: config.invalidFields }), refusal)
  })

/**
 * The join's principal: its own token verified, or the connect principal when it sent none (an `sb_` key is
 * verified like any token, so the join gets the rights of what it sent); either must not have expired.
 */
export const token: Step = (conn, attempt) => {
  const sent = attempt.config.accessToken
  const principal = sent === undefined
    ? Effect.succeed(conn.principal)
    : Context.get(conn.context, TokenVerifier.TokenVerifier).verify(sent)
  return Effect.match(Effect.flatMap(principal, unexpired), {
    onFailure: (e) => refused(e.reason),
    onSuccess: (p) => {
      attempt.principal = p
      return undefined
    }
  })
}

/** `ChannelPolicy` allows the principal on this topic (public or private). */
export const policy: Step = (conn, attempt) => {
  const channelPolicy = Context.get(conn.context, ChannelPolicy.ChannelPolicy)
  return Effect.match(
    channelPolicy.authorizeJoin(attempt.principal, attempt.subtopic ?? "", attempt.config.isPrivate),
    {
      onFailure: (e) => refused(e.reason),
      onSuccess: () => undefined
    }
  )
}

/**
 * `config.broadcast.replay`, when sent, is usable: valid parameters on a private channel. Checked before `open`, so a
 * refused join leaves no channel behind (the history itself is read after `open`, see `replay`).
 */
export const replayable: Step = (_conn, attempt) => {
  const replay = attempt.config.replay
  if (replay === undefined) return CONTINUE
  if (!attempt.config.isPrivate) return Effect.succeed(refused(ConnectionError.replayOnPublicChannel()))
  if (replay === "invalid") return Effect.succeed(refused(ConnectionError.replayParamsInvalid()))
  return CONTINUE
}

/** The socket may be counted against the principal's user (`maxConnectionsPerUser`). */
export const user: Step = (conn, attempt) =>
  Effect.sync(() =>
    conn.countUser(attempt.principal) ? undefined : refused(ConnectionError.tooManyConnections(" for this user"))
  )

/** Replaces a channel joined before on the topic (as Phoenix does) and subscribes the new one to the hub. */
export const open: Step = (conn, attempt) =>
  Effect.gen(function*() {
    const { topic, joinRef } = attempt.message
    const previous = attempt.previous
    if (previous !== undefined) {
      conn.send(previous.joinRef, previous.joinRef, topic, Reply.PHX_CLOSE, {})
      yield* remove(conn, previous)
    }
    const sink = new ChannelSink(conn.vsn, conn.outbox)
    // Held from before the hub subscription until the replay is out: no live frame can overtake a replayed one. The
    // held frames get the half of the outbox the replay leaves (`replayBudget`): both go out together on release.
    if (attempt.config.replay !== undefined) sink.hold(conn.config.outboxLimitBytes - replayBudget(conn))
    const channel = new Channel(topic, attempt.subtopic ?? "", joinRef, attempt.config, attempt.principal, sink)
    attempt.channel = channel
    const hub = Context.get(conn.context, Hub.Hub)
    hub.add(channel.key, channel.sink)
    conn.channels.set(topic, channel)
    Context.get(conn.context, DeviceCounts).opened(channel)
    conn.refreshExpiry()
    yield* Metric.modify(ConnectionMetrics.channels, 1)
    yield* Metric.update(joinsWith("ok"), 1)
    return undefined
  })

/**
 * Answers the join once the broker receives the topic. The first channel of a topic on this process waits for the
 * broker's subscription (a Redis or upstream round trip), so a broadcast sent elsewhere after the client was told it
 * joined is never missed.
 */
export const confirm: Step = (conn, attempt) =>
  Effect.gen(function*() {
    const channel = attempt.channel
    if (channel === undefined) return undefined
    const { topic, joinRef, ref } = attempt.message
    yield* Context.get(conn.context, Hub.Hub).subscribed(channel.key)
    const echoed = attempt.config.postgresChanges.map((b) => ({ ...b.raw, id: bindingId(b.raw) }))
    conn.reply(joinRef, ref, topic, Reply.ok({ postgres_changes: echoed }))
    return undefined
  })

/** `presence_state` to a join that enabled presence. */
export const presence: Step = (conn, attempt) => {
  const channel = attempt.channel
  if (channel === undefined || !attempt.config.presenceEnabled) return CONTINUE
  // The channel is subscribed (`open`), so every diff after the state reaches it too.
  return Effect.map(Context.get(conn.context, Presence.Presence).state(channel.topic, channel.isPrivate), (state) => {
    conn.sendText(Serializer.encodeRaw(conn.vsn, channel.joinRef, null, channel.topic, Reply.PRESENCE_STATE, state))
    return undefined
  })
}

/**
 * The replay asked for at join: the topic's history from `since`, at most `limit`, pushed as broadcasts with meta
 * `{"replayed":true,"id":…}`, then one `system` error when that is not all the client asked for, then the live frames
 * held back since `open` without the copies of ids the history read found (replayed, or reported missing).
 *
 * Order is what makes the seam gap-free: the channel is subscribed (`open`) and the broker receives the topic
 * (`subscribed` answers true) before the history is read, and the history is written before the live publish
 * (`History.publish`), so every message is in the history read, held back live, or both. Only this topic is waited
 * for: in a join storm the broker's other topics (`settled`) would hold every replay up. The actor waits for the read
 * (one round trip to Redis at most): nothing else of this socket can interleave with the replay.
 *
 * A read that fails shuts the channel down with `UnableToReplayMessages` (a `system` error and `phx_close`): the join
 * was already answered `ok` by `open`, and a channel that silently skipped its replay would look complete.
 */
export const replay: Step = (conn, attempt) =>
  Effect.gen(function*() {
    const channel = attempt.channel
    const request = attempt.config.replay
    if (channel === undefined || request === undefined || request === "invalid") return undefined
    const history = Context.get(conn.context, History.History)
    // `open` already waited; a topic still not received (Redis away or slow) is asked again until SUBSCRIBE_TIMEOUT,
    // so a short subscriber outage does not fail the replay, and is then given up: a history read without the live
    // subscription could miss what is published meanwhile, and the actor must not wait for Redis without end.
    const read = yield* Context.get(conn.context, Hub.Hub).subscribed(channel.key).pipe(
      Effect.repeat({ until: (live) => live, schedule: Schedule.spaced(SUBSCRIBE_RETRY) }),
      Effect.timeoutOption(SUBSCRIBE_TIMEOUT),
      Effect.flatMap((live) =>
        Option.isSome(live)
          ? history.read(channel.key, request.since, request.limit)
          : Effect.fail(new History.HistoryError({ message: "the topic's live subscription is not ready" }))
      ),
      Effect.result
    )
    if (Result.isFailure(read)) {
      yield* Effect.logWarning("UnableToReplayMessages", read.failure.message)
      // The channel closes: its held frames go with it.
      channel.sink.discard()
      yield* Metric.update(replaysWith("failed"), 1)
      yield* shutdown(conn, channel, ConnectionError.replayFailed())
      return undefined
    }
    const entries = read.success.entries
    const frames = entries.map((entry) =>
      Publication.frameFor(History.withMeta(entry.publication, History.replayedMeta(entry.id)), conn.vsn)
    )
    // A replay goes out in one go: it keeps the newest frames that fit half the outbox, so that replaying large
    // messages cannot close the socket as a slow consumer (which would reconnect and replay again).
    const budget = replayBudget(conn)
    let first = frames.length
    for (let bytes = 0; first > 0; first--) {
      bytes += frames[first - 1]?.length ?? 0
      if (bytes > budget) break
    }
    // Held live copies of what the history held are dropped: of a replayed id (a duplicate), and of an id matched
    // but not replayed (over the limit or left out for size), which would arrive after newer replayed ones, out of
    // order; the `system` message below says those are missing.
    const inHistory = new Set<string>(read.success.older)
    for (const entry of entries) inHistory.add(entry.id)
    for (let i = first; i < entries.length; i++) {
      const frame = frames[i]
      if (frame !== undefined) conn.outbox.enqueue(frame)
    }
    const gap = read.success.gap ?? (first > 0 ? { _tag: "TooLarge" as const, left: first, budget } : undefined)
    if (gap !== undefined) {
      const payload = Reply.system("broadcast", "error", History.gapMessage(gap), channel.subtopic)
      conn.send(channel.joinRef, null, channel.topic, Reply.SYSTEM, payload)
    }
    yield* Metric.update(replaysWith(gap === undefined ? "complete" : "incomplete"), 1)
    channel.sink.release(inHistory, yield* Clock.currentTimeMillis)
    if (channel.sink.overflowed) conn.offer({ _tag: "Overflow" })
    return undefined
  })

/** Bytes of replayed frames a join may queue: half the outbox, so the replay and the live frames held meanwhile fit. */
const replayBudget = (conn: Connection): number => Math.floor(conn.config.outboxLimitBytes / 2)

/** Longest wait for the broker to receive a replaying channel's topic before the replay is given up. */
const SUBSCRIBE_TIMEOUT = Duration.seconds(5)
/** Pause between asking the broker again (`subscribed` answers at once while the transport is down). */
const SUBSCRIBE_RETRY = Duration.millis(100)

/** The channel's `postgres_changes` bindings, registered with the change feed. */
export const postgresChanges: Step = (conn, attempt) =>
  attempt.channel === undefined ? CONTINUE : Effect.as(subscribeChanges(conn, attempt.channel), undefined)

/** Every join runs these, in this order: whether the channel may exist, then the channel. */
export const steps: ReadonlyArray<Step> = [
  topic,
  limits,
  payload,
  token,
  policy,
  replayable,
  user,
  open
]

/** Then, once the actor finishes the join: the answer and the channel's setup, in this order. */
export const setup: ReadonlyArray<Step> = [confirm, presence, replay, postgresChanges]

/** What is left of a join after `begin`: its answer (a reply or a refusal) and the channel's setup. */
export type Finish = Effect.Effect<void, never, Services>

const FINISHED: Finish = Effect.void

/**
 * Runs a join's `steps`; returns what is left to run (`setup` for an opened channel, the refusal's answer for a
 * refused join). A refusal that closes the socket is carried out at once.
 */
export const begin = (conn: Connection, message: Frame.Message): Effect.Effect<Finish, never, Services> =>
  Effect.gen(function*() {
    const attempt = new Attempt(conn, message)
    for (const step of steps) {
      const refusal = yield* step(conn, attempt)
      if (refusal === undefined) continue
      if (refusal._tag === "SocketClosed") return yield* Effect.as(refuse(conn, message, refusal), FINISHED)
      return refuse(conn, message, refusal)
    }
    return finish(conn, attempt)
  })

const finish = (conn: Connection, attempt: Attempt): Finish =>
  Effect.gen(function*() {
    for (const step of setup) {
      const refusal = yield* step(conn, attempt)
      if (refusal !== undefined) return yield* refuse(conn, attempt.message, refusal)
    }
  })

/** A whole join, begun and finished at once. */
export const join = (conn: Connection, message: Frame.Message): Effect.Effect<void, never, Services> =>
  Effect.flatten(begin(conn, message))

const joinsWith = (result: string) => Metric.withAttributes(ConnectionMetrics.joins, { result })
const replaysWith = (result: string) => Metric.withAttributes(ConnectionMetrics.replays, { result })

const refuse = (conn: Connection, message: Frame.Message, refusal: Refusal): Effect.Effect<void> => {
  const { topic, joinRef, ref } = message
  switch (refusal._tag) {
    case "UnmatchedTopic":
      return Effect.sync(() => conn.reply(joinRef, ref, topic, errorPayload(ConnectionError.unmatchedTopic())))
    case "SocketClosed": {
      const reason = refusal.reason
      conn.reply(joinRef, ref, topic, errorPayload(reason))
      return Metric.update(joinsWith(reason._tag), 1).pipe(
        Effect.andThen(RefusalLog.log("join", reason)),
        Effect.andThen(conn.closeSocket(closeCodeOf(reason), reason.message))
      )
    }
    case "Refused":
      return joinError(conn, joinRef, ref, topic, refusal.reason)
  }
}

const joinError = (conn: Connection, joinRef: string | null, ref: string | null, topic: string, reason: WireReason) => {
  const payload = errorPayload(reason)
  const delay = conn.config.joinErrorDelayMs
  const counted = Effect.andThen(Metric.update(joinsWith(reason._tag), 1), RefusalLog.log("join", reason))
  if (delay <= 0) return Effect.andThen(counted, Effect.sync(() => conn.reply(joinRef, ref, topic, payload)))
  // The delay damps rejoin storms (Supabase waits 5 s); it runs beside the actor so heartbeats
  // and other channels are not held up.
  const frame = WsFrame.text(Serializer.encode(conn.vsn, { joinRef, ref, topic, event: Reply.PHX_REPLY, payload }))
  const later = Effect.andThen(Effect.sleep(delay), Effect.sync(() => conn.offer({ _tag: "Send", frame })))
  return Effect.andThen(counted, Effect.asVoid(Effect.forkIn(later, conn.scope)))
}

/**
 * The principal, or `InvalidJWTToken` ("Token has expired N seconds ago") once its `exp` has passed by the
 * Clock. Every authorization decision goes through it: a socket's connect principal is verified once at the
 * upgrade and a cached principal may have outlived its token.
 */
export const unexpired = (principal: Principal.Principal): Effect.Effect<Principal.Principal, AuthError.AuthError> => {
  const exp = principal.exp
  if (exp === undefined) return Effect.succeed(principal)
  return Effect.flatMap(Clock.currentTimeMillis, (now) =>
    exp * 1000 <= now
      ? Effect.fail(AuthError.make(AuthError.InvalidJWTToken.expired((now - exp * 1000) / 1000)))
      : Effect.succeed(principal))
}

/**
 * Registers the channel's bindings with the change feed beside the actor (the feed answers only
 * once it really delivers, which may take a while) and reports the outcome with Supabase's
 * `system` messages. A channel that left meanwhile is unsubscribed again.
 */
export const subscribeChanges = (conn: Connection, channel: Channel): Effect.Effect<void> => {
  const bindings = channel.bindings
  if (bindings === undefined) return Effect.void
  const feed = Context.get(conn.context, ChangeFeed.ChangeFeed)
  const report = (results: ReadonlyArray<ChangeFeed.BindingResult>) =>
    Effect.sync(() => {
      if (conn.channels.get(channel.topic) !== channel) return feed.unsubscribe(channel.sink)
      const system = (status: "ok" | "error", message: string) =>
        conn.offer({
          _tag: "Send",
          frame: WsFrame.text(Serializer.encode(conn.vsn, {
            joinRef: channel.joinRef,
            ref: null,
            topic: channel.topic,
            event: Reply.SYSTEM,
            payload: Reply.system("postgres_changes", status, message, channel.subtopic)
          }))
        })
      for (const result of results) if (result._tag === "Refused") system("error", shutdownText(result.reason))
      if (results.some((result) => result._tag === "Subscribed")) system("ok", "Subscribed to PostgreSQL")
    })
  const subscriber = { sink: channel.sink, topic: channel.topic, bindings, access: channel.principal }
  const subscribe = Effect.asVoid(Effect.forkIn(Effect.flatMap(feed.subscribe(subscriber), report), conn.scope))
  // The rows are authorized with this principal: it must not have expired.
  return Effect.matchEffect(unexpired(channel.principal), {
    onFailure: (e) => shutdown(conn, channel, e.reason),
    onSuccess: () => subscribe
  })
}

/**
 * An `access_token` push: the `token`, `policy` and `user` checks again with the token sent, on the joined
 * channel; a failure shuts the channel down, success renews its `postgres_changes` subscription.
 */
export const refreshToken = (
  conn: Connection,
  channel: Channel,
  message: Frame.Message
): Effect.Effect<void, never, Services> =>
  Effect.gen(function*() {
    const sent = (message.payload as { readonly access_token?: unknown } | null)?.access_token
    // `null` is no token at all (a supabase-js token callback that answers null after sign-out): the channel drops
    // to the socket's own key, as a join without `access_token` would. Any other non-string is ignored.
    if (sent !== null && typeof sent !== "string") return
    const token = sent ?? conn.principal.token
    if (token === channel.principal.token) {
      // Nothing changes, but the principal is still checked: a resent token may have expired meanwhile.
      const current = yield* Effect.result(unexpired(channel.principal))
      if (Result.isFailure(current)) return yield* shutdown(conn, channel, current.failure.reason)
      return
    }
    // Any other value replaces the channel's rights, also one that is not a user JWT: supabase-js sends the
    // project's anon JWT or `sb_publishable_` key on sign-out, and the channel drops to that key's rights
    // (a private channel they do not allow is shut down; a public one goes on with them).
    const verifier = Context.get(conn.context, TokenVerifier.TokenVerifier)
    const channelPolicy = Context.get(conn.context, ChannelPolicy.ChannelPolicy)
    const verified = yield* (sent === null ? Effect.succeed(conn.principal) : verifier.verify(token)).pipe(
      Effect.flatMap(unexpired),
      Effect.tap((principal) => channelPolicy.authorizeJoin(principal, channel.subtopic, channel.isPrivate)),
      Effect.result
    )
    if (Result.isFailure(verified)) return yield* shutdown(conn, channel, verified.failure.reason)
    if (!conn.countUser(verified.success)) {
      return yield* shutdown(conn, channel, ConnectionError.tooManyConnections(" for this user"))
    }
    channel.principal = verified.success
    conn.refreshExpiry()
    // As Supabase: the subscription is renewed with the new claims and confirmed again.
    yield* subscribeChanges(conn, channel)
  })

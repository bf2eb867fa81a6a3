/**
 * The hub's `Broker` over the upstream pool: in upstream mode the hosted Supabase project is the bus between this
 * gateway's hub and everything else connected to the project (phones on hosted Supabase, other gateway processes,
 * server-side workers).
 *
 * Why the Broker and not the hub's publish path: the broker is already the hub's one seam to "elsewhere", with the
 * contract an upstream needs. The hub joins a topic with its first local subscriber and leaves it with its last (one
 * upstream channel per topic, held as long as someone here listens); it hands every local publication to `publish`
 * after its local fan-out (each broadcast goes upstream once, whatever the number of local subscribers); it delivers
 * what `receive` hands it to local subscribers only, never back to the broker, so an upstream broadcast re-published
 * locally is not sent upstream again (no echo loop, by construction); `subscribed` lets the join of a topic's first
 * channel wait until the upstream channel is joined; and `onGap` makes the hub send the protocol's `system` message
 * "messages may have been missed" when an upstream channel comes back after its socket was lost. Wrapping
 * `Hub.publish` instead would have had to re-implement each of these. The upstream channels are joined with
 * `self: false`, so the upstream never sends this process its own broadcasts back.
 *
 * What goes upstream: user broadcasts (socket and REST), JSON payloads as JSON and binary payloads as binary (realtime-js
 * sends an `ArrayBuffer` payload as a binary user broadcast). A broadcast to a topic with no local subscriber (a REST
 * broadcast) is not worth a channel: it goes over the project's REST broadcast API (`UpstreamPool.publish`), so that
 * publishing to thousands of topics cannot fill the pool with channels nobody listens to. Local presence goes up as one
 * aggregate entry per topic (`RelayPresence`: an upstream channel holds one presence entry), which other relays unpack;
 * `system` messages stay local. What comes back: broadcasts, binary ones as binary, and presence joins and leaves of
 * the upstream channel, other relays' aggregates unpacked into their entries (`UpstreamTopics.presence` gives the
 * current state for a local `presence_state`).
 *
 * Broadcasts that come from upstream on a private topic are written to this gateway's history (`History`) before
 * they reach local subscribers, with an id of this gateway (`meta.id`), exactly as a local broadcast is: a local client
 * that comes back with `replay` gets what the project sent while it was away, not only what was published here. They
 * are written in arrival order, one topic at a time, so live order is kept.
 *
 * Delivery is at most once, as with the Redis broker: a broadcast published while a topic's upstream channel is still
 * joining waits for the join, one published while its socket is reconnecting is kept by the pool and sent when the
 * channel is joined again (up to `UpstreamPool.OUTBOX_LIMIT` each way, later ones are not relayed); what the upstream
 * sent while the socket was down is lost and reported by the gap.
 */
import { Broker, History, Publication } from "@wedsync/hub"
import { Frame, Serializer } from "@wedsync/protocol"
import { Clock, Context, Deferred, Effect, Exit, Layer, Result, Scope } from "effect"
import { randomUUID } from "node:crypto"
import * as RelayPresence from "./RelayPresence.ts"
import type * as UpstreamError from "./UpstreamError.ts"
import * as UpstreamPool from "./UpstreamPool.ts"

export interface BrokerOptions {
  /** Longest `subscribed` waits for a topic's upstream join before answering `false`. */
  readonly subscribeWaitMs: number
  /** First pause before joining again a topic whose upstream join failed (timeout, pool full); doubles up to 30 s. */
  readonly retryBaseMs: number
}

export const defaults: BrokerOptions = { subscribeWaitMs: 5_000, retryBaseMs: 1_000 }

const RETRY_MAX_MS = 30_000

/** Private upstream broadcasts waiting for their history write, per topic, at most. */
const RECORD_BACKLOG = 10_000

/**
 * Refusals that are the upstream's limits of the moment, not a verdict on the topic: Supabase's `Too many channels`
 * (ChannelRateLimitReached), `Too many joins per second` (ClientJoinRateLimitReached) and rate-limit answers.
 */
const TRANSIENT_REFUSAL = /too many|rate ?limit/i

export interface UpstreamTopicsShape {
  /** The upstream presence of a topic this process holds, in Phoenix's shape; empty when none. */
  readonly presence: (key: Publication.TopicKey) => UpstreamPool.PresenceEntries
}

/** What the relay knows of the upstream topics beside the broker contract. */
export class UpstreamTopics extends Context.Service<UpstreamTopics, UpstreamTopicsShape>()(
  "@wedsync/upstream/UpstreamTopics"
) {}

interface Held {
  readonly key: Publication.TopicKey
  readonly scope: Scope.Closeable
  /** Hub joins (0 for a topic held only to send a publication nobody here listens to). */
  refs: number
  subscription: UpstreamPool.Subscription | undefined
  /** Publications waiting for the join, at most `UpstreamPool.OUTBOX_LIMIT` (later ones are not relayed). */
  pending: Array<readonly [string, unknown]> | undefined
  /** Completed by each join attempt: true once joined, false when it failed (a retry replaces it). */
  ready: Deferred.Deferred<boolean>
  interrupted: boolean
  dropped: boolean
  /** Local subscribers were served while the upstream channel was not joined: tell them once it is. */
  missed: boolean
  failures: number
  /** Private broadcasts from upstream waiting for their history write, in arrival order. */
  readonly recorded: Array<Publication.Publication>
  /** A fiber is writing `recorded` out. */
  recording: boolean
  /** This process's presence on the topic and the other relays' (`RelayPresence`). */
  readonly presence: RelayPresence.TopicPresence
  /** A track of the local aggregate is scheduled. */
  presenceScheduled: boolean
}

const decoder = new TextDecoder()

/** The user event and payload (JSON value, or an `ArrayBuffer` for a binary one) to relay; undefined: stays local. */
const outgoing = (publication: Publication.Publication): readonly [string, unknown] | undefined => {
  if (publication.event !== "broadcast") return undefined
  const body = publication.body
  try {
    if (body._tag === "Json") {
      const message = JSON.parse(body.json) as { readonly event?: unknown; readonly payload?: unknown }
      return typeof message.event === "string" ? [message.event, message.payload ?? {}] : undefined
    }
    // A copy of exactly the payload's bytes: the publication's view (a Node Buffer, whose `slice` is another view) may
    // share a larger buffer with the rest of the frame it came in.
    if (body.encoding === "binary") return [body.userEvent, new Uint8Array(body.payload).buffer]
    if (body.encoding !== "json") return undefined
    return [body.userEvent, JSON.parse(decoder.decode(body.payload))]
  } catch {
    // Publications were checked when they were accepted; one that does not parse is not relayed.
    return undefined
  }
}

export const make = (
  options: BrokerOptions = defaults
): Effect.Effect<
  Broker.BrokerShape & UpstreamTopicsShape,
  never,
  UpstreamPool.UpstreamPool | History.History | Scope.Scope
> =>
  Effect.gen(function*() {
    const pool = yield* UpstreamPool.UpstreamPool
    const history = yield* History.History
    const brokerScope = yield* Effect.scope
    const runFork = Effect.runForkWith(yield* Effect.context<never>())
    const held = new Map<Publication.TopicKey, Held>()
    let handler: ((publication: Publication.Publication) => void) | undefined
    let gapListeners: ReadonlyArray<(keys: ReadonlyArray<Publication.TopicKey>) => void> = []
    /** This process among the relays of the project: its presence aggregates carry it, so it skips its own. */
    const nodeId = randomUUID()

    /** Tracks the topic's local aggregate upstream, once per `PRESENCE_RELAY_MS` at most. */
    const schedulePresence = (h: Held) => {
      if (h.presenceScheduled) return
      h.presenceScheduled = true
      const track = Effect.sync(() => {
        h.presenceScheduled = false
        if (!h.dropped) h.subscription?.track(h.presence.aggregate(nodeId))
      })
      runFork(Effect.forkIn(Effect.andThen(Effect.sleep(RelayPresence.PRESENCE_RELAY_MS), track), h.scope))
    }

    /**
     * Writes a topic's waiting broadcasts to the history, each then delivered locally with its id, in order. It runs in
     * the topic's scope (dropping the topic ends it) and always leaves `recording` false when it ends, so that the
     * next broadcast starts it again.
     */
    const drainRecorded = (h: Held) =>
      Effect.gen(function*() {
        while (true) {
          const publication = h.recorded.shift()
          if (publication === undefined) return
          const id = History.makeId(yield* Clock.currentTimeMillis)
          yield* history.append({ id, publication })
          if (!h.dropped) handler?.(History.withMeta(publication, History.liveMeta(id)))
        }
      }).pipe(Effect.ensuring(Effect.sync(() => {
        h.recording = false
      })))

    /**
     * A broadcast from upstream to local subscribers: through the history first when its topic is private. At most
     * `RECORD_BACKLOG` wait for their history write (a slow history must not grow memory without bound); past it they
     * are not relayed, and counted as dropped.
     */
    const deliverBroadcast = (h: Held, publication: Publication.Publication) => {
      if (!publication.isPrivate) return handler?.(publication)
      if (h.recorded.length >= RECORD_BACKLOG)
        return pool.dropped("the history write backlog of a private topic is full")
      h.recorded.push(publication)
      if (h.recording) return
      h.recording = true
      runFork(Effect.forkIn(drainRecorded(h), h.scope))
    }

    const listener = (h: Held): UpstreamPool.Listener => {
      const { topic, isPrivate } = Publication.topicOfKey(h.key)
      return {
        onMessage: (message) => {
          if (h.dropped) return
          switch (message._tag) {
            case "Broadcast": {
              const meta = message.meta === undefined ? undefined : JSON.stringify(message.meta)
              if (message.payload instanceof ArrayBuffer) {
                // Kept binary, so that local v2 clients get the same bytes (v1 clients get nothing, as for a local
                // binary broadcast); one whose fields do not fit a kind-4 frame is not relayed.
                const binary = Publication.userBroadcast(
                  topic,
                  isPrivate,
                  message.event,
                  "binary",
                  new Uint8Array(message.payload),
                  meta
                )
                if (Result.isSuccess(binary)) deliverBroadcast(h, binary.success)
                return
              }
              const payload = JSON.stringify(message.payload ?? {})
              deliverBroadcast(
                h,
                Publication.json(
                  topic,
                  isPrivate,
                  "broadcast",
                  Serializer.broadcastPayloadJson(message.event, payload, meta)
                )
              )
              return
            }
            case "PresenceDiff": {
              const diff = h.presence.applyUpstream(nodeId, message.joins, message.leaves)
              if (diff !== undefined)
                handler?.(Publication.json(topic, isPrivate, "presence_diff", JSON.stringify(diff)))
              return
            }
            case "PostgresChange":
              return
          }
        },
        onSignal: (signal) => {
          if (signal._tag === "Interrupted") {
            h.interrupted = true
            return
          }
          h.interrupted = false
          h.missed = false
          tellGap(h)
        }
      }
    }

    const drop = (h: Held) => {
      if (h.dropped) return
      h.dropped = true
      if (held.get(h.key) === h) held.delete(h.key)
      runFork(Scope.close(h.scope, Exit.void))
    }

    /** Drops a topic nobody here listens to once its publications are out. */
    const dropIfUnused = (h: Held) => {
      if (h.refs === 0 && h.pending === undefined) drop(h)
    }

    const specOf = (key: Publication.TopicKey): UpstreamPool.ChannelSpec => {
      const { topic, isPrivate } = Publication.topicOfKey(key)
      return { topic: Frame.subtopicOf(topic) ?? topic, isPrivate, presence: true }
    }

    const tellGap = (h: Held) => {
      for (const gap of gapListeners) gap([h.key])
    }

    const settle = (h: Held, result: Result.Result<UpstreamPool.Subscription, UpstreamError.UpstreamError>) =>
      Effect.suspend(() => {
        if (Result.isFailure(result)) {
          // Publications waiting for this join are lost (at most once), as while a Redis broker is away.
          h.pending = undefined
          Deferred.doneUnsafe(h.ready, Exit.succeed(false))
          const { topic, isPrivate } = Publication.topicOfKey(h.key)
          const reason = result.failure.message
          // A refusal is the upstream's answer, unless it is one of its limits (too many channels or joins, which pass);
          // a timeout or a full pool may pass too: while local subscribers remain, the topic is joined again after a
          // doubling pause, and they are told of the gap once it is joined.
          const final = result.failure.reason._tag === "JoinRefused" && !TRANSIENT_REFUSAL.test(reason)
          if (final || h.refs === 0 || h.dropped) {
            dropIfUnused(h)
            return Effect.logWarning("upstream channel not joined; the topic is served locally only", {
              topic,
              private: isPrivate,
              reason
            })
          }
          h.missed = true
          const delay = Math.min(RETRY_MAX_MS, options.retryBaseMs * 2 ** h.failures++)
          const retry = Effect.sleep(delay).pipe(
            Effect.andThen(Effect.sync(() => {
              if (h.dropped) return
              if (h.refs === 0) return dropIfUnused(h)
              h.ready = Deferred.makeUnsafe<boolean>()
              h.pending = []
              queueJoin(h)
            }))
          )
          return Effect.andThen(
            Effect.logWarning("upstream channel not joined yet; served locally, joining again", {
              topic,
              private: isPrivate,
              reason,
              retryInMs: delay
            }),
            Effect.asVoid(Effect.forkIn(retry, h.scope))
          )
        }
        const subscription = result.success
        h.subscription = subscription
        h.failures = 0
        // Presence tracked here while the channel was joining goes up now.
        if (h.presence.local.size > 0) schedulePresence(h)
        const pending = h.pending ?? []
        h.pending = undefined
        for (const [event, payload] of pending) subscription.post(event, payload)
        Deferred.doneUnsafe(h.ready, Exit.succeed(true))
        if (h.missed) {
          h.missed = false
          tellGap(h)
        }
        dropIfUnused(h)
        return Effect.void
      })

    let joining: Array<Held> = []
    let flushScheduled = false
    let closed = false

    const flushJoins = () => {
      flushScheduled = false
      const batch = joining
      joining = []
      if (closed || batch.length === 0) return
      runFork(
        pool.subscribeMany(batch.map((h) => ({ spec: specOf(h.key), listener: listener(h), scope: h.scope }))).pipe(
          Effect.flatMap((result) =>
            Effect.forEach(result.items, (item, i) => settle(batch[i]!, item.result), { discard: true })
          ),
          // Every item lives in its topic's own scope; the batch itself holds nothing.
          Effect.scoped
        )
      )
    }

    const queueJoin = (h: Held) => {
      joining.push(h)
      if (!flushScheduled) {
        flushScheduled = true
        // Topics first joined within one turn of the event loop (a reconnect storm) are subscribed as one batch, placed
        // socket by socket before any join is awaited.
        setImmediate(flushJoins)
      }
    }

    const hold = (key: Publication.TopicKey): Held => {
      const existing = held.get(key)
      if (existing !== undefined) return existing
      const h: Held = {
        key,
        scope: Scope.forkUnsafe(brokerScope),
        refs: 0,
        subscription: undefined,
        pending: [],
        ready: Deferred.makeUnsafe<boolean>(),
        interrupted: false,
        dropped: false,
        missed: false,
        failures: 0,
        recorded: [],
        recording: false,
        presence: new RelayPresence.TopicPresence(),
        presenceScheduled: false
      }
      held.set(key, h)
      queueJoin(h)
      return h
    }

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        for (const h of held.values()) h.dropped = true
        held.clear()
        for (const h of joining) Deferred.doneUnsafe(h.ready, Exit.succeed(false))
        joining = []
      })
    )

    return {
      publish: (publication) =>
        Effect.sync(() => {
          // This process's presence changes: the topic's aggregate upstream follows them (the diff itself stays here).
          if (publication.event === "presence_diff") {
            const h = held.get(Publication.keyOf(publication))
            if (h !== undefined && publication.body._tag === "Json" && h.presence.applyLocal(publication.body.json)) {
              schedulePresence(h)
            }
            return
          }
          const message = outgoing(publication)
          if (message === undefined) return
          const key = Publication.keyOf(publication)
          const h = held.get(key)
          // A topic nobody here listens to (a REST broadcast) is not joined for one message: it goes over the
          // project's REST API. Binary ones come only from a client joined to the topic, so it is held.
          if (h === undefined && !(message[1] instanceof ArrayBuffer)) {
            const { topic, isPrivate } = Publication.topicOfKey(key)
            return pool.publish({
              topic: Frame.subtopicOf(topic) ?? topic,
              isPrivate,
              event: message[0],
              payload: message[1]
            })
          }
          const target = h ?? hold(key)
          if (target.subscription !== undefined) target.subscription.post(message[0], message[1])
          else if (target.pending !== undefined && target.pending.length < UpstreamPool.OUTBOX_LIMIT) {
            target.pending.push(message)
          }
        }),
      receive: (receiver) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            handler = receiver
          }),
          () =>
            Effect.sync(() => {
              handler = undefined
            })
        ),
      join: (key) => {
        hold(key).refs++
      },
      leave: (key) => {
        const h = held.get(key)
        if (h === undefined) return
        h.refs--
        dropIfUnused(h)
      },
      settled: Effect.suspend(() =>
        Effect.forEach([...held.values()], (h) => Deferred.await(h.ready), { discard: true, concurrency: "unbounded" })
      ),
      subscribed: (key) =>
        Effect.suspend(() => {
          const h = held.get(key)
          if (h === undefined) return Effect.succeed(true)
          // While the channel's socket is lost the topic is not received; its subscribers will be told of the gap.
          if (h.interrupted) return Effect.succeed(false)
          return Deferred.await(h.ready).pipe(
            Effect.timeoutOrElse({
              duration: options.subscribeWaitMs,
              orElse: () =>
                Effect.sync(() => {
                  // Answered before the upstream channel was joined: the subscriber may miss what comes meanwhile.
                  h.missed = true
                  return false
                })
            })
          )
        }),
      onGap: (gap) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            gapListeners = [...gapListeners, gap]
          }),
          () =>
            Effect.sync(() => {
              gapListeners = gapListeners.filter((g) => g !== gap)
            })
        ),
      state: Effect.sync(() => {
        for (const h of held.values()) if (h.interrupted) return "disconnected" as const
        return "connected" as const
      }),
      presence: (key) => {
        const h = held.get(key)
        const upstream = h?.subscription?.presence()
        return h === undefined || upstream === undefined ? Object.create(null) : h.presence.state(upstream)
      }
    }
  })

/** The broker and the upstream topics, over the pool, with `options`. */
export const layerOptions = (
  options: Partial<BrokerOptions>
): Layer.Layer<Broker.Broker | UpstreamTopics, never, UpstreamPool.UpstreamPool | History.History> =>
  Layer.effectContext(
    Effect.map(
      make({ ...defaults, ...options }),
      (relay) => Context.make(Broker.Broker, relay).pipe(Context.add(UpstreamTopics, { presence: relay.presence }))
    )
  )

/** The broker and the upstream topics, over the pool. */
export const layer: Layer.Layer<Broker.Broker | UpstreamTopics, never, UpstreamPool.UpstreamPool | History.History> =
  layerOptions({})

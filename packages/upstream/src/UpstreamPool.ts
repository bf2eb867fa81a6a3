/**
 * A pool of Supabase Realtime connections (supabase-js `RealtimeClient`s) shared by every local subscriber.
 *
 * Channels are keyed by (topic, private, config) and reference-counted: the first subscriber of a key joins one
 * upstream channel, later ones reuse it, and the last one leaving releases it after `idleGraceMs`. Postgres Changes
 * bindings with the same (schema, table, event, filter) share one upstream channel, whatever the local topics that
 * asked for them. Channels are placed on the first socket with room (`channelsPerSocket`, hosted Supabase allows 100);
 * a socket is opened when none has room, within `maxSockets`, and closed when its last channel (and pre-warm hold)
 * is gone. New joins go out at most `joinsPerSecond` a second.
 *
 * Health: every socket's heartbeat round-trip is a metric (`wedsync_upstream_heartbeat_seconds`) and in `stats`. A lost
 * socket is reconnected by its client after a jittered, doubling delay, and every channel it held joins again; each
 * subscriber is told with an explicit signal (`Interrupted` when its channel stops receiving, `Rejoined` when it
 * receives again), never a silent gap. Upstream broadcasts are not replayed, so nothing is delivered twice.
 *
 * Every socket and channel belongs to the pool's scope, every subscription to its caller's: closing a subscriber's scope
 * releases its reference, closing the pool's scope disconnects everything.
 */
import { RealtimeClient, type RealtimeChannel } from "@supabase/supabase-js"
import { HotMetric } from "@wedsync/metrics"
import { Clock, Context, Deferred, Effect, Layer, Queue, Redacted, Result, Scope } from "effect"
import { createHash } from "node:crypto"
import { UpstreamConfig, type UpstreamOptions } from "./UpstreamConfig.ts"
import { guardedWebSocket } from "./GuardedWebSocket.ts"
import * as UpstreamError from "./UpstreamError.ts"
import * as UpstreamMetrics from "./UpstreamMetrics.ts"

/** A broadcast/presence channel: one upstream channel per distinct spec. */
export interface ChannelSpec {
  /** The topic without its `realtime:` prefix, as supabase-js's `channel(name)`. */
  readonly topic: string
  readonly isPrivate?: boolean | undefined
  /** Receive the channel's presence (joins and leaves of upstream-side clients). */
  readonly presence?: boolean | undefined
}

/** One Postgres Changes binding, as a supabase-js `postgres_changes` filter. */
export interface ChangesBinding {
  readonly schema: string
  readonly table?: string | undefined
  readonly event: "*" | "INSERT" | "UPDATE" | "DELETE"
  readonly filter?: string | undefined
}

/** Presence entries in Phoenix's diff shape: key → metas, each with its `phx_ref`. */
export type PresenceEntries = Record<string, { readonly metas: ReadonlyArray<Record<string, unknown>> }>

/** What an upstream channel delivers to its subscribers. */
export type UpstreamMessage =
  | { readonly _tag: "Broadcast"; readonly event: string; readonly payload: unknown; readonly meta?: unknown }
  | { readonly _tag: "PresenceDiff"; readonly joins: PresenceEntries; readonly leaves: PresenceEntries }
  /**
   * The `data` of the upstream's `postgres_changes` frame as sent: `schema`, `table`, `commit_timestamp`, `type`,
   * `columns`, `record`, `old_record`, `errors`.
   */
  | { readonly _tag: "PostgresChange"; readonly data: unknown }

/**
 * The upstream's state as a subscriber must know it: `Interrupted` when the channel stopped receiving (its socket was
 * lost, or the upstream closed it): messages published upstream from then on are missed until `Rejoined`.
 */
export type UpstreamSignal =
  /** `retryInMs`: when the pool joins it again, for a channel the upstream closed (a lost socket reconnects on its own). */
  | { readonly _tag: "Interrupted"; readonly reason: string; readonly retryInMs?: number }
  | { readonly _tag: "Rejoined" }

/** Called synchronously from the upstream socket's message handler: must not block and must not throw. */
export interface Listener {
  readonly onMessage: (message: UpstreamMessage) => void
  readonly onSignal?: ((signal: UpstreamSignal) => void) | undefined
}

/** One subscriber's hold on an upstream channel. */
export interface Subscription {
  readonly key: string
  /** The pool's number of the socket the channel is on. */
  readonly socketId: number
  /**
   * Broadcasts `payload` as `event` on the upstream channel (the pool's own channel never receives it back); fails with
   * `SendFailed` while the channel is not joined.
   */
  readonly send: (event: string, payload: unknown) => Effect.Effect<void, UpstreamError.UpstreamError>
  /**
   * `send` without waiting, for a relay's hot path: handed to the socket at once, in call order. While the channel is
   * not joined (its socket reconnecting, or the upstream rejoining it) up to `OUTBOX_LIMIT` are kept in order and sent
   * once it is joined again; beyond that they are dropped. Drops and failures are counted in
   * `wedsync_upstream_send_failures_total`. Never sent over realtime-js's REST fallback, which would lose binary
   * payloads and the order.
   */
  readonly post: (event: string, payload: unknown) => void
  /** The upstream channel's current presence (empty unless the spec asked for presence). */
  readonly presence: () => PresenceEntries
  /**
   * Sets the channel's one presence entry upstream to `payload` (`undefined` removes it): a relay tracks its local
   * presence of a topic as one entry. The channel is shared, so the last call wins. Kept while the channel is not
   * joined and tracked again each time it is joined again (the upstream forgets a channel's presence with it). A
   * refused track is counted in `wedsync_upstream_send_failures_total`.
   */
  readonly track: (payload: Record<string, unknown> | undefined) => void
  /** Drops this subscriber's reference now rather than when its scope closes; idempotent. */
  readonly release: Effect.Effect<void>
}

/** One subscription of a batch. */
export interface BatchRequest {
  readonly spec: ChannelSpec
  readonly listener: Listener
  /**
   * The scope this item's subscription lives in, when it is not the caller's: a relay subscribing many topics at once
   * whose subscriptions each end on their own (the gateway's broker, one scope per topic).
   */
  readonly scope?: Scope.Scope | undefined
}

/** One item of a batch, in the order given. */
export interface BatchItem<A> {
  readonly request: A
  readonly result: Result.Result<Subscription, UpstreamError.UpstreamError>
}

export interface BatchResult<A> {
  readonly items: ReadonlyArray<BatchItem<A>>
  /** Socket id → indexes of the items subscribed on it (failed items are on none). */
  readonly bySocket: ReadonlyMap<number, ReadonlyArray<number>>
}

export interface SocketStats {
  readonly id: number
  readonly channels: number
  readonly connected: boolean
  /** Last heartbeat round-trip, undefined before the first answer. */
  readonly heartbeatMs: number | undefined
  readonly reconnects: number
}

export interface PoolStats {
  readonly sockets: ReadonlyArray<SocketStats>
  readonly channels: number
}

export interface UpstreamPoolShape {
  /** Joins (or reuses) the channel of `spec` for the life of the caller's scope; fails with the join's error. */
  readonly subscribe: (
    spec: ChannelSpec,
    listener: Listener
  ) => Effect.Effect<Subscription, UpstreamError.UpstreamError, Scope.Scope>
  /** Joins (or reuses) the upstream binding for the life of the caller's scope. */
  readonly changes: (
    binding: ChangesBinding,
    listener: Listener
  ) => Effect.Effect<Subscription, UpstreamError.UpstreamError, Scope.Scope>
  /** Subscribes every spec at once, placed socket by socket; each item has its own result, one failure fails none else. */
  readonly subscribeMany: (
    requests: ReadonlyArray<BatchRequest>
  ) => Effect.Effect<BatchResult<BatchRequest>, never, Scope.Scope>
  /** Releases every subscription (each starts its channel's idle grace when it was the last). */
  readonly releaseMany: (subscriptions: ReadonlyArray<Subscription>) => Effect.Effect<void>
  /**
   * Broadcasts to a topic the caller holds no channel of, without joining one: queued and sent with the project's REST
   * broadcast API (`POST /realtime/v1/api/broadcast`, the service key), up to `REST_BATCH` messages a request. Joining a
   * channel per topic for this would let anyone who can publish (one REST batch to thousands of topics) fill every
   * upstream socket with channels nobody listens to. At most `REST_QUEUE_LIMIT` wait; past it, and on a refused request,
   * they are counted in `wedsync_upstream_send_failures_total`. JSON payloads only (the API's).
   */
  readonly publish: (message: RestBroadcast) => void
  /**
   * Counts an upstream message a relay could not pass on (`wedsync_upstream_messages_dropped_total`), logged with its
   * reason at most once a minute.
   */
  readonly dropped: (reason: string) => void
  /**
   * Opens up to `sockets` sockets and joins `channels` ahead of a known peak, held (with no subscriber) for the life
   * of the caller's scope; the channels' results are per item.
   */
  readonly prewarm: (options: {
    readonly sockets: number
    readonly channels: ReadonlyArray<ChannelSpec>
  }) => Effect.Effect<BatchResult<ChannelSpec>, never, Scope.Scope>
  readonly stats: Effect.Effect<PoolStats>
}

/** One broadcast for the REST path (`publish`). */
export interface RestBroadcast {
  /** The topic without its `realtime:` prefix. */
  readonly topic: string
  readonly isPrivate: boolean
  readonly event: string
  /** A JSON object. */
  readonly payload: unknown
}

/** Messages per REST broadcast request, at most. */
export const REST_BATCH = 100
/** Characters of JSON per REST broadcast request, at most (a single larger message goes alone). */
export const REST_BATCH_CHARS = 1_000_000
/** REST broadcasts waiting to be sent, at most; past it they are dropped (and counted). */
export const REST_QUEUE_LIMIT = 10_000

/** The pool's key of a channel spec: the upstream channel's identity (topic, privacy and the config that changes it). */
export const channelKey = (spec: ChannelSpec): string =>
  `${spec.isPrivate === true ? "private" : "public"}|${spec.presence === true ? "presence" : "-"}|${spec.topic}`

/** The pool's key of a Postgres Changes binding. */
export const changesKey = (b: ChangesBinding): string =>
  `changes|${b.schema}|${b.table ?? "*"}|${b.event}|${b.filter ?? ""}`

/** The upstream topic of a shared binding: stable, so a restarted pool joins the same one. */
const changesTopic = (key: string): string =>
  `wedsync-changes:${createHash("sha256").update(key).digest("hex").slice(0, 24)}`

type EntryStatus = "joining" | "joined" | "interrupted" | "closed"

interface Entry {
  readonly key: string
  readonly topic: string
  readonly socket: PoolSocket
  readonly open: (client: RealtimeClient) => RealtimeChannel
  channel: RealtimeChannel
  status: EntryStatus
  refs: number
  /** Bumped by every acquire, so an idle release scheduled before it does nothing. */
  generation: number
  readonly listeners: Set<Listener>
  readonly joined: Deferred.Deferred<void, UpstreamError.UpstreamError>
  /**
   * A Postgres Changes channel is ready only once the upstream says "Subscribed to PostgreSQL" (a `system` message
   * after the join reply): a change committed between the two would be missed.
   */
  readonly awaitsSystem: boolean
  /** `post`s waiting for the channel to be joined (again), in order; at most `OUTBOX_LIMIT`. */
  outbox: Array<readonly [string, unknown]> | undefined
  /** Times in a row the upstream closed this channel; the pause before joining it again doubles with each. */
  closes: number
  /** When it was last joined (Clock millis): a channel that stayed joined for `STABLE_MS` starts its count again. */
  joinedAt: number
  /** The presence entry the channel should have upstream (`Subscription.track`); undefined: none. */
  presencePayload: Record<string, unknown> | undefined
}

/** A channel joined this long since the upstream last closed it is not closing in a loop any more. */
const STABLE_MS = 30_000

/** Posts kept per channel while it is not joined: a few seconds of a busy topic, bounded in memory. */
export const OUTBOX_LIMIT = 1_000

interface PoolSocket {
  readonly id: number
  readonly client: RealtimeClient
  /** Channels placed here (joining, joined or within their idle grace). */
  readonly entries: Set<Entry>
  /** Topics with a channel on the client, including ones still leaving (the client refuses a second of a topic). */
  readonly topics: Set<string>
  /** Postgres Changes channels by their full topic (`realtime:…`), for the socket's raw message hook. */
  readonly changes: Map<string, Entry>
  holds: number
  connected: boolean
  closing: boolean
  heartbeatMs: number | undefined
  reconnects: number
}

/** A decoded Phoenix message as the socket's message callbacks receive it. */
interface RawMessage {
  readonly topic: string
  readonly event: string
  readonly payload?: { readonly data?: unknown } | null
}

const noopListener: Listener = { onMessage: () => {} }

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

/** realtime-js presence (`presence_ref`) back to Phoenix's metas (`phx_ref`). */
const toEntries = (state: Record<string, ReadonlyArray<Record<string, unknown>>>): PresenceEntries => {
  const out: PresenceEntries = Object.create(null)
  for (const key of Object.keys(state)) {
    out[key] = {
      metas: state[key]!.map(({ presence_ref, ...meta }) => ({ ...meta, phx_ref: presence_ref }))
    }
  }
  return out
}

/**
 * The channel's presence as phoenix's `Presence` keeps it (`{key: {metas}}`, each meta with its `phx_ref`), read where
 * this version of realtime-js keeps it; undefined when it is not there. realtime-js's own `presenceState()` rebuilds it
 * into a plain object, where an entry whose key is `__proto__` (any project client may choose that key) is lost.
 */
const phoenixPresence = (channel: RealtimeChannel): PresenceEntries | undefined => {
  const holder = channel as unknown as { presence?: { presenceAdapter?: { presence?: { state?: unknown } } } }
  const state = holder.presence?.presenceAdapter?.presence?.state
  if (typeof state !== "object" || state === null) return undefined
  const out: PresenceEntries = Object.create(null)
  for (const key of Object.getOwnPropertyNames(state)) {
    const metas = (state as Record<string, { readonly metas?: unknown } | undefined>)[key]?.metas
    if (!Array.isArray(metas)) continue
    out[key] = {
      metas: metas.flatMap((meta: unknown) => {
        if (typeof meta !== "object" || meta === null) return []
        const { phx_ref_prev: _previous, ...rest } = meta as Record<string, unknown>
        return [rest]
      })
    }
  }
  return out
}

export const make: Effect.Effect<UpstreamPoolShape, never, UpstreamConfig | Scope.Scope> = Effect.gen(function*() {
  const options: UpstreamOptions = yield* UpstreamConfig
  const poolScope = yield* Effect.scope
  const apiKey = Redacted.value(options.apiKey)
  const endpoint = `${options.url.replace(/\/+$/, "").replace(/^http/i, "ws")}/realtime/v1`
  const restEndpoint = `${options.url.replace(/\/+$/, "")}/realtime/v1/api/broadcast`

  yield* UpstreamMetrics.declareSeries
  const socketGauge = yield* HotMetric.gauge(UpstreamMetrics.sockets)
  const connectedGauge = yield* HotMetric.gauge(UpstreamMetrics.socketsConnected)
  const channelGauge = yield* HotMetric.gauge(UpstreamMetrics.channels)
  const heartbeat = yield* HotMetric.histogram(UpstreamMetrics.heartbeatRoundTrip)
  const heartbeatFailures = yield* HotMetric.counterByLabel(UpstreamMetrics.heartbeatFailures, "reason", [
    "error",
    "timeout"
  ])
  const reconnects = yield* HotMetric.counter(UpstreamMetrics.reconnects)
  const rejoins = yield* HotMetric.counter(UpstreamMetrics.rejoins)
  const joins = yield* HotMetric.counterByLabel(UpstreamMetrics.joins, "result", [
    "ok",
    "JoinRefused",
    "JoinTimeout",
    "PoolExhausted"
  ])
  const messagesIn = yield* HotMetric.counter(UpstreamMetrics.messagesIn)
  const messagesDropped = yield* HotMetric.counter(UpstreamMetrics.messagesDropped)
  const batches = yield* HotMetric.counter(UpstreamMetrics.batches)
  const batchedChannels = yield* HotMetric.counter(UpstreamMetrics.batchedChannels)
  const messagesOut = yield* HotMetric.counter(UpstreamMetrics.messagesOut)
  const sendFailures = yield* HotMetric.counter(UpstreamMetrics.sendFailures)
  // Channels wait here for their join to be sent, at most `joinsPerSecond` a second (see `sendJoins`).
  const pacer = yield* Queue.unbounded<Entry>()

  const entries = new Map<string, Entry>()
  const sockets: Array<PoolSocket> = []
  let nextSocketId = 1

  const updateGauges = () => {
    socketGauge.set(sockets.length)
    connectedGauge.set(sockets.filter((s) => s.connected).length)
    channelGauge.set(entries.size)
  }

  // Detached work (leaving a channel, disconnecting) runs in the pool's scope, so closing the pool interrupts it.
  const runDetached = <A>(effect: Effect.Effect<A>): Effect.Effect<void> =>
    Effect.asVoid(Effect.forkIn(effect, poolScope))

  const runSync = Effect.runSyncWith(yield* Effect.context<never>())

  // A frame dropped for being malformed is logged at most once a minute: the upstream relays what anyone sends.
  let droppedLoggedAt = Number.NEGATIVE_INFINITY
  const dropMessage = (reason: string) => {
    messagesDropped.inc()
    const now = Date.now()
    if (now - droppedLoggedAt < 60_000) return
    droppedLoggedAt = now
    runSync(
      Effect.logWarning("upstream frame dropped (counted in wedsync_upstream_messages_dropped_total)", { reason })
    )
  }
  const transport = guardedWebSocket((error) => dropMessage(describe(error)))

  const reconnectAfterMs = (tries: number): number => {
    const capped = Math.min(options.reconnectMaxMs, options.reconnectBaseMs * 2 ** Math.max(0, tries - 1))
    // Full jitter on the upper half: sockets lost together (the upstream restarted) come back spread out.
    return Math.round(capped * (0.5 + Math.random() * 0.5))
  }

  const openSocket = (): PoolSocket => {
    const socket: PoolSocket = {
      id: nextSocketId++,
      client: undefined as unknown as RealtimeClient,
      entries: new Set(),
      topics: new Set(),
      changes: new Map(),
      holds: 0,
      connected: false,
      closing: false,
      heartbeatMs: undefined,
      reconnects: 0
    }
    const client = new RealtimeClient(endpoint, {
      params: { apikey: apiKey },
      transport,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      timeout: options.joinTimeoutMs,
      reconnectAfterMs,
      // The pool decides when a socket closes (empty and unheld); the client must not disconnect on its own.
      disconnectOnEmptyChannelsAfterMs: 2 ** 31 - 1,
      heartbeatCallback: (status, latency) => {
        if (status === "ok" && latency !== undefined) {
          socket.heartbeatMs = latency
          heartbeat.observe(latency / 1000)
        } else if (status === "timeout") heartbeatFailures.timeout.inc()
        else if (status === "error") heartbeatFailures.error.inc()
      }
    })
    ;(socket as { client: RealtimeClient }).client = client
    // The token every join carries (realtime-js sends it as `access_token`), as supabase-js does with its key.
    client.accessTokenValue = apiKey
    // realtime-js exposes Phoenix's state callbacks as a public list; the pool registers its own entries there.
    client.stateChangeCallbacks.open.push([`pool-${socket.id}`, () => {
      socket.connected = true
      updateGauges()
    }])
    client.stateChangeCallbacks.close.push([`pool-${socket.id}`, () => {
      // A socket the pool did not close was lost: its client reconnects it (`reconnectAfterMs`).
      if (socket.connected && !socket.closing) {
        socket.reconnects++
        reconnects.inc()
      }
      socket.connected = false
      updateGauges()
    }])
    client.stateChangeCallbacks.message.push([`pool-${socket.id}`, (message: RawMessage) => {
      if (message.event !== "postgres_changes") return
      const entry = socket.changes.get(message.topic)
      const data = message.payload?.data
      if (entry !== undefined && entry.status !== "closed" && data !== undefined) {
        dispatch(entry, { _tag: "PostgresChange", data })
      }
    }])
    client.connect()
    sockets.push(socket)
    updateGauges()
    return socket
  }

  const closeSocketIfUnused = (socket: PoolSocket): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (socket.closing || socket.entries.size > 0 || socket.holds > 0) return Effect.void
      socket.closing = true
      sockets.splice(sockets.indexOf(socket), 1)
      updateGauges()
      return runDetached(Effect.promise(() => socket.client.disconnect()))
    })

  /**
   * The first socket with room for `topic`, opening one within the cap; undefined when the pool is full. A socket that
   * was lost and is reconnecting comes last (a join there waits out its deadline if it cannot come back). Room counts
   * the channels still leaving too: the upstream counts them until their leave is answered.
   */
  const place = (topic: string): PoolSocket | undefined => {
    const hasRoom = (socket: PoolSocket) =>
      socket.topics.size < options.channelsPerSocket && !socket.topics.has(topic) && !socket.closing
    const isLost = (socket: PoolSocket) => !socket.connected && socket.reconnects > 0
    const live = sockets.find((socket) => !isLost(socket) && hasRoom(socket))
    if (live !== undefined) return live
    if (sockets.length < options.maxSockets) return openSocket()
    return sockets.find(hasRoom)
  }

  const dispatch = (entry: Entry, message: UpstreamMessage) => {
    messagesIn.inc()
    for (const listener of entry.listeners) listener.onMessage(message)
  }

  const signal = (entry: Entry, value: UpstreamSignal) => {
    for (const listener of entry.listeners) listener.onSignal?.(value)
  }

  /** Removes the entry from the pool now; leaves its upstream channel in the background. */
  const detach = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (entry.status === "closed") return Effect.void
      entry.status = "closed"
      if (entries.get(entry.key) === entry) entries.delete(entry.key)
      entry.socket.entries.delete(entry)
      if (entry.socket.changes.get(`realtime:${entry.topic}`) === entry)
        entry.socket.changes.delete(`realtime:${entry.topic}`)
      updateGauges()
      const socket = entry.socket
      const leave = Effect.promise(() => socket.client.removeChannel(entry.channel).catch(() => "error")).pipe(
        Effect.tap((status) =>
          Effect.sync(() => {
            // A channel the upstream did not confirm leaving stays in the client's list; drop it so the topic is free.
            if (status !== "ok") {
              entry.channel.teardown()
              socket.client.channels = socket.client.channels.filter((c) => c !== entry.channel)
            }
            socket.topics.delete(entry.topic)
          })
        ),
        Effect.andThen(closeSocketIfUnused(socket))
      )
      // An empty socket is disconnected at once: the upstream drops its channels with it, no leave needed.
      if (socket.entries.size === 0 && socket.holds === 0) {
        socket.topics.delete(entry.topic)
        return closeSocketIfUnused(socket)
      }
      return runDetached(leave)
    })

  /** Subscribes the entry's current channel and follows its states for as long as the entry lives. */
  const join = (entry: Entry) => {
    const channel = entry.channel
    channel.subscribe((status, error) => {
      if (entry.status === "closed" || entry.channel !== channel) return
      switch (status) {
        case "SUBSCRIBED": {
          if (entry.status === "joining") {
            // The system message completes it (`onSystem`); the pool's own join timeout bounds the wait.
            if (entry.awaitsSystem) return
            entry.status = "joined"
            joins.ok.inc()
            runSync(Deferred.succeed(entry.joined, undefined))
          } else if (entry.status === "interrupted") {
            // A Postgres Changes channel receives again only once the upstream says so (`onSystem`).
            if (entry.awaitsSystem) return
            rejoined(entry)
            return
          }
          entry.joinedAt = Date.now()
          flushOutbox(entry)
          sendPresence(entry, false)
          return
        }
        case "CHANNEL_ERROR": {
          if (entry.status === "joining") {
            // Before the first join, an error while the socket is up is the upstream's answer; while it is down the
            // client joins again once it reconnects (bounded by the join timeout).
            if (!entry.socket.client.isConnected()) return
            joins.JoinRefused.inc()
            runSync(Deferred.fail(entry.joined, UpstreamError.joinRefused(entry.topic, describe(error))))
            runSync(detach(entry))
          } else if (entry.status === "joined") {
            entry.status = "interrupted"
            signal(entry, { _tag: "Interrupted", reason: describe(error ?? "upstream socket lost") })
          }
          return
        }
        case "TIMED_OUT": {
          if (entry.status === "joining") {
            joins.JoinTimeout.inc()
            runSync(Deferred.fail(entry.joined, UpstreamError.joinTimeout(entry.topic, options.joinTimeoutMs)))
            runSync(detach(entry))
          }
          return
        }
        case "CLOSED": {
          // The upstream closed a joined channel (phx_close: a rate limit, a revoked right): join a fresh one after a
          // jittered pause that doubles with each close in a row, so a channel the upstream keeps closing costs a join
          // every `reconnectMaxMs` at most, not several a second.
          if (entry.status === "joined" || entry.status === "interrupted") {
            const now = Date.now()
            entry.closes = now - entry.joinedAt >= STABLE_MS ? 1 : entry.closes + 1
            const retryInMs = reconnectAfterMs(entry.closes)
            if (entry.status === "joined") {
              signal(entry, { _tag: "Interrupted", reason: "upstream closed the channel", retryInMs })
            }
            entry.status = "interrupted"
            runSync(runDetached(
              Effect.sleep(retryInMs).pipe(Effect.andThen(Effect.sync(() => {
                if (entry.status !== "interrupted" || entry.channel !== channel) return
                entry.socket.client.channels = entry.socket.client.channels.filter((c) => c !== channel)
                entry.channel = entry.open(entry.socket.client)
                Queue.offerUnsafe(pacer, entry)
              })))
            ))
          }
          return
        }
      }
    })
  }

  /** Whether a broadcast handed to the channel now goes over its socket (not realtime-js's REST fallback). */
  const canPush = (entry: Entry): boolean =>
    entry.status === "joined" && entry.socket.client.isConnected() && entry.channel.state === "joined"

  const push = (entry: Entry, event: string, payload: unknown) => {
    entry.channel.send({ type: "broadcast", event, payload }).then(
      (status) => status === "ok" ? messagesOut.inc() : sendFailures.inc(),
      () => sendFailures.inc()
    )
  }

  const flushOutbox = (entry: Entry) => {
    const waiting = entry.outbox
    if (waiting === undefined || !canPush(entry)) return
    entry.outbox = undefined
    for (const [event, payload] of waiting) push(entry, event, payload)
  }

  /** Sends the entry's presence as it should be; called on each change and each time the channel is joined. */
  const sendPresence = (entry: Entry, removed: boolean) => {
    if (!canPush(entry)) return
    const payload = entry.presencePayload
    if (payload === undefined && !removed) return
    const sent = payload === undefined ? entry.channel.untrack() : entry.channel.track(payload)
    sent.then((status) => status === "ok" ? undefined : sendFailures.inc(), () => sendFailures.inc())
  }

  /** A channel receives again after an interruption: its subscribers are told, and what waited for it goes out. */
  const rejoined = (entry: Entry) => {
    entry.status = "joined"
    entry.joinedAt = Date.now()
    rejoins.inc()
    signal(entry, { _tag: "Rejoined" })
    flushOutbox(entry)
    sendPresence(entry, false)
  }

  /** The upstream's `system` answer about a Postgres Changes subscription, for a channel waiting for it. */
  const onSystem = (entry: Entry, payload: { extension?: string; status?: string; message?: string }) => {
    if (!entry.awaitsSystem || payload.extension !== "postgres_changes") return
    // Joined again after an interruption: receiving once the upstream's feed delivers again. (An error here leaves it
    // interrupted; realtime-js joins it again.)
    if (entry.status === "interrupted") {
      if (payload.status === "ok") rejoined(entry)
      return
    }
    if (entry.status !== "joining") return
    if (payload.status === "ok") {
      entry.status = "joined"
      joins.ok.inc()
      runSync(Deferred.succeed(entry.joined, undefined))
    } else {
      joins.JoinRefused.inc()
      runSync(Deferred.fail(entry.joined, UpstreamError.joinRefused(entry.topic, payload.message ?? "error")))
      runSync(detach(entry))
    }
  }

  const newEntry = (
    key: string,
    topic: string,
    open: (client: RealtimeClient) => RealtimeChannel,
    awaitsSystem: boolean
  ): Result.Result<Entry, UpstreamError.UpstreamError> => {
    const socket = place(topic)
    if (socket === undefined) {
      joins.PoolExhausted.inc()
      return Result.fail(UpstreamError.poolExhausted(options.maxSockets, options.channelsPerSocket))
    }
    const entry: Entry = {
      key,
      topic,
      socket,
      open,
      channel: undefined as unknown as RealtimeChannel,
      status: "joining",
      refs: 0,
      generation: 0,
      listeners: new Set(),
      joined: Deferred.makeUnsafe<void, UpstreamError.UpstreamError>(),
      awaitsSystem,
      outbox: undefined,
      closes: 0,
      joinedAt: 0,
      presencePayload: undefined
    }
    entry.channel = open(socket.client)
    socket.entries.add(entry)
    socket.topics.add(topic)
    if (awaitsSystem) socket.changes.set(`realtime:${topic}`, entry)
    entries.set(key, entry)
    updateGauges()
    Queue.offerUnsafe(pacer, entry)
    return Result.succeed(entry)
  }

  /**
   * The client's own join timeout does not run while its socket is down; this one always does, from the moment the
   * join is sent (a channel waiting for its turn in `sendJoins` is not late).
   */
  const deadline = (entry: Entry): Effect.Effect<void> =>
    Effect.sleep(options.joinTimeoutMs + 1_000).pipe(
      Effect.andThen(Effect.suspend(() => {
        if (entry.status !== "joining") return Effect.void
        joins.JoinTimeout.inc()
        runSync(Deferred.fail(entry.joined, UpstreamError.joinTimeout(entry.topic, options.joinTimeoutMs)))
        return detach(entry)
      }))
    )

  /**
   * Sends the queued joins, at most `joinsPerSecond` in each second, so a burst of new topics (a batch, a pre-warm, a
   * reconnect storm of new clients) stays within the upstream's join rate (hosted Supabase limits joins per second per
   * project; the project's own gateway closes a socket past `MAX_JOINS_PER_SECOND`). Joins the client sends again
   * after a reconnect are its own and are not paced.
   */
  const sendJoins = Effect.gen(function*() {
    let windowStart = Number.NEGATIVE_INFINITY
    let sent = 0
    while (true) {
      const entry = yield* Queue.take(pacer)
      if (entry.status === "closed") continue
      const now = yield* Clock.currentTimeMillis
      if (now - windowStart >= 1_000) {
        windowStart = now
        sent = 0
      } else if (sent >= options.joinsPerSecond) {
        yield* Effect.sleep(windowStart + 1_000 - now)
        windowStart = yield* Clock.currentTimeMillis
        sent = 0
      }
      // It may have been released while it waited.
      if ((entry.status as EntryStatus) === "closed") continue
      sent++
      join(entry)
      if (entry.status === "joining") yield* Effect.forkIn(deadline(entry), poolScope)
    }
  })
  yield* Effect.forkIn(sendJoins, poolScope)

  const restQueue = yield* Queue.dropping<RestBroadcast>(REST_QUEUE_LIMIT)
  let restRefusedLoggedAt = Number.NEGATIVE_INFINITY

  /** One REST request with the given messages (each already JSON); its HTTP status, or why it got none. */
  const postMessages = (messages: ReadonlyArray<string>) =>
    Effect.promise(() =>
      fetch(restEndpoint, {
        method: "POST",
        headers: { apikey: apiKey, authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: `{"messages":[${messages.join(",")}]}`,
        signal: AbortSignal.timeout(options.joinTimeoutMs)
      }).then(async (response) => {
        await response.body?.cancel()
        return response.status
      }, (error: unknown) => describe(error))
    )

  /**
   * Sends one request's messages. A refusal (4xx) of several is sent again one message a request: the API refuses a
   * whole body for one message it does not take (a payload that is not an object, one too large), and one such
   * message, sent by anyone who can publish, must not cost the others theirs.
   */
  const sendMessages = (messages: ReadonlyArray<string>): Effect.Effect<void> =>
    Effect.gen(function*() {
      const status = yield* postMessages(messages)
      if (status === 202 || status === 200) return messagesOut.inc(messages.length)
      if (messages.length > 1 && typeof status === "number" && status >= 400 && status < 500) {
        return yield* Effect.forEach(messages, (message) => sendMessages([message]), { discard: true })
      }
      sendFailures.inc(messages.length)
      const now = yield* Clock.currentTimeMillis
      if (now - restRefusedLoggedAt < 60_000) return
      restRefusedLoggedAt = now
      yield* Effect.logWarning("upstream REST broadcast not taken; its messages are lost", {
        messages: messages.length,
        status
      })
    })

  /**
   * Sends the queued REST broadcasts, one request at a time, each with what has queued meanwhile: up to `REST_BATCH`
   * messages and `REST_BATCH_CHARS` characters of body (a larger message goes alone).
   */
  const sendRest = Effect.gen(function*() {
    while (true) {
      const taken = yield* Queue.takeBetween(restQueue, 1, REST_BATCH)
      let request: Array<string> = []
      let bytes = 0
      for (const m of taken) {
        const json = JSON.stringify({ topic: m.topic, event: m.event, payload: m.payload, private: m.isPrivate })
        if (request.length > 0 && bytes + json.length > REST_BATCH_CHARS) {
          yield* sendMessages(request)
          request = []
          bytes = 0
        }
        request.push(json)
        bytes += json.length
      }
      yield* sendMessages(request)
    }
  })
  yield* Effect.forkIn(sendRest, poolScope)

  const publish: UpstreamPoolShape["publish"] = (message) => {
    if (!Queue.offerUnsafe(restQueue, message)) sendFailures.inc()
  }

  const openTopic = (spec: ChannelSpec) => (entry: () => Entry) => (client: RealtimeClient): RealtimeChannel => {
    const channel = client.channel(spec.topic, {
      config: {
        private: spec.isPrivate === true,
        // The pool's own broadcasts must not come back to it: they were delivered locally already.
        broadcast: { self: false, ack: false },
        presence: { enabled: spec.presence === true }
      }
    })
    channel.on(
      "broadcast",
      { event: "*" },
      (message: { event?: unknown; payload?: unknown; meta?: unknown }) => {
        if (typeof message.event !== "string") return dropMessage("a broadcast without an event name")
        dispatch(entry(), {
          _tag: "Broadcast",
          event: message.event,
          payload: message.payload,
          ...(message.meta === undefined ? {} : { meta: message.meta })
        })
      }
    )
    if (spec.presence === true) {
      // realtime-js turns presence_state and presence_diff into joins and leaves against the state it keeps, so a
      // state sent again after a rejoin yields only what changed meanwhile.
      channel.on("presence", { event: "join" }, ({ key, newPresences }) =>
        dispatch(entry(), {
          _tag: "PresenceDiff",
          joins: toEntries({ [key]: newPresences }),
          leaves: Object.create(null)
        }))
      channel.on("presence", { event: "leave" }, ({ key, leftPresences }) =>
        dispatch(entry(), {
          _tag: "PresenceDiff",
          joins: Object.create(null),
          leaves: toEntries({ [key]: leftPresences })
        }))
    }
    return channel
  }

  const openChanges =
    (binding: ChangesBinding, topic: string) => (entry: () => Entry) => (client: RealtimeClient): RealtimeChannel => {
      const channel = client.channel(topic, { config: { private: false } })
      const filter = {
        event: binding.event,
        schema: binding.schema,
        ...(binding.table === undefined ? {} : { table: binding.table }),
        ...(binding.filter === undefined ? {} : { filter: binding.filter })
      }
      channel.on(
        "postgres_changes",
        filter as never,
        // Delivered from the socket's raw messages instead (`PoolSocket.changes`): realtime-js hands this callback
        // a reshaped payload without the column types a local subscriber's realtime-js needs.
        () => {}
      )
      channel.on(
        "system",
        {},
        (payload: { extension?: string; status?: string; message?: string }) => onSystem(entry(), payload)
      )
      return channel
    }

  const release = (entry: Entry, listener: Listener): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (entry.status === "closed") return Effect.void
      entry.refs--
      entry.listeners.delete(listener)
      if (entry.refs > 0) return Effect.void
      const generation = entry.generation
      return runDetached(
        Effect.sleep(options.idleGraceMs).pipe(
          Effect.andThen(
            Effect.suspend(() => entry.refs === 0 && entry.generation === generation ? detach(entry) : Effect.void)
          )
        )
      )
    })

  const acquire = (
    key: string,
    topic: string,
    opener: (entry: () => Entry) => (client: RealtimeClient) => RealtimeChannel,
    listener: Listener,
    awaitsSystem: boolean
  ): Effect.Effect<Subscription, UpstreamError.UpstreamError, Scope.Scope> =>
    Effect.gen(function*() {
      let entry = entries.get(key)
      if (entry === undefined) {
        let created: Entry | undefined
        const result = newEntry(key, topic, opener(() => created!), awaitsSystem)
        if (Result.isFailure(result)) return yield* result.failure
        entry = created = result.success
      }
      const held = entry
      let released = false
      const releaseOnce = Effect.suspend(() => {
        if (released) return Effect.void
        released = true
        return release(held, listener)
      })
      // The reference and the finalizer that drops it are taken together: an interruption between the two would keep
      // the channel (and its socket) held for good.
      yield* Effect.uninterruptible(Effect.suspend(() => {
        held.refs++
        held.generation++
        held.listeners.add(listener)
        return Effect.addFinalizer(() => releaseOnce)
      }))
      // A channel being joined again after a lost socket or a close: this subscriber too is told, so that it does not
      // take the channel for live until `Rejoined`.
      if (held.status === "interrupted") {
        listener.onSignal?.({ _tag: "Interrupted", reason: "the upstream channel is being joined again" })
      }
      // Bounded by the deadline `sendJoins` sets when the join goes out.
      yield* Deferred.await(held.joined).pipe(Effect.onError(() => releaseOnce))
      const subscription: Subscription = {
        key,
        socketId: held.socket.id,
        send: (event, payload) =>
          Effect.suspend(() => {
            if (!canPush(held)) {
              return Effect.fail(UpstreamError.sendFailed(topic, "the upstream channel is not joined (reconnecting)"))
            }
            return Effect.tryPromise({
              try: () => held.channel.send({ type: "broadcast", event, payload }),
              catch: (cause) => UpstreamError.sendFailed(topic, describe(cause))
            }).pipe(
              Effect.flatMap((status) => {
                if (status === "ok") {
                  messagesOut.inc()
                  return Effect.void
                }
                return Effect.fail(UpstreamError.sendFailed(topic, status))
              })
            )
          }),
        post: (event, payload) => {
          if (held.outbox === undefined && canPush(held)) return push(held, event, payload)
          if (held.status === "closed") return sendFailures.inc()
          const waiting = (held.outbox ??= [])
          if (waiting.length >= OUTBOX_LIMIT) return sendFailures.inc()
          waiting.push([event, payload])
          // Joined meanwhile without a state change to flush it (the socket came back under a joined channel).
          flushOutbox(held)
        },
        presence: () =>
          phoenixPresence(held.channel) ??
            toEntries(held.channel.presenceState() as Record<string, ReadonlyArray<Record<string, unknown>>>),
        track: (payload) => {
          const removed = held.presencePayload !== undefined && payload === undefined
          held.presencePayload = payload
          sendPresence(held, removed)
        },
        release: releaseOnce
      }
      return subscription
    })

  const subscribe: UpstreamPoolShape["subscribe"] = (spec, listener) =>
    acquire(channelKey(spec), spec.topic, openTopic(spec), listener, false)

  const changes: UpstreamPoolShape["changes"] = (binding, listener) => {
    const key = changesKey(binding)
    const topic = changesTopic(key)
    return acquire(key, topic, openChanges(binding, topic), listener, true)
  }

  const batch = <A>(
    requests: ReadonlyArray<A>,
    one: (request: A) => Effect.Effect<Subscription, UpstreamError.UpstreamError, Scope.Scope>
  ): Effect.Effect<BatchResult<A>, never, Scope.Scope> =>
    // Every item is placed before any join is awaited (each fiber runs synchronously up to its first wait), so the
    // batch fills the sockets in order and the joins of one socket go out together.
    Effect.map(
      Effect.suspend(() => {
        batches.inc()
        batchedChannels.inc(requests.length)
        return Effect.forEach(requests, (request) => Effect.result(one(request)), { concurrency: "unbounded" })
      }),
      (results) => {
        const items = results.map((result, i) => ({ request: requests[i]!, result }))
        const bySocket = new Map<number, Array<number>>()
        items.forEach((item, i) => {
          if (Result.isFailure(item.result)) return
          const id = item.result.success.socketId
          const list = bySocket.get(id)
          if (list === undefined) bySocket.set(id, [i])
          else list.push(i)
        })
        return { items, bySocket }
      }
    )

  const subscribeMany: UpstreamPoolShape["subscribeMany"] = (requests) =>
    batch(requests, (request) => {
      const one = subscribe(request.spec, request.listener)
      return request.scope === undefined ? one : Scope.provide(one, request.scope)
    })

  const releaseMany: UpstreamPoolShape["releaseMany"] = (subscriptions) =>
    Effect.forEach(subscriptions, (s) => s.release, { discard: true })

  const prewarm: UpstreamPoolShape["prewarm"] = ({ sockets: wanted, channels }) =>
    Effect.gen(function*() {
      const held: Array<PoolSocket> = []
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          for (const socket of sockets) {
            if (held.length >= wanted) break
            socket.holds++
            held.push(socket)
          }
          while (held.length < wanted && sockets.length < options.maxSockets) {
            const socket = openSocket()
            socket.holds++
            held.push(socket)
          }
        }),
        () =>
          Effect.forEach(held, (socket) =>
            Effect.suspend(() => {
              socket.holds--
              return closeSocketIfUnused(socket)
            }), { discard: true })
      )
      return yield* batch(channels, (spec) => subscribe(spec, noopListener))
    })

  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      const all = sockets.splice(0)
      for (const entry of entries.values()) entry.status = "closed"
      entries.clear()
      for (const socket of all) socket.closing = true
      updateGauges()
      return Effect.forEach(all, (socket) => Effect.promise(() => socket.client.disconnect()), {
        concurrency: "unbounded",
        discard: true
      })
    })
  )

  return {
    subscribe,
    changes,
    subscribeMany,
    releaseMany,
    publish,
    dropped: dropMessage,
    prewarm,
    stats: Effect.sync(() => ({
      sockets: sockets.map((s) => ({
        id: s.id,
        channels: s.entries.size,
        connected: s.connected,
        heartbeatMs: s.heartbeatMs,
        reconnects: s.reconnects
      })),
      channels: entries.size
    }))
  }
})

export class UpstreamPool extends Context.Service<UpstreamPool, UpstreamPoolShape>()("@wedsync/upstream/UpstreamPool") {
  static readonly layer: Layer.Layer<UpstreamPool, never, UpstreamConfig> = Layer.effect(UpstreamPool, make)

  /** Built from `SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY` and `UPSTREAM_*`. */
  static readonly layerConfig = UpstreamPool.layer.pipe(Layer.provide(UpstreamConfig.layerConfig))
}

/** Registers every upstream metric series at 0 (for a process that exposes them before the pool is built). */
export const declareMetrics: Effect.Effect<void> = UpstreamMetrics.declareSeries

/**
 * The one Redis client of a gateway process, over ioredis.
 *
 * It holds two connections: one for commands, opened when the layer is built, and one for pub/sub, opened by the
 * first subscription (a connection in subscriber mode can run no other command). Both are closed with the layer's
 * scope (`QUIT`, then a hard disconnect if Redis does not answer).
 *
 * Guarantees:
 * - Every command answers within `commandTimeoutMs`: a reply, or a `RedisError` (`RedisTimeout`, `RedisUnavailable`
 *   while the connection is down, `RedisCommandFailed` for a server error). Nothing is queued while Redis is away and
 *   nothing is resent after a reconnect, so a write that failed never lands late.
 * - A lost connection is reopened by itself with a bounded exponential backoff, forever; `status`/`statusChanges`
 *   report each connection's state and `wedsync_redis_connected` mirrors it.
 * - Subscriptions survive a reconnect: the subscriber connection subscribes again to every channel and pattern still
 *   in use before it reports `connected`. Pub/sub is at most once: messages published while the subscriber is down
 *   are lost, and a stream whose buffer is full drops new messages (counted).
 * - `REDIS_PREFIX` is added here and only here, to keys, channels and patterns (`key`); `RedisKey` builds the rest.
 *
 * It does not cache, serialize values or talk to Redis Cluster yet (keys are Cluster-ready; see `RedisKey`); shard
 * channels (`ssubscribe`) work on a standalone Redis 7.
 */
import {
  Clock,
  Context,
  Duration,
  Effect,
  Layer,
  Metric,
  Option,
  PubSub,
  Queue,
  Redacted,
  Semaphore,
  Stream
} from "effect"
import type { Config, Scope } from "effect"
import { Redis } from "ioredis"
import type { RedisOptions as IoredisOptions } from "ioredis"
import { RedisConfig } from "./RedisConfig.ts"
import * as RedisError from "./RedisError.ts"
import * as RedisKey from "./RedisKey.ts"
import * as RedisMetrics from "./RedisMetrics.ts"
import * as RedisUrl from "./RedisUrl.ts"

/** `unused`: the subscriber connection has not been needed yet. */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "unused"

export interface Status {
  readonly command: ConnectionState
  readonly subscriber: ConnectionState
}

/** What `/ready` needs: whether a round trip worked just now, how long it took, and each connection's state. */
export interface Health {
  readonly ok: boolean
  readonly latencyMs: number | undefined
  readonly error: string | undefined
  readonly status: Status
}

/** A message received through a pattern subscription; `channel` is without the prefix. */
export interface PatternMessage {
  readonly channel: string
  readonly message: string
}

export interface SetOptions {
  /** Expire the key after this many milliseconds (`PX`). */
  readonly ttlMs?: number | undefined
  /** Write only when the key does not exist (`NX`); the result says whether it was written. */
  readonly onlyIfAbsent?: boolean | undefined
}

export type Value = string | Buffer

export interface RedisClientShape {
  /** The URL without credentials, for logs. */
  readonly endpoint: string
  readonly prefix: string
  /** The full name of a key or channel as stored in Redis (prefix added); for `command`. */
  readonly key: (key: RedisKey.RedisKey) => string
  readonly get: (key: RedisKey.RedisKey) => Effect.Effect<Option.Option<string>, RedisError.RedisError>
  readonly getBuffer: (key: RedisKey.RedisKey) => Effect.Effect<Option.Option<Buffer>, RedisError.RedisError>
  readonly mget: (
    keys: ReadonlyArray<RedisKey.RedisKey>
  ) => Effect.Effect<Array<Option.Option<string>>, RedisError.RedisError>
  /** `SET`; `false` only when `onlyIfAbsent` was asked and the key existed. */
  readonly set: (
    key: RedisKey.RedisKey,
    value: Value,
    options?: SetOptions
  ) => Effect.Effect<boolean, RedisError.RedisError>
  /** `DEL`; how many of the keys existed. */
  readonly del: (...keys: ReadonlyArray<RedisKey.RedisKey>) => Effect.Effect<number, RedisError.RedisError>
  /** `PEXPIRE`; whether the key existed. */
  readonly expire: (key: RedisKey.RedisKey, ttlMs: number) => Effect.Effect<boolean, RedisError.RedisError>
  readonly incrBy: (key: RedisKey.RedisKey, by: number) => Effect.Effect<number, RedisError.RedisError>
  /** `PUBLISH`; how many subscribers (over all processes) received it. */
  readonly publish: (channel: RedisKey.RedisKey, message: Value) => Effect.Effect<number, RedisError.RedisError>
  /**
   * Any other command on the command connection, with the same timeout and error mapping. Keys passed to ioredis
   * here must go through `key`, or they miss the prefix.
   */
  readonly command: <A>(name: string, run: (redis: Redis) => Promise<A>) => Effect.Effect<A, RedisError.RedisError>
  /**
   * Subscribes to one channel. When the effect succeeds Redis has confirmed the subscription, so a message published
   * afterwards is delivered. The stream ends never; the subscription is released when the scope closes.
   */
  readonly subscribe: (
    channel: RedisKey.RedisKey
  ) => Effect.Effect<Stream.Stream<string>, RedisError.RedisError, Scope.Scope>
  /** `subscribe` for a pattern (`RedisKey.pattern`). */
  readonly psubscribe: (
    pattern: RedisKey.RedisPattern
  ) => Effect.Effect<Stream.Stream<PatternMessage>, RedisError.RedisError, Scope.Scope>
  /**
   * `subscribe` for a Redis 7 shard channel (`SSUBSCRIBE`), with messages as bytes. On Redis Cluster the channel's
   * slot decides the node; this client still holds one subscriber connection, so that takes a standalone Redis.
   */
  readonly ssubscribe: (
    channel: RedisKey.RedisKey
  ) => Effect.Effect<Stream.Stream<Buffer>, RedisError.RedisError, Scope.Scope>
  /** `subscribe` as one stream: subscribed when pulled, released when it ends. */
  readonly messages: (channel: RedisKey.RedisKey) => Stream.Stream<string, RedisError.RedisError>
  /** Round trip on the command connection; recorded in `wedsync_redis_ping_seconds`. */
  readonly ping: Effect.Effect<Duration.Duration, RedisError.RedisError>
  /** `ping` for `/ready`: never fails, says what is wrong instead. */
  readonly health: Effect.Effect<Health>
  readonly status: Effect.Effect<Status>
  /** The current status, then every change. */
  readonly statusChanges: Stream.Stream<Status>
}

/** Delay before reconnect attempt `attempt` (1-based): doubling from `baseMs`, capped at `maxMs`, with 0-10% jitter. */
export const reconnectDelay = (attempt: number, baseMs: number, maxMs: number): number => {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30))
  // Jitter spreads the reconnects of many gateways after one Redis restart; the cap still holds.
  return Math.min(maxMs, Math.round(exponential * (1 + Math.random() * 0.1)))
}

/**
 * The ioredis options this client sets. `replyMapping` is left out: ioredis types it through the client's generic
 * parameter, which an explicitly optional field cannot satisfy under `exactOptionalPropertyTypes`.
 */
export type ConnectionOptions = Omit<IoredisOptions, "replyMapping">

/** ioredis options for one connection to `endpoint`. Exported for the URL tests (TLS must reach ioredis). */
export const ioredisOptions = (
  endpoint: RedisUrl.Endpoint,
  options: Pick<
    RedisConfig["Service"],
    "commandTimeoutMs" | "connectTimeoutMs" | "reconnectBaseDelayMs" | "reconnectMaxDelayMs"
  >,
  name: string
): ConnectionOptions => ({
  host: endpoint.host,
  port: endpoint.port,
  db: endpoint.db,
  ...(endpoint.username === undefined ? {} : { username: endpoint.username }),
  ...(endpoint.password === undefined ? {} : { password: endpoint.password }),
  ...(endpoint.tls === undefined ? {} : { tls: endpoint.tls }),
  connectionName: name,
  lazyConnect: true,
  // Fail fast while disconnected and never replay: a cache write that timed out must not land after a newer one.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  // Resubscription is done here, so `connected` on the subscriber means every subscription is live again.
  autoResubscribe: false,
  commandTimeout: options.commandTimeoutMs,
  connectTimeout: options.connectTimeoutMs,
  retryStrategy: (attempt) => reconnectDelay(attempt, options.reconnectBaseDelayMs, options.reconnectMaxDelayMs)
})

const noop = () => {}

/** Builds the client; its connections live as long as the scope. */
export const make: Effect.Effect<RedisClientShape, RedisError.RedisError, RedisConfig | Scope.Scope> = Effect.gen(
  function*() {
    const options = yield* RedisConfig
    const prefixProblem = RedisKey.prefixProblem(options.prefix)
    if (prefixProblem !== undefined) return yield* Effect.fail(RedisError.configInvalid(prefixProblem))
    const endpoint = yield* RedisUrl.parse(Redacted.value(options.url))
    const prefix = options.prefix
    const timeoutMs = options.commandTimeoutMs
    const context = yield* Effect.context<never>()
    const runSync = Effect.runSyncWith(context)
    // A plain variable plus a replaying PubSub rather than a SubscriptionRef: ioredis events set the status
    // synchronously, and a SubscriptionRef's lock could make that asynchronous.
    let currentStatus: Status = { command: "connecting", subscriber: "unused" }
    const statusPubSub = yield* PubSub.unbounded<Status>({ replay: 1 })
    const publishStatus = (next: Status) => {
      currentStatus = next
      PubSub.publishUnsafe(statusPubSub, next)
    }
    publishStatus(currentStatus)
    const connectedGauge = {
      command: Metric.withAttributes(RedisMetrics.connected, { kind: "command" }),
      subscriber: Metric.withAttributes(RedisMetrics.connected, { kind: "subscriber" })
    }
    const reconnectCounter = {
      command: Metric.withAttributes(RedisMetrics.reconnects, { kind: "command" }),
      subscriber: Metric.withAttributes(RedisMetrics.reconnects, { kind: "subscriber" })
    }
    const errorCounters = new Map<string, Metric.Metric<number, unknown>>()
    const countError = (error: RedisError.RedisError) => {
      const reason = error.reason._tag
      let counter = errorCounters.get(reason)
      if (counter === undefined) {
        counter = Metric.withAttributes(RedisMetrics.errors, { reason })
        errorCounters.set(reason, counter)
      }
      return Metric.update(counter, 1)
    }

    let closing = false
    // Connections whose first connect failed: they are being dropped and their events mean nothing.
    const retired = new WeakSet<Redis>()
    // ioredis rejects a failed connect with "Connection is closed."; the socket error before it says why.
    const lastSocketError = new WeakMap<Redis, Error>()
    const lost = { command: false, subscriber: false }
    // Called from ioredis events, outside any fiber; rare (connection changes only), so running effects here is fine.
    const setState = (kind: RedisMetrics.ConnectionKind, state: ConnectionState, redis?: Redis) => {
      const current = currentStatus
      if (current[kind] === state) return
      if (current[kind] === "connected" && state !== "connected" && !closing) {
        const why = redis === undefined ? undefined : lastSocketError.get(redis)?.message
        lost[kind] = true
        runSync(Metric.update(reconnectCounter[kind], 1))
        runSync(
          Effect.logWarning(
            `Redis ${kind} connection to ${endpoint.display} lost${why === undefined ? "" : ` (${why})`}; reconnecting`
          )
        )
      } else if (state === "connected" && lost[kind]) {
        lost[kind] = false
        runSync(Effect.logInfo(`Redis ${kind} connection to ${endpoint.display} restored`))
      }
      publishStatus({ ...current, [kind]: state })
      runSync(Metric.update(connectedGauge[kind], state === "connected" ? 1 : 0))
    }
    const watch = (redis: Redis, kind: RedisMetrics.ConnectionKind, onReady: () => void) => {
      // Without an error listener ioredis prints every failed reconnect attempt; the state and metrics carry it.
      redis.on("error", (error: Error) => lastSocketError.set(redis, error))
      redis.on("ready", () => {
        lastSocketError.delete(redis)
        onReady()
      })
      redis.on("close", () => {
        if (!closing && !retired.has(redis)) setState(kind, "disconnected", redis)
      })
      redis.on("reconnecting", () => {
        if (!closing && !retired.has(redis)) setState(kind, "connecting", redis)
      })
    }

    const connect = (redis: Redis, kind: RedisMetrics.ConnectionKind): Effect.Effect<void, RedisError.RedisError> =>
      Effect.tryPromise({
        try: () => redis.connect(),
        catch: (cause) =>
          RedisError.unavailable(`Connecting to ${endpoint.display} (${kind})`, lastSocketError.get(redis) ?? cause)
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(options.connectTimeoutMs),
          orElse: () =>
            Effect.fail(
              RedisError.unavailable(
                `Connecting to ${endpoint.display} (${kind})`,
                `no connection within ${options.connectTimeoutMs} ms`
              )
            )
        }),
        // A failed first connect would otherwise keep retrying in the background with nobody holding the client.
        Effect.onError(() =>
          Effect.sync(() => {
            retired.add(redis)
            redis.disconnect()
          })
        )
      )

    const quit = (redis: Redis): Effect.Effect<void> =>
      Effect.tryPromise(() => redis.quit()).pipe(
        Effect.timeoutOption(Duration.millis(timeoutMs)),
        Effect.ignore,
        Effect.andThen(Effect.sync(() => redis.disconnect()))
      )

    let subscriber: Redis | undefined
    const main = yield* Effect.acquireRelease(
      Effect.sync(() => new Redis(ioredisOptions(endpoint, options, "wedsync-command"))),
      (redis) =>
        Effect.gen(function*() {
          closing = true
          if (subscriber !== undefined) yield* quit(subscriber)
          yield* quit(redis)
          publishStatus({ command: "disconnected", subscriber: "disconnected" })
          yield* Metric.update(connectedGauge.command, 0)
          yield* Metric.update(connectedGauge.subscriber, 0)
        })
    )
    watch(main, "command", () => setState("command", "connected"))
    yield* connect(main, "command")

    const run = <A>(what: string, f: (redis: Redis) => Promise<A>): Effect.Effect<A, RedisError.RedisError> =>
      Effect.tryPromise({ try: () => f(main), catch: (cause) => RedisError.fromIoredis(what, cause, timeoutMs) }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(timeoutMs),
          orElse: () => Effect.fail(RedisError.timeout(what, timeoutMs))
        }),
        Effect.tapError(countError)
      )

    const key = (k: RedisKey.RedisKey): string => prefix + k

    // --- pub/sub ---------------------------------------------------------------------------------------------------

    const channels = new Map<string, Set<Queue.Queue<string>>>()
    const patterns = new Map<string, Set<Queue.Queue<PatternMessage>>>()
    const shardChannels = new Map<string, Set<Queue.Queue<Buffer>>>()
    const dropped = () => runSync(Metric.update(RedisMetrics.droppedMessages, 1))
    // Serializes opening the subscriber and SUBSCRIBE/UNSUBSCRIBE, so a channel is subscribed once however many
    // streams share it, and released only when the last one ends.
    const subscriptionLock = yield* Semaphore.make(1)

    const resubscribe = (redis: Redis) => {
      const names = [...channels.keys()]
      const globs = [...patterns.keys()]
      const pending: Array<Promise<unknown>> = []
      if (names.length > 0) pending.push(redis.subscribe(...names))
      if (globs.length > 0) pending.push(redis.psubscribe(...globs))
      // One command per shard channel: a multi-channel SSUBSCRIBE must stay inside one slot.
      for (const name of shardChannels.keys()) pending.push(redis.ssubscribe(name))
      Promise.all(pending).then(
        () => setState("subscriber", "connected"),
        // The connection dropped again before the replies; the next `ready` tries again.
        noop
      )
    }

    const openSubscriber: Effect.Effect<Redis, RedisError.RedisError> = Effect.suspend(() => {
      if (subscriber !== undefined) return Effect.succeed(subscriber)
      const redis = new Redis(ioredisOptions(endpoint, options, "wedsync-subscriber"))
      setState("subscriber", "connecting")
      watch(redis, "subscriber", () => resubscribe(redis))
      redis.on("message", (channel: string, message: string) => {
        const queues = channels.get(channel)
        if (queues !== undefined) { for (const q of queues) if (!Queue.offerUnsafe(q, message)) dropped() }
      })
      redis.on("smessageBuffer", (channel: Buffer, message: Buffer) => {
        const queues = shardChannels.get(channel.toString())
        if (queues !== undefined) { for (const q of queues) if (!Queue.offerUnsafe(q, message)) dropped() }
      })
      redis.on("pmessage", (glob: string, channel: string, message: string) => {
        const queues = patterns.get(glob)
        if (queues === undefined) return
        const item: PatternMessage = {
          channel: channel.startsWith(prefix) ? channel.slice(prefix.length) : channel,
          message
        }
        for (const q of queues) if (!Queue.offerUnsafe(q, item)) dropped()
      })
      return connect(redis, "subscriber").pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            subscriber = redis
          })
        ),
        Effect.as(redis),
        Effect.tapError(() => Effect.sync(() => setState("subscriber", "unused")))
      )
    })

    const subscribeTo = <A>(
      registry: Map<string, Set<Queue.Queue<A>>>,
      name: string,
      verb: "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE",
      send: (redis: Redis, name: string) => Promise<unknown>,
      release: (redis: Redis, name: string) => Promise<unknown>
    ): Effect.Effect<Stream.Stream<A>, RedisError.RedisError, Scope.Scope> =>
      Effect.gen(function*() {
        const queue = yield* Queue.make<A>({ capacity: options.subscriptionBufferSize, strategy: "dropping" })
        yield* Effect.acquireRelease(
          subscriptionLock.withPermit(
            Effect.gen(function*() {
              const redis = yield* openSubscriber
              const existing = registry.get(name)
              if (existing !== undefined) {
                existing.add(queue)
                return
              }
              yield* Effect.tryPromise({
                try: () => send(redis, name),
                catch: (cause) => RedisError.fromIoredis(verb, cause, timeoutMs)
              }).pipe(
                Effect.timeoutOrElse({
                  duration: Duration.millis(timeoutMs),
                  orElse: () => Effect.fail(RedisError.timeout(verb, timeoutMs))
                }),
                Effect.tapError(countError)
              )
              registry.set(name, new Set([queue]))
            })
          ),
          () =>
            subscriptionLock.withPermit(
              Effect.suspend(() => {
                const queues = registry.get(name)
                if (queues === undefined) return Effect.void
                queues.delete(queue)
                if (queues.size > 0 || subscriber === undefined) return Effect.void
                registry.delete(name)
                const redis = subscriber
                // Best effort: when the connection is down the subscription is already gone on the server, and the
                // next resubscription skips it because it left the registry.
                return Effect.tryPromise(() => release(redis, name)).pipe(
                  Effect.timeoutOption(Duration.millis(timeoutMs)),
                  Effect.ignore
                )
              })
            ).pipe(Effect.andThen(Queue.shutdown(queue)))
        )
        return Stream.fromQueue(queue)
      })

    const subscribe = (channel: RedisKey.RedisKey) =>
      subscribeTo(channels, key(channel), "SUBSCRIBE", (r, n) => r.subscribe(n), (r, n) => r.unsubscribe(n))

    const psubscribe = (pattern: RedisKey.RedisPattern) =>
      subscribeTo(
        patterns,
        RedisKey.literalPattern(prefix) + pattern,
        "PSUBSCRIBE",
        (r, n) => r.psubscribe(n),
        (r, n) => r.punsubscribe(n)
      )

    const ssubscribe = (channel: RedisKey.RedisKey) =>
      subscribeTo(shardChannels, key(channel), "SSUBSCRIBE", (r, n) => r.ssubscribe(n), (r, n) => r.sunsubscribe(n))

    // --- health ----------------------------------------------------------------------------------------------------

    const ping: Effect.Effect<Duration.Duration, RedisError.RedisError> = Effect.gen(function*() {
      const start = yield* Clock.currentTimeNanos
      yield* run("PING", (r) => r.ping())
      const elapsed = Duration.nanos((yield* Clock.currentTimeNanos) - start)
      yield* Metric.update(RedisMetrics.pingLatency, Duration.toSeconds(elapsed))
      return elapsed
    })

    const status = Effect.sync(() => currentStatus)

    const health: Effect.Effect<Health> = ping.pipe(
      Effect.matchEffect({
        onSuccess: (elapsed) =>
          Effect.map(
            status,
            (s): Health => ({ ok: true, latencyMs: Duration.toMillis(elapsed), error: undefined, status: s })
          ),
        onFailure: (error) =>
          Effect.map(status, (s): Health => ({ ok: false, latencyMs: undefined, error: error.message, status: s }))
      })
    )

    const optional = <A>(value: A | null): Option.Option<A> => (value === null ? Option.none() : Option.some(value))

    return {
      endpoint: endpoint.display,
      prefix,
      key,
      get: (k) => run("GET", (r) => r.get(key(k))).pipe(Effect.map(optional)),
      getBuffer: (k) => run("GET", (r) => r.getBuffer(key(k))).pipe(Effect.map(optional)),
      mget: (keys) =>
        keys.length === 0
          ? Effect.succeed([])
          : run("MGET", (r) => r.mget(keys.map(key))).pipe(Effect.map((values) => values.map(optional))),
      set: (k, value, setOptions = {}) =>
        run("SET", (r) => {
          const ttl = setOptions.ttlMs
          const nx = setOptions.onlyIfAbsent === true
          if (ttl !== undefined && nx) return r.set(key(k), value, "PX", ttl, "NX")
          if (ttl !== undefined) return r.set(key(k), value, "PX", ttl)
          if (nx) return r.set(key(k), value, "NX")
          return r.set(key(k), value)
        }).pipe(Effect.map((reply) => reply === "OK")),
      del: (...keys) => (keys.length === 0 ? Effect.succeed(0) : run("DEL", (r) => r.del(...keys.map(key)))),
      expire: (k, ttlMs) => run("PEXPIRE", (r) => r.pexpire(key(k), ttlMs)).pipe(Effect.map((n) => n === 1)),
      incrBy: (k, by) => run("INCRBY", (r) => r.incrby(key(k), by)),
      publish: (channel, message) => run("PUBLISH", (r) => r.publish(key(channel), message)),
      command: run,
      subscribe,
      psubscribe,
      ssubscribe,
      messages: (channel) => Stream.unwrap(subscribe(channel)),
      ping,
      health,
      status,
      statusChanges: Stream.fromPubSub(statusPubSub)
    } satisfies RedisClientShape
  }
)

export class RedisClient extends Context.Service<RedisClient, RedisClientShape>()("@wedsync/redis/RedisClient") {
  /** The client, configured by `RedisConfig`. Fails when the URL or prefix is unusable or Redis is unreachable. */
  static readonly layer: Layer.Layer<RedisClient, RedisError.RedisError, RedisConfig> = Layer.effect(RedisClient, make)

  /** The client configured from `REDIS_URL` and `REDIS_PREFIX`. */
  static readonly layerConfig: Layer.Layer<RedisClient, RedisError.RedisError | Config.ConfigError> = RedisClient.layer
    .pipe(
      Layer.provide(RedisConfig.layerConfig)
    )
}

/**
 * The composition root: configuration → services → the HTTP server with its routes and the
 * WebSocket transport. Tests build `make(...)` with explicit options; `main.ts` builds
 * `fromEnv`, the only place the environment is read.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { AuthConfig, ChannelPolicy, Memberships, TokenVerifier } from "@wedsync/auth"
import { CacheConfig, CacheMetrics, CacheStore, InvalidationBus, LayeredCache } from "@wedsync/cache"
import { ConnectionConfig, ConnectionMetrics, ConnectionRegistry, DeviceCounts, Transport } from "@wedsync/connection"
import { ChangesConfig, ChangesMetrics, MembershipTable, PostgresChanges, Replication, Warmer } from "@wedsync/changes"
import { Broker, ChangeFeed, History, Hub, HubMetrics, Presence } from "@wedsync/hub"
import { ProcessMetrics } from "@wedsync/metrics"
import { RedisClient, RedisConfig, RedisMetrics } from "@wedsync/redis"
import { ScalingConfig } from "@wedsync/scaling"
import { UpstreamBroker, UpstreamConfig, UpstreamMetrics, UpstreamPool, UpstreamPresence } from "@wedsync/upstream"
import { Config, Context, Duration, Effect, Layer, Logger, Option, Redacted, References } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { NetAddress } from "effect/net"
import { SignJWT } from "jose"
import { createServer, type Server } from "node:http"
import * as ClientAddress from "./ClientAddress.ts"
import * as ClusterDevices from "./ClusterDevices.ts"
import * as GatewayMetrics from "./GatewayMetrics.ts"
import {
  checkEnvironment,
  GatewayConfig,
  type GatewayOptions,
  logConfig,
  type LogOptions,
  upstreamFromEnv,
  WORKER_ID_VARIABLE
} from "./GatewayConfig.ts"
import * as Routes from "./Routes.ts"
import * as ScalingController from "./ScalingController.ts"
import * as Season from "./Season.ts"
import * as WeddingCalendar from "./WeddingCalendar.ts"
import * as UpstreamChanges from "./UpstreamChanges.ts"
import * as UpstreamWarming from "./UpstreamWarming.ts"

/** How long closing the HTTP server may wait for its last sockets after the drain. */
const SERVER_CLOSE_TIMEOUT = Duration.seconds(5)

/**
 * Connections the kernel may queue before the gateway accepts them (capped by `net.core.somaxconn`). Node's default of
 * 511 overflows in a reconnect storm (10,000 clients coming back within seconds, measured in `bench:replay`): the
 * kernel then drops the handshakes it cannot queue and the clients see ECONNRESET instead of a short wait.
 */
const LISTEN_BACKLOG = 8192

/** The listening Node HTTP server shared by the REST routes and the WebSocket upgrades. */
export class NodeServer extends Context.Service<NodeServer, { readonly server: Server; readonly port: number }>()(
  "@wedsync/gateway/NodeServer"
) {
  static readonly layer: Layer.Layer<NodeServer, never, GatewayConfig> = Layer.effect(
    NodeServer,
    Effect.gen(function*() {
      const { host, port, reusePort } = yield* GatewayConfig
      const server = createServer()
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.once("error", (cause) => resume(Effect.die(cause)))
          server.listen({ host, port, reusePort, backlog: LISTEN_BACKLOG }, () => resume(Effect.void))
        }),
        () =>
          Effect.callback<void>((resume) => {
            server.close(() => resume(Effect.void))
            server.closeAllConnections()
          }).pipe(
            // The drain already let every client go; a socket still open here (a half-finished upgrade of a
            // misbehaving client) must not keep the process from exiting.
            Effect.timeoutOrElse({
              duration: SERVER_CLOSE_TIMEOUT,
              orElse: () => Effect.logWarning("HTTP server close timed out; exiting with sockets still open")
            })
          )
      )
      const address = server.address()
      return { server, port: typeof address === "object" && address !== null ? address.port : port }
    })
  )
}

/** Effect's `HttpServer` on our Node server, serving requests only: upgrades belong to the transport. */
const HttpServerLayer = Layer.effect(
  HttpServer.HttpServer,
  Effect.gen(function*() {
    const { server, port } = yield* NodeServer
    const { host } = yield* GatewayConfig
    const address = yield* Effect.orDie(Effect.fromResult(NetAddress.inetAddressFromIpString(host, port)))
    return HttpServer.make({
      address,
      serve: (httpApp, middleware) =>
        Effect.gen(function*() {
          const scope = yield* Effect.scope
          const handler = yield* NodeHttpServer.makeHandler(httpApp, { scope, middleware })
          yield* Effect.acquireRelease(
            Effect.sync(() => server.on("request", handler)),
            () => Effect.sync(() => server.off("request", handler))
          )
        })
    })
  })
).pipe(Layer.provideMerge(NodeHttpServer.layerHttpServices))

/** The dev anon key, printed at start-up when the dev JWT secret is in use, so a client can connect at once. */
const devAnonKey = (secret: string) =>
  Effect.promise(() =>
    new SignJWT({ role: "anon", iss: "wedsync-dev" })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuedAt()
      .setExpirationTime("10y")
      .sign(new TextEncoder().encode(secret))
  )

const WebSocketLayer = Layer.effectDiscard(
  Effect.gen(function*() {
    const { server, port } = yield* NodeServer
    const { host, drainTimeoutMs, trustedProxies, reusePort } = yield* GatewayConfig
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const auth = yield* AuthConfig.AuthConfig
    const scaling = yield* ScalingConfig.ScalingConfig
    const controller = yield* ScalingController.ScalingController
    yield* Transport.attach(server, {
      clientAddress: ClientAddress.make(trustedProxies),
      shedding: { options: scaling, latency: controller.latency }
    })
    // Runs first on shutdown (finalizers run in reverse), while the HTTP server still answers /ready.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // A worker sharing its port stops accepting at once, so the kernel sends new connections (the drained
        // clients reconnecting among them) to its siblings instead of to this process's 503s.
        if (reusePort) server.close()
        yield* Effect.logInfo(`draining ${registry.count()} connections`)
        yield* registry.drain(drainTimeoutMs)
      })
    )
    yield* Effect.logInfo(`listening on http://${host}:${port}`)
    if (AuthConfig.usesDevJwtSecret(auth)) {
      yield* Effect.logWarning("JWT_SECRET is not set: using the development secret")
      yield* Effect.logInfo(`dev anon key: ${yield* devAnonKey(Redacted.value(auth.jwtSecret))}`)
    }
  })
)

export interface Options {
  readonly gateway: Layer.Layer<GatewayConfig, unknown>
  /** Postgres Changes: `PostgresChanges.layer` over a database, or `ChangeFeed.layerNoop`. */
  readonly changes: Layer.Layer<
    ChangeFeed.ChangeFeed | Warmer.Warmer,
    unknown,
    Hub.Hub | Memberships.Memberships | LayeredCache.LayeredCache
  >
  /** The membership table (`membershipsLayer`), or `Memberships.layerNoop`. */
  readonly memberships: Layer.Layer<
    Memberships.Memberships,
    unknown,
    LayeredCache.LayeredCache | InvalidationBus.InvalidationBus
  >
  readonly connection: Layer.Layer<ConnectionConfig.ConnectionConfig, unknown>
  readonly auth: Layer.Layer<AuthConfig.AuthConfig, unknown>
  readonly cache: Layer.Layer<CacheConfig.CacheConfig, unknown>
  /** Admission control and the scaling policy (`SCALE_*`, `ADMISSION_*`, `WEDDING_CALENDAR_FILE`…). */
  readonly scaling: Layer.Layer<ScalingConfig.ScalingConfig, unknown>
  /** `REDIS_URL` set: the one Redis client of the process (the cache's store and bus run on it); unset: none. */
  readonly redis?: Layer.Layer<RedisClient.RedisClient, unknown> | undefined
  /** Retention of the broadcast history for `replay` (`HISTORY_MAX_MESSAGES`, `HISTORY_TTL`); defaults when unset. */
  readonly history?: Partial<History.HistoryOptions> | undefined
  /** The wedding calendar of the scaling forecast and of `SEASON_MODE=auto`; none: reactive scaling only. */
  readonly calendar?: WeddingCalendar.Source | undefined
  /**
   * `SUPABASE_URL` set: upstream mode, the pool of connections to the hosted project. Topics then flow between the hub
   * and the project through `UpstreamBroker` (in place of the Redis broker: the project is the bus), presence states
   * include the project's entries, and without `DATABASE_URL` `changes` should be `UpstreamChanges.layer`.
   */
  readonly upstream?: Layer.Layer<UpstreamPool.UpstreamPool, unknown> | undefined
}

/** The broadcast history: Redis streams shared by every process with `REDIS_URL`, a ring in this process without. */
const historyLayer = (options: Options): Layer.Layer<History.History, unknown> =>
  options.redis === undefined
    ? History.History.layerMemory(options.history)
    : History.History.layerRedis(options.history).pipe(Layer.provide(options.redis))

/**
 * The layered cache with its store and invalidation bus exposed, so that `Memberships` hears invalidations of other
 * processes: L1 only (no shared store, an in-process bus), or with `REDIS_URL` the Redis store and bus.
 */
const cacheLayer = (options: Options) => {
  const parts = options.redis === undefined
    ? Layer.merge(CacheStore.CacheStore.layerNoop, InvalidationBus.InvalidationBus.layerMemory)
    : Layer.merge(CacheStore.CacheStore.layerRedis, InvalidationBus.InvalidationBus.layerRedis).pipe(
      Layer.provide(options.redis)
    )
  return LayeredCache.LayeredCache.layer.pipe(Layer.provideMerge(parts), Layer.provide(options.cache))
}

/**
 * The relay of upstream mode: the hub's broker and the upstream presence that `presenceLayer` reads. One layer value
 * per pool, so that the hub and presence share one relay (a build shares layers by reference).
 */
const relays = new WeakMap<
  object,
  Layer.Layer<Broker.Broker | UpstreamBroker.UpstreamTopics, unknown, History.History>
>()
const upstreamRelay = (upstream: Layer.Layer<UpstreamPool.UpstreamPool, unknown>) => {
  let relay = relays.get(upstream)
  if (relay === undefined) relays.set(upstream, relay = UpstreamBroker.layer.pipe(Layer.provide(upstream)))
  return relay
}

/**
 * The hub alone, joined to the other processes by the Redis broker, or in upstream mode to the hosted project by the
 * upstream broker (exposed: presence orders its writes by it). The upstream takes the broker's place rather than
 * joining Redis beside it: every process relays to the same project, so the project already carries each broadcast to
 * the others, and Redis as well would deliver it twice.
 */
const hubLayer = (options: Options): Layer.Layer<Hub.Hub | Broker.Broker, unknown, History.History> =>
  options.upstream !== undefined
    ? Hub.Hub.layer.pipe(Layer.provideMerge(upstreamRelay(options.upstream)))
    : options.redis === undefined
    ? Hub.Hub.layer.pipe(Layer.provideMerge(Broker.Broker.layerMemory))
    : Hub.Hub.layer.pipe(Layer.provideMerge(Broker.Broker.layerRedis), Layer.provide(options.redis))

/** This process's presence, or with Redis the union of every process's (`PRESENCE_HEARTBEAT_MS`). */
const presenceLayer = (
  options: Options
): Layer.Layer<Presence.Presence, unknown, Hub.Hub | Broker.Broker | GatewayConfig | History.History> => {
  const redis = options.redis
  // Upstream mode: this process's entries plus the project's and the other relays' (see UpstreamBroker, RelayPresence).
  if (options.upstream !== undefined) {
    return UpstreamPresence.layer.pipe(Layer.provide(upstreamRelay(options.upstream)))
  }
  return redis === undefined
    ? Presence.Presence.layerMemory
    : Layer.unwrap(
      Effect.map(
        GatewayConfig,
        ({ presenceHeartbeatMs }) =>
          Presence.Presence.layerRedis({ heartbeatMs: presenceHeartbeatMs }).pipe(Layer.provide(redis))
      )
    )
}

/** Closes, on this process, the channels whose membership was revoked (here or on another process). */
const RevocationLayer = Layer.effectDiscard(
  Effect.gen(function*() {
    const memberships = yield* Memberships.Memberships
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    yield* memberships.onRevoke((grant) => registry.recheck(grant.userId, ChannelPolicy.subtopicOf(grant)))
  })
)

export const make = (configured: Options) => {
  // Wedding-season mode replaces the configured values before any service reads them (Season.ts).
  const seasoned = Season.layers(configured, configured.calendar)
  const options: Options = {
    ...configured,
    connection: seasoned.connection,
    cache: seasoned.cache,
    scaling: seasoned.scaling
  }
  // One cache for the process: memberships decide through it, and the change feed reads its table plans through it
  // (provided beside `Memberships`, so both see the same instance).
  const memberships = options.memberships.pipe(Layer.provideMerge(cacheLayer(options)))
  const auth = Layer.mergeAll(TokenVerifier.TokenVerifier.layer, ChannelPolicy.ChannelPolicy.layer).pipe(
    Layer.provideMerge(Layer.merge(options.auth, memberships))
  )
  // The history sits below the hub: in upstream mode the relay writes the project's private broadcasts to it.
  const hub = Layer.mergeAll(presenceLayer(options), options.changes).pipe(
    Layer.provideMerge(hubLayer(options)),
    Layer.provideMerge(historyLayer(options)),
    Layer.provide(memberships)
  )
  const connections = ConnectionRegistry.ConnectionRegistry.layer.pipe(Layer.provideMerge(options.connection))
  // Every series exists from the first scrape, at 0, not only after its first event.
  const series = Layer.effectDiscard(
    Effect.all([
      ConnectionMetrics.declareSeries,
      HubMetrics.declareSeries,
      ChangesMetrics.declareSeries,
      CacheMetrics.declareSeries,
      RedisMetrics.declareSeries,
      UpstreamMetrics.declareSeries,
      Effect.flatMap(GatewayConfig, ({ workerId }) => GatewayMetrics.declareWorker(workerId, process.pid))
    ], { discard: true })
  )
  // With Redis, this process's device counts are published for the others and `/admin/devices` sums theirs.
  const redisClient = options.redis
  const devices = redisClient === undefined
    ? DeviceCounts.DeviceCounts.layer
    : Layer.unwrap(
      Effect.map(
        GatewayConfig,
        ({ devicesPublishMs }) =>
          ClusterDevices.ClusterDevices.layer({ publishIntervalMs: devicesPublishMs }).pipe(
            Layer.provideMerge(DeviceCounts.DeviceCounts.layer),
            Layer.provide(redisClient)
          )
      )
    )
  // The Redis client is also a service of its own, for /ready.
  const base = Layer.mergeAll(
    auth,
    hub,
    connections,
    devices,
    ProcessMetrics.layer,
    series,
    options.redis ?? Layer.empty
  )
  // After ProcessMetrics (its first sample reads the event-loop gauge) and the registry it counts sockets in.
  const scaling = Layer.unwrap(
    Effect.map(
      GatewayConfig,
      ({ scalingSampleMs }) =>
        ScalingController.ScalingController.layer({ intervalMs: scalingSampleMs, calendar: options.calendar })
    )
  ).pipe(Layer.provide(seasoned.season))
  // Upstream mode with a wedding calendar: the channels of the next hours' weddings held joined ahead of their devices.
  const warming = options.upstream === undefined || options.calendar === undefined
    ? Layer.empty
    : UpstreamWarming.layer(options.calendar).pipe(Layer.provide(options.upstream))
  const services = Layer.mergeAll(RevocationLayer, scaling, warming).pipe(Layer.provideMerge(base))
  const http = HttpRouter.serve(Routes.routes, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provide(HttpServerLayer)
  )
  // The transport is built after the HTTP routes so that it is released first: the drain runs
  // while /ready and the REST endpoints still answer.
  return WebSocketLayer.pipe(
    Layer.provideMerge(http),
    Layer.provideMerge(NodeServer.layer),
    Layer.provideMerge(services),
    Layer.provideMerge(options.scaling),
    Layer.provideMerge(options.gateway)
  )
}

/**
 * The calendar of the scaling forecast: the file when one is given (the operator's explicit plan), else the warming
 * query over the database, else none.
 */
export const calendarSource = (
  calendarFile: string | undefined,
  database: { readonly databaseUrl: Redacted.Redacted; readonly calendarSql: string | undefined } | undefined
): WeddingCalendar.Source | undefined =>
  calendarFile !== undefined
    ? { _tag: "File", path: calendarFile }
    : database?.calendarSql === undefined
    ? undefined
    : { _tag: "Sql", databaseUrl: database.databaseUrl, sql: database.calendarSql }

/** The change feed over a database (the replication stream and its matcher), or the disabled feed. */
export const changesLayer = <E>(
  changes: Layer.Layer<ChangesConfig.ChangesConfig, E> | undefined,
  rules: PostgresChanges.Options,
  warming: Warmer.WarmerOptions = NO_WARMING
) =>
  changes === undefined
    ? Layer.merge(ChangeFeed.ChangeFeed.layerNoop, Warmer.Warmer.layerNoop)
    // provideMerge: /ready reads the stream's status from Replication.
    : Layer.merge(PostgresChanges.layer(rules), Warmer.Warmer.layer(warming)).pipe(
      Layer.provideMerge(Replication.Replication.layer),
      Layer.provide(changes)
    )

const NO_WARMING: Warmer.WarmerOptions = {
  calendarSql: undefined,
  ahead: Duration.hours(3),
  interval: Duration.minutes(15),
  membershipTable: undefined
}

/** `WEDDING_CALENDAR_SQL`, `WARM_AHEAD` (default 3 hours) and `WARM_INTERVAL` (default 15 minutes). */
const warmingConfig = (membershipTable: MembershipTable.TableName | undefined) =>
  Config.all({
    calendarSql: Config.String("WEDDING_CALENDAR_SQL").pipe(Config.option, Config.map(Option.getOrUndefined)),
    ahead: Config.Duration("WARM_AHEAD").pipe(Config.withDefault(NO_WARMING.ahead)),
    interval: Config.Duration("WARM_INTERVAL").pipe(Config.withDefault(NO_WARMING.interval))
  }).pipe(Config.map((warming): Warmer.WarmerOptions => ({ ...warming, membershipTable })))

/** Memberships from `table` over the database, or none (token claims alone). */
export const membershipsLayer = <E>(
  changes: Layer.Layer<ChangesConfig.ChangesConfig, E> | undefined,
  table: MembershipTable.TableName | undefined
) =>
  changes === undefined || table === undefined
    ? Memberships.Memberships.layerNoop
    : Memberships.Memberships.layer.pipe(Layer.provide(MembershipTable.layer(table)), Layer.provide(changes))

/** `MEMBERSHIP_TABLE` (checked by `checkEnvironment`: a table name, and only with `DATABASE_URL`). */
const membershipTableConfig = Config.String("MEMBERSHIP_TABLE").pipe(
  Config.option,
  Config.map((name) => Option.isNone(name) ? undefined : MembershipTable.parse(name.value))
)

/** `REDIS_URL` set: the Redis client (the start fails with a clear message when Redis cannot be reached); unset: none. */
const redisFromEnv = Effect.map(
  Config.option(Config.String("REDIS_URL")),
  (url) => Option.isNone(url) ? undefined : RedisClient.RedisClient.layerConfig
)

/**
 * The replication slot of worker `id`: worker 1 keeps `REPLICATION_SLOT` (so going from one process to several keeps
 * the slot), the others add `_w<id>`. A slot streams to one consumer, and every worker must deliver the changes to its
 * own sockets, so each reads the WAL through its own slot.
 */
export const workerSlotName = (slot: string, workerId: number): string => workerId === 1 ? slot : `${slot}_w${workerId}`

/**
 * `DATABASE_URL` set: Postgres Changes from this database; unset: from the upstream in upstream mode, else every binding
 * refused with a clear message.
 */
const changesFromEnv = (upstream: Layer.Layer<UpstreamPool.UpstreamPool, unknown> | undefined) =>
  Effect.gen(function*() {
    const url = yield* Config.option(Config.Redacted("DATABASE_URL"))
    const membershipTable = yield* membershipTableConfig
    const rules = { ...(yield* PostgresChanges.config), membershipTable }
    const worker = yield* Config.option(Config.Int(WORKER_ID_VARIABLE))
    const config = Option.isNone(url)
      ? undefined
      : Layer.effect(
        ChangesConfig.ChangesConfig,
        Effect.map(
          ChangesConfig.config,
          (options) =>
            Option.isNone(worker) ? options : { ...options, slotName: workerSlotName(options.slotName, worker.value) }
        )
      )
    const warming = yield* warmingConfig(membershipTable)
    const changes = config === undefined && upstream !== undefined
      ? upstreamChangesLayer(upstream, rules.unscopedTables)
      : changesLayer(config, rules, warming)
    return {
      changes,
      memberships: membershipsLayer(config, membershipTable),
      database: Option.isNone(url) ? undefined : { databaseUrl: url.value, calendarSql: warming.calendarSql }
    }
  })

/** Postgres Changes through the upstream pool, with this gateway's row policy on top. */
export const upstreamChangesLayer = (
  upstream: Layer.Layer<UpstreamPool.UpstreamPool, unknown>,
  unscopedTables: PostgresChanges.Options["unscopedTables"]
) => Layer.merge(UpstreamChanges.layer(unscopedTables).pipe(Layer.provide(upstream)), Warmer.Warmer.layerNoop)

const MINIMUM_LEVEL = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warning: "Warn",
  error: "Error",
  none: "None"
} as const

/** Effect's own loggers: `LOG_FORMAT` picks pretty, JSON lines or logfmt; `LOG_LEVEL` the minimum level. */
export const loggingLayer = (options: LogOptions, annotations: Record<string, unknown> = {}): Layer.Layer<never> =>
  Layer.mergeAll(
    Layer.succeed(References.CurrentLogAnnotations, annotations),
    Logger.layer([
      options.format === "json"
        ? Logger.consoleJson
        : options.format === "logfmt"
        ? Logger.consoleLogFmt
        : Logger.consolePretty()
    ]),
    Layer.succeed(References.MinimumLogLevel, MINIMUM_LEVEL[options.level])
  )

/** The environment is checked as a whole first: one message lists every invalid variable. */
export const fromEnv = Layer.unwrap(
  Effect.gen(function*() {
    yield* checkEnvironment
    // A worker's lines say which worker wrote them (they share the primary's stdout).
    const worker = yield* Config.option(Config.Int(WORKER_ID_VARIABLE))
    const logging = loggingLayer(yield* logConfig, Option.isSome(worker) ? { worker: worker.value } : {})
    const upstream = yield* upstreamFromEnv
    const { changes, memberships, database } = yield* changesFromEnv(upstream)
    const calendarFile = yield* Config.option(Config.String("WEDDING_CALENDAR_FILE"))
    return make({
      calendar: calendarSource(Option.getOrUndefined(calendarFile), database),
      upstream,
      changes,
      memberships,
      gateway: GatewayConfig.layerConfig,
      connection: ConnectionConfig.ConnectionConfig.layerConfig,
      auth: AuthConfig.AuthConfig.layerConfig,
      cache: CacheConfig.CacheConfig.layerConfig,
      scaling: ScalingConfig.ScalingConfig.layerConfig,
      redis: yield* redisFromEnv,
      history: yield* History.config
    }).pipe(Layer.provide(logging))
  })
)

/** A gateway for tests: port 0, no error or replication start delays, explicit limits. */
export const layerTest = (overrides: {
  readonly gateway?: Partial<GatewayOptions>
  readonly connection?: Partial<ConnectionConfig.ConnectionOptions>
  readonly auth?: Partial<AuthConfig.AuthConfig["Service"]>
  readonly changes?: Partial<ChangesConfig.ChangesOptions> & Pick<ChangesConfig.ChangesOptions, "databaseUrl">
  readonly unscopedTables?: PostgresChanges.Options["unscopedTables"]
  /** A membership table (needs `changes`). */
  readonly membershipTable?: MembershipTable.TableName
  /** Cache warming from a calendar query (needs `changes`). */
  readonly warming?: Partial<Omit<Warmer.WarmerOptions, "membershipTable">>
  readonly cache?: CacheConfig.CacheOverrides
  readonly redis?: Partial<RedisConfig.RedisOptions>
  readonly history?: Partial<History.HistoryOptions>
  readonly scaling?: Partial<ScalingConfig.ScalingOptions>
  /** A calendar without the change feed (`WEDDING_CALENDAR_SQL` alone needs no replication to be read). */
  readonly calendar?: WeddingCalendar.Source
  /** Upstream mode: the project and its key (`SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY`) and the pool's settings. */
  readonly upstream?: Pick<UpstreamConfig.UpstreamOptions, "url" | "apiKey"> & Partial<UpstreamConfig.UpstreamOptions>
} = {}) => {
  const changes = overrides.changes === undefined
    ? undefined
    : ChangesConfig.ChangesConfig.layer({ startDelayMs: 0, ...overrides.changes })
  const upstream = overrides.upstream === undefined
    ? undefined
    : UpstreamPool.UpstreamPool.layer.pipe(Layer.provide(UpstreamConfig.UpstreamConfig.layer(overrides.upstream)))
  const rules = {
    unscopedTables: overrides.unscopedTables ?? "service_role",
    membershipTable: overrides.membershipTable
  } as const
  return make({
    upstream,
    calendar: overrides.calendar ?? calendarSource(
      overrides.scaling?.calendarFile,
      overrides.changes === undefined ? undefined : {
        databaseUrl: overrides.changes.databaseUrl,
        calendarSql: overrides.warming?.calendarSql
      }
    ),
    changes: changes === undefined && upstream !== undefined
      ? upstreamChangesLayer(upstream, rules.unscopedTables)
      : changesLayer(changes, rules, {
        ...NO_WARMING,
        ...overrides.warming,
        membershipTable: overrides.membershipTable
      }),
    memberships: membershipsLayer(changes, overrides.membershipTable),
    cache: CacheConfig.CacheConfig.layer(overrides.cache),
    redis: overrides.redis === undefined
      ? undefined
      : RedisClient.RedisClient.layer.pipe(Layer.provide(RedisConfig.RedisConfig.layer(overrides.redis))),
    history: overrides.history,
    gateway: GatewayConfig.layer({ port: 0, drainTimeoutMs: 2_000, ...overrides.gateway }),
    connection: ConnectionConfig.ConnectionConfig.layer({
      connectErrorDelayMs: 0,
      joinErrorDelayMs: 0,
      ...overrides.connection
    }),
    auth: AuthConfig.AuthConfig.layer(overrides.auth),
    // No latency shedding unless a case asks for it: a shared test machine's event loop stalls in bursts.
    scaling: ScalingConfig.ScalingConfig.layer({
      admissionMaxEventLoopP99Ms: 60_000,
      admissionMaxDeliveryP99Ms: 60_000,
      ...overrides.scaling
    })
  })
}

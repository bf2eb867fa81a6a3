/**
 * The gateway's own settings. apps/gateway is the only reader of the environment: this module
 * and the `config` descriptors of the packages it wires.
 *
 * `checkEnvironment` runs before anything is built: it checks every variable the gateway and its
 * packages read and fails with one `GatewayConfigError` that lists every problem, not the first one.
 */
import { AuthConfig } from "@wedsync/auth"
import { MembershipTable } from "@wedsync/changes"
import { ConnectionConfig } from "@wedsync/connection"
import { ScalingConfig } from "@wedsync/scaling"
import { UpstreamPool } from "@wedsync/upstream"
import {
  Config,
  Console,
  Context,
  Duration,
  Effect,
  Layer,
  Option,
  type Redacted,
  Result,
  Runtime,
  Schema
} from "effect"
import { availableParallelism } from "node:os"
import * as ClientAddress from "./ClientAddress.ts"
import * as WeddingCalendar from "./WeddingCalendar.ts"

export interface GatewayOptions {
  readonly host: string
  readonly port: number
  /** How long SIGTERM waits for sockets to leave before closing the rest. */
  readonly drainTimeoutMs: number
  /** Origins the REST endpoints answer CORS requests for; `"*"` is any origin. */
  readonly corsOrigins: "*" | ReadonlyArray<string>
  /** Proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` names the client address. */
  readonly trustedProxies: ReadonlyArray<string>
  /** Largest REST request body; `undefined` is `MAX_PAYLOAD_BYTES` plus `REST_BODY_ALLOWANCE`. */
  readonly maxRestBodyBytes: number | undefined
  /** The bearer token of the `/admin/…` endpoints; unset, they do not exist (404). */
  readonly adminToken: Redacted.Redacted<string> | undefined
  /** How often device counts are published to Redis (with `REDIS_URL`). */
  readonly devicesPublishMs: number
  /** The delivery p99 (ms) above which `/dashboard` raises an alert. */
  readonly dashboardSloMs: number
  /** This process's number among the workers (1 when it runs alone); the `worker` label of `wedsync_worker_info`. */
  readonly workerId: number
  /**
   * Listen with `SO_REUSEPORT`, sharing the port with the sibling workers (the kernel spreads connections over them).
   * Only workers started by a primary do: a lone gateway must fail on a port already in use.
   */
  readonly reusePort: boolean
  /** With Redis: how often this process refreshes its presence heartbeat and checks the other processes'. */
  readonly presenceHeartbeatMs: number
  /** How often the scaling controller samples this process and runs the policy. */
  readonly scalingSampleMs: number
}

/** Set by the primary (`WORKERS` > 1) in each worker's environment: its number, from 1. */
export const WORKER_ID_VARIABLE = "WEDSYNC_WORKER_ID"

/** Room for a REST body's envelope (topic, event, the batch's JSON) above the payload limit. */
const REST_BODY_ALLOWANCE = 65_536

export const defaults: GatewayOptions = {
  host: "127.0.0.1",
  port: 4000,
  drainTimeoutMs: 30_000,
  corsOrigins: "*",
  trustedProxies: [],
  maxRestBodyBytes: undefined,
  adminToken: undefined,
  devicesPublishMs: 5_000,
  dashboardSloMs: 100,
  workerId: 1,
  reusePort: false,
  presenceHeartbeatMs: 2_000,
  scalingSampleMs: 15_000
}

export class GatewayConfig extends Context.Service<GatewayConfig, GatewayOptions>()("@wedsync/gateway/GatewayConfig") {
  static readonly layer = (options: Partial<GatewayOptions> = {}): Layer.Layer<GatewayConfig> =>
    Layer.succeed(GatewayConfig, { ...defaults, ...options })

  static readonly layerConfig: Layer.Layer<GatewayConfig, Config.ConfigError> = Layer.effect(
    GatewayConfig,
    Config.all({
      host: Config.String("HOST").pipe(Config.withDefault(defaults.host)),
      // Config.Port refuses 0; 0 (an ephemeral port) is useful for tests and side-by-side runs.
      port: Config.Int("PORT").pipe(Config.withDefault(defaults.port)),
      drainTimeoutMs: Config.Int("DRAIN_TIMEOUT_MS").pipe(Config.withDefault(defaults.drainTimeoutMs)),
      corsOrigins: Config.String("CORS_ORIGINS").pipe(
        Config.withDefault("*"),
        Config.map((raw): "*" | ReadonlyArray<string> => (raw.trim() === "*" ? "*" : ClientAddress.parseList(raw)))
      ),
      trustedProxies: Config.String("TRUSTED_PROXIES").pipe(
        Config.withDefault(""),
        Config.map(ClientAddress.parseList)
      ),
      maxRestBodyBytes: Config.Int("MAX_REST_BODY_BYTES").pipe(
        Config.option,
        Config.map((o) => o._tag === "Some" ? o.value : undefined)
      ),
      adminToken: Config.Redacted("ADMIN_TOKEN").pipe(
        Config.option,
        Config.map((o) => o._tag === "Some" ? o.value : undefined)
      ),
      devicesPublishMs: Config.Int("DEVICES_PUBLISH_MS").pipe(Config.withDefault(defaults.devicesPublishMs)),
      dashboardSloMs: Config.Number("DASHBOARD_SLO_MS").pipe(Config.withDefault(defaults.dashboardSloMs)),
      workerId: Config.Int("WEDSYNC_WORKER_ID").pipe(Config.withDefault(defaults.workerId)),
      reusePort: Config.Int("WEDSYNC_WORKER_ID").pipe(Config.option, Config.map((o) => o._tag === "Some")),
      presenceHeartbeatMs: Config.Int("PRESENCE_HEARTBEAT_MS").pipe(Config.withDefault(defaults.presenceHeartbeatMs)),
      scalingSampleMs: Config.Int("SCALE_SAMPLE_INTERVAL_MS").pipe(Config.withDefault(defaults.scalingSampleMs))
    })
  )
}

/** The REST body cap for a payload limit. */
export const restBodyLimit = (options: GatewayOptions, maxPayloadBytes: number): number =>
  options.maxRestBodyBytes ?? maxPayloadBytes + REST_BODY_ALLOWANCE

const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "none"] as const
const LOG_FORMATS = ["pretty", "json", "logfmt"] as const

export interface LogOptions {
  readonly level: (typeof LOG_LEVELS)[number]
  readonly format: (typeof LOG_FORMATS)[number]
}

/** `LOG_LEVEL` (default `info`) and `LOG_FORMAT` (default `pretty`). */
export const logConfig: Config.Config<LogOptions> = Config.all({
  level: Config.Literals(LOG_LEVELS, "LOG_LEVEL").pipe(Config.withDefault("info" as const)),
  format: Config.Literals(LOG_FORMATS, "LOG_FORMAT").pipe(Config.withDefault("pretty" as const))
})

/**
 * Start-up refused: every problem found in the environment. `checkEnvironment` prints it to stderr
 * itself (the message is the whole story, a stack trace would be noise), so `runMain` does not log it
 * again; the process exits with 78 (EX_CONFIG).
 */
class GatewayConfigError extends Schema.TaggedError<GatewayConfigError>()("GatewayConfigError", {
  problems: Schema.Array(Schema.String)
}) {
  override readonly [Runtime.errorReported] = false
  override readonly [Runtime.errorExitCode] = 78

  override get message(): string {
    const n = this.problems.length
    return `Invalid configuration (${n} problem${n === 1 ? "" : "s"}), the gateway did not start:\n` +
      this.problems.map((p) => `  - ${p}`).join("\n")
  }
}

/** Shortest `ADMIN_TOKEN` accepted: 32 random bytes' worth of guessing, like `JWT_SECRET`. */
export const MIN_ADMIN_TOKEN_BYTES = 32

type Check = (raw: string) => string | undefined

const integer = (min: number, max = Number.MAX_SAFE_INTEGER): Check => (raw) => {
  const n = /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : Number.NaN
  if (!Number.isSafeInteger(n))
    return max === Number.MAX_SAFE_INTEGER
      ? `must be an integer >= ${min}`
      : `must be an integer from ${min} to ${max}`
  if (n < min || n > max) return max === Number.MAX_SAFE_INTEGER ? `must be >= ${min}` : `must be from ${min} to ${max}`
  return undefined
}

const oneOf = (values: ReadonlyArray<string>): Check => (raw) =>
  values.includes(raw) ? undefined : `must be one of ${values.join(", ")}`

const nonEmpty: Check = (raw) => (raw.trim() === "" ? "must not be empty" : undefined)

const url = (protocols: ReadonlyArray<string>): Check => (raw) => {
  if (!URL.canParse(raw)) return `is not a URL (expected ${protocols.map((p) => `${p}//…`).join(" or ")})`
  const parsed = new URL(raw)
  if (!protocols.includes(parsed.protocol)) return `must start with ${protocols.map((p) => `${p}//`).join(" or ")}`
  if (parsed.hostname === "" && !parsed.searchParams.has("host")) return "has no host"
  return undefined
}

const proxies: Check = (raw) => {
  const problems = ClientAddress.parseList(raw).map(ClientAddress.entryProblem).filter((p) => p !== undefined)
  return problems.length === 0 ? undefined : problems.join("; ")
}

const origins: Check = (raw) => {
  if (raw.trim() === "*") return undefined
  const list = ClientAddress.parseList(raw)
  if (list.length === 0) return "must be * or a comma-separated list of origins (https://app.example.com)"
  const bad = list.filter((o) => !URL.canParse(o) || new URL(o).origin !== o)
  return bad.length === 0
    ? undefined
    : `${bad.map((o) => JSON.stringify(o)).join(", ")}: not an origin (scheme://host[:port], no path)`
}

const tableName: Check = (raw) =>
  MembershipTable.parse(raw) === undefined ? "must be a table name, schema.table or table (schema public)" : undefined

/** A duration Effect's `Config.Duration` reads (`"1 hour"`, `"90 seconds"`, `"500 millis"`), at least `min`. */
const decodeDuration = Schema.decodeUnknownOption(Schema.DurationFromString)

const duration = (min: Duration.Duration): Check => (raw) => {
  const parsed = decodeDuration(raw.trim())
  if (Option.isNone(parsed)) return `must be a duration such as "1 hour", "30 minutes" or "90 seconds"`
  if (!Duration.isFinite(parsed.value)) return "must be finite"
  return Duration.isLessThan(parsed.value, min) ? `must be at least ${Duration.format(min)}` : undefined
}

/** Upper bound of `WORKERS`: far above any core count this gateway is deployed on, low enough to catch a typo. */
export const MAX_WORKERS = 256

/** `WORKERS`: a count from 1, or `auto` for one per core (`availableParallelism`). */
export const parseWorkers = (raw: string, cores: number): number | undefined => {
  if (raw.trim() === "auto") return Math.max(1, cores)
  return integer(1, MAX_WORKERS)(raw) === undefined ? Number(raw) : undefined
}

const workers: Check = (raw) =>
  parseWorkers(raw, 1) === undefined ? `must be auto or an integer from 1 to ${MAX_WORKERS}` : undefined

/** How many gateway processes `WORKERS` asks for on this machine (1 when unset). */
export const workersConfig: Config.Config<number> = Config.String("WORKERS").pipe(
  Config.withDefault("1"),
  Config.map((raw) => parseWorkers(raw, availableParallelism()) ?? 1)
)

const atLeast1 = integer(1)
const atLeast0 = integer(0)

/**
 * Every variable with its rule. `secret` ones are never echoed. Integers are checked here rather
 * than by `Config.Int` alone so that a negative or zero limit is refused too.
 */
const RULES: ReadonlyArray<readonly [name: string, check: Check, secret?: "secret"]> = [
  ["HOST", nonEmpty],
  ["PORT", integer(0, 65_535)],
  ["DRAIN_TIMEOUT_MS", atLeast0],
  ["CORS_ORIGINS", origins],
  ["TRUSTED_PROXIES", proxies],
  ["MAX_REST_BODY_BYTES", atLeast1],
  ["ADMIN_TOKEN", nonEmpty, "secret"],
  ["DEVICES_PUBLISH_MS", integer(100)],
  ["PRESENCE_HEARTBEAT_MS", integer(100)],
  ["SCALE_SAMPLE_INTERVAL_MS", integer(100)],
  ["LOG_LEVEL", oneOf(LOG_LEVELS)],
  ["LOG_FORMAT", oneOf(LOG_FORMATS)],
  ["JWT_SECRET", nonEmpty, "secret"],
  ["DEV_MODE", oneOf(["true", "false"])],
  ["JWT_ISSUER", nonEmpty],
  ["JWT_AUDIENCE", nonEmpty],
  ["JWT_JWKS_URL", url(["https:", "http:"])],
  ["MAX_CONNECTIONS", atLeast1],
  ["MAX_CONNECTIONS_PER_USER", atLeast1],
  ["MAX_CONNECTIONS_PER_IP", atLeast1],
  ["MAX_CHANNELS_PER_CONNECTION", atLeast1],
  ["MAX_EVENTS_PER_SECOND", atLeast1],
  ["MAX_FRAMES_PER_SECOND", atLeast1],
  ["MAX_BINDINGS_PER_CHANNEL", atLeast1],
  ["MAX_JOINS_PER_SECOND", atLeast1],
  ["MAX_PAYLOAD_BYTES", atLeast1],
  ["OUTBOX_LIMIT_BYTES", atLeast1],
  ["IDLE_TIMEOUT_MS", atLeast1],
  ["SWEEP_INTERVAL_MS", atLeast1],
  ["CONNECT_ERROR_BACKOFF_MS", atLeast0],
  ["CHANNEL_ERROR_BACKOFF_MS", atLeast0],
  ["CLIENT_PRESENCE_MAX_CALLS", atLeast1],
  ["CLIENT_PRESENCE_WINDOW_MS", atLeast1],
  ["PRESENCE_MAX_KEYS_PER_CHANNEL", atLeast1],
  ["PRESENCE_MAX_BYTES_PER_CHANNEL", atLeast1],
  ["PRESENCE_MAX_BYTES_PER_SOCKET", atLeast1],
  ["DRAIN_BATCH_SIZE", atLeast1],
  ["DRAIN_INTERVAL_MS", atLeast0],
  ["MAILBOX_CAPACITY", atLeast1],
  ["DATABASE_URL", url(["postgres:", "postgresql:"]), "secret"],
  ["REPLICATION_SLOT", nonEmpty],
  ["REPLICATION_PUBLICATION", nonEmpty],
  ["REPLICATION_START_DELAY_MS", atLeast0],
  ["UNSCOPED_TABLES", oneOf(["service_role", "authenticated", "all"])],
  ["MEMBERSHIP_TABLE", tableName],
  ["HISTORY_MAX_MESSAGES", integer(1, 1_000_000)],
  ["HISTORY_TTL", duration(Duration.seconds(1))],
  ["WORKERS", workers],
  [WORKER_ID_VARIABLE, integer(1, MAX_WORKERS)],
  ["SUPABASE_URL", url(["https:", "http:"])],
  ["SUPABASE_SERVICE_ROLE_KEY", nonEmpty, "secret"],
  ["UPSTREAM_CHANNELS_PER_SOCKET", integer(1, 10_000)],
  ["UPSTREAM_MAX_SOCKETS", integer(1, 10_000)],
  ["UPSTREAM_IDLE_GRACE", duration(Duration.zero)],
  ["UPSTREAM_HEARTBEAT_INTERVAL", duration(Duration.millis(100))],
  ["UPSTREAM_JOIN_TIMEOUT", duration(Duration.millis(100))],
  ["UPSTREAM_JOINS_PER_SECOND", integer(1, 100_000)]
]

const shown = (raw: string) => JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}…` : raw)

/** Reads every variable in `RULES` that is set and fails with all the problems at once. */
export const checkEnvironment: Effect.Effect<void, GatewayConfigError> = Effect.gen(function*() {
  const problems: Array<string> = []
  for (const [name, check, secret] of RULES) {
    const value = yield* Effect.orDie(Config.option(Config.String(name)))
    if (value._tag === "None") continue
    const problem = check(value.value)
    if (problem !== undefined)
      problems.push(secret === "secret" ? `${name}: ${problem}` : `${name}=${shown(value.value)}: ${problem}`)
  }
  // A short HS secret can be brute-forced offline from any token a client holds; only an explicit dev mode may use one.
  const secret = yield* Effect.orDie(Config.option(Config.String("JWT_SECRET")))
  const devMode = yield* Effect.orDie(Config.option(Config.String("DEV_MODE")))
  if (
    secret._tag === "Some" && secret.value.trim() !== "" &&
    Buffer.byteLength(secret.value) < AuthConfig.MIN_SECRET_BYTES &&
    !(devMode._tag === "Some" && devMode.value === "true")
  ) {
    problems.push(
      `JWT_SECRET: must be at least ${AuthConfig.MIN_SECRET_BYTES} bytes (it has ${
        Buffer.byteLength(secret.value)
      }); DEV_MODE=true allows a shorter one for local development`
    )
  }
  // The admin token is checked online, where nothing limits guesses but the token's length: a short one could be
  // guessed over HTTP. Refused even in dev mode: the operator endpoints are off without it.
  const adminToken = yield* Effect.orDie(Config.option(Config.String("ADMIN_TOKEN")))
  if (
    adminToken._tag === "Some" && adminToken.value.trim() !== "" &&
    Buffer.byteLength(adminToken.value) < MIN_ADMIN_TOKEN_BYTES
  ) {
    problems.push(
      `ADMIN_TOKEN: must be at least ${MIN_ADMIN_TOKEN_BYTES} bytes (it has ${
        Buffer.byteLength(adminToken.value)
      }); use a long random value, e.g. \`openssl rand -hex 32\``
    )
  }
  const membershipTable = yield* Effect.orDie(Config.option(Config.String("MEMBERSHIP_TABLE")))
  const databaseUrl = yield* Effect.orDie(Config.option(Config.String("DATABASE_URL")))
  if (membershipTable._tag === "Some" && databaseUrl._tag === "None") {
    problems.push("MEMBERSHIP_TABLE: needs DATABASE_URL (memberships are read from and followed in that database)")
  }
  const workerCount = yield* Effect.orDie(Config.option(Config.String("WORKERS")))
  const redisUrl = yield* Effect.orDie(Config.option(Config.String("REDIS_URL")))
  if (workerCount._tag === "Some" && redisUrl._tag === "None") {
    const count = parseWorkers(workerCount.value, availableParallelism())
    if (count !== undefined && count > 1) {
      problems.push(
        `WORKERS=${shown(workerCount.value)} (${count} processes): needs REDIS_URL ` +
          "(the processes pass broadcasts to each other through Redis; without it a client would only hear the " +
          "clients of its own process)"
      )
    }
  }
  // Upstream mode needs both: the project and the key the pool joins with.
  const supabaseUrl = yield* Effect.orDie(Config.option(Config.String("SUPABASE_URL")))
  const serviceKey = yield* Effect.orDie(Config.option(Config.String("SUPABASE_SERVICE_ROLE_KEY")))
  if (supabaseUrl._tag !== serviceKey._tag) {
    problems.push(
      supabaseUrl._tag === "Some"
        ? "SUPABASE_URL: needs SUPABASE_SERVICE_ROLE_KEY (the upstream pool joins the project's channels with it)"
        : "SUPABASE_SERVICE_ROLE_KEY: needs SUPABASE_URL (the project the upstream pool connects to)"
    )
  }
  // Rules between variables, once each value is valid on its own.
  if (problems.length === 0) {
    const connection = yield* Effect.orDie(ConnectionConfig.config)
    problems.push(...ConnectionConfig.limitProblems(connection))
  }
  // The scaling settings: each value, the rules between them, and the calendar file (read and decoded whole).
  const scaling = yield* Effect.result(ScalingConfig.config)
  if (Result.isFailure(scaling)) problems.push(scaling.failure.message)
  else {
    problems.push(...ScalingConfig.problems(scaling.success))
    if (scaling.success.calendarFile !== undefined) {
      const calendar = yield* Effect.result(WeddingCalendar.load(scaling.success.calendarFile))
      if (Result.isFailure(calendar)) problems.push(calendar.failure.message)
    }
  }
  if (problems.length === 0) return
  const error = new GatewayConfigError({ problems })
  yield* Console.error(error.message)
  return yield* error
})

/**
 * `SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` set: upstream mode, the pool of connections to that project
 * (`UPSTREAM_CHANNELS_PER_SOCKET`, `UPSTREAM_MAX_SOCKETS`, `UPSTREAM_IDLE_GRACE`, `UPSTREAM_HEARTBEAT_INTERVAL`,
 * `UPSTREAM_JOIN_TIMEOUT`, `UPSTREAM_JOINS_PER_SECOND`); unset: none.
 */
export const upstreamFromEnv: Effect.Effect<Layer.Layer<UpstreamPool.UpstreamPool, unknown> | undefined> = Effect.map(
  Effect.orDie(Config.option(Config.String("SUPABASE_URL"))),
  (url) => Option.isNone(url) ? undefined : UpstreamPool.UpstreamPool.layerConfig
)

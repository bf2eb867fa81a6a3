/** Health, readiness and metrics routes, plus the REST broadcast endpoints, behind the CORS middleware. */
import { Replication } from "@wedsync/changes"
import { ConnectionRegistry } from "@wedsync/connection"
import { Exposition } from "@wedsync/metrics"
import { Broker } from "@wedsync/hub"
import { RedisClient } from "@wedsync/redis"
import { Effect, Layer, Option } from "effect"
import { HttpMiddleware, HttpRouter, HttpServerResponse } from "effect/http"
import * as Admin from "./Admin.ts"
import * as Broadcasts from "./Broadcasts.ts"
import * as Dashboard from "./Dashboard.ts"
import { GatewayConfig } from "./GatewayConfig.ts"

const health = HttpRouter.route("GET", "/health", Effect.succeed(HttpServerResponse.jsonUnsafe({ status: "ok" })))

/** Why Postgres Changes keep this node from being ready, or undefined when they do not (or are not configured). */
const changesNotReady = Effect.gen(function*() {
  // Present only with DATABASE_URL (GatewayLayer.changesLayer keeps it beside the change feed).
  const replication = yield* Effect.serviceOption(Replication.Replication)
  if (Option.isNone(replication)) return undefined
  const status = yield* replication.value.status
  switch (status._tag) {
    case "Streaming":
    case "Waiting":
      return undefined
    case "Starting":
      return "Postgres Changes: the replication stream is starting"
    case "Down":
      return `Postgres Changes: the replication stream is down: ${status.reason}`
  }
})

/**
 * Redis's health for the `/ready` body, with `REDIS_URL` only. It does not make the node unready: without Redis the
 * gateway serves from its in-process cache and its own sockets, and catches up when Redis returns.
 */
const redisHealth = Effect.gen(function*() {
  const redis = yield* Effect.serviceOption(RedisClient.RedisClient)
  if (Option.isNone(redis)) return undefined
  const health = yield* redis.value.health
  return health.ok ? { ok: true, latencyMs: health.latencyMs } : { ok: false, error: health.error }
})

/**
 * The Redis broker's subscriptions (`connected`, `disconnected`, `resubscribing`), with `REDIS_URL` only. Like Redis's
 * health it does not make the node unready: every process of a deployment shares the one Redis, so an outage takes
 * them all alike and sending clients elsewhere gains nothing, while each still serves its own sockets (local fan-out,
 * presence, Postgres Changes); when the subscriptions are back, every held topic is told it may have missed messages.
 */
const brokerState = Effect.gen(function*() {
  if (Option.isNone(yield* Effect.serviceOption(RedisClient.RedisClient))) return undefined
  return yield* (yield* Broker.Broker).state
})

/**
 * Not ready while draining, so a load balancer stops sending new sockets here, nor while the Postgres Changes
 * stream is not delivering (starting, down, or its slot held by another process); the body says why, and which
 * process (`worker`, `pid`) answered.
 */
const ready = HttpRouter.route(
  "GET",
  "/ready",
  Effect.gen(function*() {
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const reason = registry.isDraining() ? "draining" : yield* changesNotReady
    const redis = yield* redisHealth
    const broker = yield* brokerState
    const { workerId } = yield* GatewayConfig
    const extra = {
      worker: workerId,
      pid: process.pid,
      ...(redis === undefined ? {} : { redis }),
      ...(broker === undefined ? {} : { broker })
    }
    return HttpServerResponse.jsonUnsafe(
      reason === undefined
        ? { ready: true, connections: registry.count(), ...extra }
        : { ready: false, connections: registry.count(), reason, ...extra },
      { status: reason === undefined ? 200 : 503 }
    )
  })
)

const metrics = HttpRouter.route(
  "GET",
  "/metrics",
  Effect.map(Exposition.render, (text) => HttpServerResponse.text(text, { contentType: Exposition.contentType }))
)

/**
 * Browser apps call the REST endpoints (`channel.httpSend`), so preflights (`OPTIONS`) are answered
 * and responses carry `Access-Control-Allow-Origin` for `CORS_ORIGINS`: `*` (the default, as
 * Supabase's API gateway; credentials are bearer headers, never cookies) or a list, where an origin
 * outside the list gets no allow header and the browser blocks the call. Requested headers
 * (supabase-js sends `apikey`, `authorization`, `content-type`, `x-client-info`) are allowed.
 */
const cors = Layer.unwrap(
  Effect.map(GatewayConfig, ({ corsOrigins }) => {
    const allowed = corsOrigins === "*" ? undefined : new Set(corsOrigins)
    return HttpRouter.middleware(
      HttpMiddleware.cors({
        // An empty list is Effect's "any origin" (`*`); a predicate answers with the request's origin.
        allowedOrigins: allowed === undefined ? [] : (origin: string) => allowed.has(origin),
        allowedMethods: ["GET", "POST", "OPTIONS"],
        maxAge: 86_400
      }),
      { global: true }
    )
  })
)

export const routes = Layer.mergeAll(
  HttpRouter.addAll([health, ready, metrics]),
  Broadcasts.routes,
  Admin.routes,
  Dashboard.routes,
  cors
)

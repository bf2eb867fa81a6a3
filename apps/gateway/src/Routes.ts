/** Health, readiness and metrics routes, plus the REST broadcast endpoints. */
import { ConnectionRegistry } from "@wedsync/connection"
import { Exposition } from "@wedsync/metrics"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import * as Broadcasts from "./Broadcasts.ts"

const health = HttpRouter.route("GET", "/health", Effect.succeed(HttpServerResponse.jsonUnsafe({ status: "ok" })))

/** Not ready while draining, so a load balancer stops sending new sockets here. */
const ready = HttpRouter.route(
  "GET",
  "/ready",
  Effect.gen(function*() {
    const registry = yield* ConnectionRegistry.ConnectionRegistry
    const draining = registry.isDraining()
    return HttpServerResponse.jsonUnsafe(
      { ready: !draining, connections: registry.count() },
      { status: draining ? 503 : 200 }
    )
  })
)

const metrics = HttpRouter.route(
  "GET",
  "/metrics",
  Effect.map(Exposition.render, (text) => HttpServerResponse.text(text, { contentType: Exposition.contentType }))
)

export const routes = Layer.mergeAll(HttpRouter.addAll([health, ready, metrics]), Broadcasts.routes)

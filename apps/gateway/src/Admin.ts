/**
 * Operator endpoints under `/admin`, for `Authorization: Bearer <ADMIN_TOKEN>` only.
 *
 * Without `ADMIN_TOKEN` the routes are not registered at all, so they answer the router's 404 like any unknown path:
 * a deployment that did not opt in shows no admin surface. With it, a request without a bearer token gets 401
 * `AdminTokenMissing`, one with another token 401 `AdminTokenInvalid`; past 10 wrong tokens a minute from one client
 * address, 429 `AdminTooManyAttempts` with `Retry-After` (`AdminAttempts`) (`ErrorReply.restRefusal`, logged like REST
 * refusals). The token is compared in constant time, over SHA-256 digests so that its length does not leak either.
 *
 * `GET /admin/devices` answers connected devices per wedding and supplier (`ClusterDevices.summary`): cluster-wide
 * with `REDIS_URL`, this process's without it. `?wedding=<id>` and `?supplier=<id>` (repeatable) ask for those ids;
 * `?top=<n>` (1-100, default 10) sizes the lists of the busiest ones.
 *
 * `GET /admin/scaling` answers this process's scaling observation and decision (`ScalingController.Snapshot`): the
 * load it sampled, the desired replicas with the reason, the headroom and, with a wedding calendar (`WEDDING_CALENDAR_FILE` or `WEDDING_CALENDAR_SQL`), the predicted
 * connections and `forecast`, the calendar's curve from a day before to a day after now. Reading it changes nothing.
 *
 * `POST /admin/cache/warm` runs one wedding-season warming now (`Warmer`) and answers its report; 409
 * `WarmingNotConfigured` without a calendar, 503 `WarmingFailed` when a query failed.
 */
import { NodeHttpServerRequest } from "@effect/platform-node"
import { ErrorReply, RefusalLog, RestError } from "@wedsync/connection"
import { Clock, Effect, Layer, Redacted } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { createHash, timingSafeEqual } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { AdminAttempts } from "./AdminAttempts.ts"
import * as ClientAddress from "./ClientAddress.ts"
import { Warmer } from "@wedsync/changes"
import * as ClusterDevices from "./ClusterDevices.ts"
import { GatewayConfig } from "./GatewayConfig.ts"
import * as ScalingController from "./ScalingController.ts"

const digest = (text: string) => createHash("sha256").update(text).digest()

/** The client address of a request, behind `TRUSTED_PROXIES` as the WebSocket upgrade sees it. */
export const addressOf = (trustedProxies: ReadonlyArray<string>) => {
  const address = ClientAddress.make(trustedProxies)
  return (request: HttpServerRequest.HttpServerRequest): string =>
    address(NodeHttpServerRequest.toIncomingMessage(request) as IncomingMessage)
}

/** The 429 of an address that sent too many wrong admin tokens, with `Retry-After`. */
export const tooManyAttempts = (retryAfterSeconds: number, headers: Record<string, string> = {}) => {
  const reason = RestError.adminTooManyAttempts(retryAfterSeconds)
  const { status, body } = ErrorReply.restRefusal(reason)
  return Effect.as(
    RefusalLog.log("rest", reason),
    HttpServerResponse.text(body, {
      status,
      contentType: "application/json",
      headers: { ...headers, "retry-after": String(retryAfterSeconds) }
    })
  )
}

/** Whether a string is the admin token, compared in constant time; the expected digest is computed once. */
export const tokenCheck = (token: Redacted.Redacted<string>) => {
  const expected = digest(Redacted.value(token))
  return (sent: string): boolean => timingSafeEqual(digest(sent), expected)
}

/** A check of the `Authorization` header against the admin token. */
export const bearerCheck = (token: Redacted.Redacted<string>) => {
  const isToken = tokenCheck(token)
  return (authorization: string | undefined): RestError.Reason | undefined => {
    const sent = authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1]
    if (sent === undefined) return RestError.adminTokenMissing()
    return isToken(sent) ? undefined : RestError.adminTokenInvalid()
  }
}

const DEFAULT_TOP = 10
const MAX_TOP = 100

const topOf = (raw: string | null): number => {
  const n = raw === null ? Number.NaN : Number(raw)
  return Number.isInteger(n) ? Math.min(MAX_TOP, Math.max(1, n)) : DEFAULT_TOP
}

const devices = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const params = new URL(request.url, "http://gateway").searchParams
  const weddings = params.getAll("wedding")
  const suppliers = params.getAll("supplier")
  const summary = yield* ClusterDevices.summary(topOf(params.get("top")))
  const { counts, ...rest } = summary
  if (weddings.length === 0 && suppliers.length === 0) return HttpServerResponse.jsonUnsafe(rest)
  const pick = (ids: ReadonlyArray<string>, of: ReadonlyMap<string, number>) =>
    ids.map((id) => ({ id, devices: of.get(id) ?? 0 }))
  return HttpServerResponse.jsonUnsafe({
    scope: summary.scope,
    processes: summary.processes,
    ...(weddings.length === 0 ? {} : { wedding: pick(weddings, counts.wedding) }),
    ...(suppliers.length === 0 ? {} : { supplier: pick(suppliers, counts.supplier) }),
    ...(summary.error === undefined ? {} : { error: summary.error })
  })
})

const scaling = Effect.flatMap(
  ScalingController.ScalingController,
  (controller) => Effect.map(controller.current, (snapshot) => HttpServerResponse.jsonUnsafe(snapshot))
)

/** Runs one warming now and answers what it did (`Warmer.WarmReport`). */
const warmNow = Effect.gen(function*() {
  const warmer = yield* Warmer.Warmer
  if (!warmer.enabled) return yield* refuse(RestError.warmingNotConfigured())
  return yield* warmer.warm.pipe(
    Effect.map((report) => HttpServerResponse.jsonUnsafe(report)),
    Effect.catch((error) => refuse(RestError.warmingFailed(error.message)))
  )
})

const refuse = (reason: RestError.Reason) => {
  const { status, body } = ErrorReply.restRefusal(reason)
  return Effect.as(
    RefusalLog.log("rest", reason),
    HttpServerResponse.text(body, { status, contentType: "application/json" })
  )
}

/** The admin routes, or none without `ADMIN_TOKEN`. */
export const routes = Layer.unwrap(
  Effect.map(GatewayConfig, ({ adminToken, trustedProxies }) => {
    if (adminToken === undefined) return Layer.empty
    const check = bearerCheck(adminToken)
    const attempts = new AdminAttempts()
    const clientAddress = addressOf(trustedProxies)
    const guarded = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const address = clientAddress(request)
        const now = yield* Clock.currentTimeMillis
        const wait = attempts.blockedFor(address, now)
        if (wait !== undefined) return yield* tooManyAttempts(wait)
        const refusal = check(request.headers["authorization"])
        if (refusal === undefined) return yield* handler
        // A missing header is not a guess; a wrong token is.
        if (refusal._tag === "AdminTokenInvalid") attempts.failed(address, now)
        return yield* refuse(refusal)
      })
    return HttpRouter.addAll([
      HttpRouter.route("GET", "/admin/devices", guarded(devices)),
      HttpRouter.route("GET", "/admin/scaling", guarded(scaling)),
      HttpRouter.route("POST", "/admin/cache/warm", guarded(warmNow))
    ])
  })
)

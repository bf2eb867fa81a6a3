/**
 * `GET /dashboard`: a live operator page for this process, behind the same `ADMIN_TOKEN` as `/admin` (and, like it,
 * absent without one: every `/dashboard` path answers the router's 404).
 *
 * The token is sent once, from the login form (`POST /dashboard/session`, a form body, so never in a URL or an
 * access log), and answered with a session cookie (`DashboardSession`: an HMAC-signed expiry, HttpOnly,
 * SameSite=Strict, Path=/dashboard). The page, and `GET /dashboard/stream` (Server-Sent Events, one JSON snapshot a
 * second from `DashboardSampler`), authenticate by that cookie: without it the page answers 401 with the login form
 * and the stream 401. The stylesheet and script are public and hold no data. Every response carries a CSP that
 * allows only this origin's script and style.
 *
 * At most `MAX_STREAMS` streams are open at once (503 beyond); each ends when the process starts draining.
 */
import { ConnectionRegistry, ErrorReply, RefusalLog, RestError } from "@wedsync/connection"
import { ByteSize, Clock, Effect, Layer, Option, Redacted, Stream } from "effect"
import {
  HttpIncomingMessage,
  HttpRouter,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse,
  UrlParams
} from "effect/http"
import { addressOf, tokenCheck, tooManyAttempts } from "./Admin.ts"
import { AdminAttempts } from "./AdminAttempts.ts"
import * as DashboardPage from "./DashboardPage.ts"
import * as DashboardSampler from "./DashboardSampler.ts"
import * as DashboardSession from "./DashboardSession.ts"
import { GatewayConfig } from "./GatewayConfig.ts"

const MAX_STREAMS = 8
/** A login form body is one short field; anything longer is not a token. */
const MAX_LOGIN_BODY_BYTES = 4096
const SCALING_TIMEOUT_MS = 2_000

const securityHeaders = {
  "content-security-policy": DashboardPage.contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

const html = (body: string, status = 200) =>
  HttpServerResponse.text(body, { status, contentType: "text/html; charset=utf-8", headers: securityHeaders })

/** `/admin/scaling` of this very process, over loopback with the admin token; 404 means the gateway has none. */
export const scalingReader = (url: string | undefined, token: Redacted.Redacted<string>) =>
  Effect.tryPromise(async (): Promise<DashboardSampler.Scaling> => {
    if (url === undefined) return { available: false, reason: "not available (no TCP address)" }
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${Redacted.value(token)}` },
      signal: AbortSignal.timeout(SCALING_TIMEOUT_MS)
    })
    if (response.status === 404) return { available: false, reason: "not available" }
    if (!response.ok) return { available: false, reason: `GET /admin/scaling answered ${response.status}` }
    return { available: true, body: await response.json() }
  }).pipe(
    Effect.catch((error) =>
      Effect.succeed<DashboardSampler.Scaling>({ available: false, reason: `unreadable: ${String(error.cause)}` })
    )
  )

const loopbackUrl = (address: HttpServer.HttpServer["Service"]["address"]) => {
  if (address._tag === "UnixPathAddress") return undefined
  // `http://host:port`; a wildcard listen address is reachable on loopback.
  const origin = HttpServer.formatAddress(address)
    .replace(/^http:\/\/0\.0\.0\.0:/, "http://127.0.0.1:")
    .replace(/^http:\/\/\[::\]:/, "http://[::1]:")
  return `${origin}/admin/scaling`
}

/** The dashboard routes and their sampler, or none without `ADMIN_TOKEN`. */
export const routes = Layer.unwrap(
  Effect.gen(function*() {
    const { adminToken, dashboardSloMs, workerId, trustedProxies } = yield* GatewayConfig
    if (adminToken === undefined) return Layer.empty
    // Its own count: the login form and the bearer endpoints are separate doors, each limited on its own.
    const attempts = new AdminAttempts()
    const clientAddress = addressOf(trustedProxies)
    const server = yield* HttpServer.HttpServer
    const sessions = DashboardSession.make(adminToken)
    const isToken = tokenCheck(adminToken)
    const sampler = DashboardSampler.make({
      worker: workerId,
      sloMs: dashboardSloMs,
      scaling: scalingReader(loopbackUrl(server.address), adminToken)
    })
    const encoder = new TextEncoder()
    // Encoded once per sample, however many streams send it.
    let encodedFor: DashboardSampler.Snapshot | undefined
    let encoded = new Uint8Array(0)
    const frame = () => {
      const latest = sampler.latest()
      if (latest !== undefined && latest !== encodedFor) {
        encodedFor = latest
        encoded = encoder.encode(`data: ${JSON.stringify(latest)}\n\n`)
      }
      return encoded
    }
    let streams = 0

    const signedIn = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      return sessions.verify(request.cookies[DashboardSession.cookieName], yield* Clock.currentTimeMillis)
    })

    const pageRoute = HttpRouter.route(
      "GET",
      "/dashboard",
      Effect.map(signedIn, (ok) => ok ? html(DashboardPage.page) : html(DashboardPage.login(false), 401))
    )

    const sessionRoute = HttpRouter.route(
      "POST",
      "/dashboard/session",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const length = Number(request.headers["content-length"] ?? "0")
        if (!(length <= MAX_LOGIN_BODY_BYTES)) return html(DashboardPage.login(true), 413)
        // A chunked body has no length to check first: reading stops at the limit, which fails like a bad body.
        const params = yield* request.urlParamsBody.pipe(
          Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(MAX_LOGIN_BODY_BYTES)),
          Effect.orElseSucceed(() => UrlParams.empty)
        )
        const address = clientAddress(request)
        const now = yield* Clock.currentTimeMillis
        const wait = attempts.blockedFor(address, now)
        if (wait !== undefined) return yield* tooManyAttempts(wait, securityHeaders)
        const sent = Option.getOrUndefined(UrlParams.getFirst(params, "token"))
        if (sent === undefined || !isToken(sent)) {
          attempts.failed(address, now)
          yield* RefusalLog.log("rest", RestError.adminTokenInvalid())
          return html(DashboardPage.login(true), 401)
        }
        return yield* HttpServerResponse.empty({ status: 303, headers: { ...securityHeaders, location: "/dashboard" } })
          .pipe(
            HttpServerResponse.setCookie(DashboardSession.cookieName, sessions.issue(yield* Clock.currentTimeMillis), {
              httpOnly: true,
              sameSite: "strict",
              path: "/dashboard",
              maxAge: `${DashboardSession.ttlMs} millis`,
              secure: request.headers["x-forwarded-proto"] === "https"
            }),
            Effect.orDie
          )
      })
    )

    const streamRoute = HttpRouter.route(
      "GET",
      "/dashboard/stream",
      Effect.gen(function*() {
        if (!(yield* signedIn)) {
          const { status, body } = ErrorReply.restRefusal(RestError.adminTokenMissing())
          return HttpServerResponse.text(body, { status, contentType: "application/json", headers: securityHeaders })
        }
        if (streams >= MAX_STREAMS) {
          return HttpServerResponse.text("too many dashboard streams", { status: 503, headers: securityHeaders })
        }
        const registry = yield* ConnectionRegistry.ConnectionRegistry
        const body = Stream.suspend(() => {
          streams++
          return Stream.tick("1 second").pipe(
            Stream.takeWhile(() => !registry.isDraining()),
            Stream.map(frame),
            Stream.filter((bytes) => bytes.length > 0),
            Stream.ensuring(Effect.sync(() => streams--))
          )
        })
        return HttpServerResponse.stream(body, {
          contentType: "text/event-stream",
          headers: { ...securityHeaders, "x-accel-buffering": "no" }
        })
      })
    )

    const assets = HttpRouter.addAll([
      HttpRouter.route(
        "GET",
        "/dashboard/app.js",
        Effect.succeed(
          HttpServerResponse.text(DashboardPage.script, {
            contentType: "text/javascript; charset=utf-8",
            headers: securityHeaders
          })
        )
      ),
      HttpRouter.route(
        "GET",
        "/dashboard/app.css",
        Effect.succeed(
          HttpServerResponse.text(DashboardPage.stylesheet, {
            contentType: "text/css; charset=utf-8",
            headers: securityHeaders
          })
        )
      )
    ])

    return Layer.mergeAll(
      HttpRouter.addAll([pageRoute, sessionRoute, streamRoute]),
      assets,
      Layer.effectDiscard(Effect.forkScoped(sampler.run))
    )
  })
)

/**
 * The WebSocket transport: takes `upgrade` requests on the realtime path of a Node HTTP server,
 * authenticates and admits them, completes the handshake with `ws`, and runs one
 * `ConnectionActor` per socket in a fiber owned by the transport's scope.
 *
 * Outbound frames bypass `ws.send`: the outbox writes pre-framed bytes straight to the TCP socket
 * (one write per socket per event-loop turn). `ws` still parses inbound frames and performs the
 * close handshake; both write to the socket synchronously, so frames never interleave.
 */
import { ChannelPolicy, TokenVerifier } from "@wedsync/auth"
import { Hub, Presence } from "@wedsync/hub"
import type { Frame } from "@wedsync/protocol"
import { Cause, Effect, FiberSet, Metric, type Scope } from "effect"
import type { IncomingMessage, Server } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer, type WebSocket } from "ws"
import { ConnectionConfig } from "./ConnectionConfig.ts"
import * as ConnectionActor from "./ConnectionActor.ts"
import type * as ConnectionError from "./ConnectionError.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import { ConnectionRegistry } from "./ConnectionRegistry.ts"
import { CloseCode, type HttpRefusal, upgradeRefusal } from "./ErrorReply.ts"
import { WriteCoalescer } from "./Outbox.ts"

/** Paths realtime-js connects to: behind Supabase's API gateway, and the Realtime server's own. */
export const WEBSOCKET_PATHS: ReadonlySet<string> = new Set(["/realtime/v1/websocket", "/socket/websocket"])

/** Largest inbound WebSocket message, as Supabase's `max_frame_size`. */
const MAX_FRAME_BYTES = 5_000_000

/** How long a socket that was sent a close frame may linger before it is destroyed. */
const CLOSE_GRACE_MS = 1_000

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  503: "Service Unavailable"
}

const writeRefusal = (socket: Duplex, refusal: HttpRefusal) => {
  if (socket.destroyed) return
  const body = Buffer.from(refusal.body)
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status] ?? "Error"}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${refusal.body}`
  )
}

/** `vsn` query value to serializer; a missing value means 1.0.0, as in Phoenix. */
export const parseVsn = (value: string | null): Frame.Vsn | undefined => {
  if (value === null || value === "" || value.startsWith("1.")) return "1.0.0"
  if (value.startsWith("2.")) return "2.0.0"
  return undefined
}

const socketOf = (ws: WebSocket, raw: Duplex): ConnectionActor.Socket => ({
  wire: {
    write: (bytes) => {
      if (!raw.destroyed && raw.writable) raw.write(bytes)
    },
    get bufferedBytes() {
      return raw.writableLength
    }
  },
  close: (code, reason) => {
    ws.close(code, reason)
    setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref()
  },
  pauseReading: () => ws.pause(),
  resumeReading: () => ws.resume()
})

/** Handles WebSocket upgrades on `server` until the scope closes. */
export const attach = (server: Server) =>
  Effect.gen(function*() {
    const config = yield* ConnectionConfig
    const registry = yield* ConnectionRegistry
    const verifier = yield* TokenVerifier.TokenVerifier
    const runFork = yield* FiberSet.makeRuntime<
      ConnectionConfig | Hub.Hub | Presence.Presence | TokenVerifier.TokenVerifier | ChannelPolicy.ChannelPolicy
    >()
    const coalescer = new WriteCoalescer()
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES, clientTracking: false })
    let nextId = 0

    const refuse = (socket: Duplex, reason: ConnectionError.Reason | { readonly _tag: string; readonly message: string }) =>
      Effect.gen(function*() {
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.refused, { reason: reason._tag }), 1)
        if (config.connectErrorDelayMs > 0) yield* Effect.sleep(config.connectErrorDelayMs)
        writeRefusal(socket, upgradeRefusal(reason as ConnectionError.Reason))
      })

    const upgrade = (request: IncomingMessage, raw: Duplex, head: Buffer) =>
      Effect.callback<WebSocket>((resume) => {
        wss.handleUpgrade(request, raw, head, (ws) => {
          // Nothing may be read before the actor's mailbox exists.
          ws.pause()
          resume(Effect.succeed(ws))
        })
      })

    const connection = (request: IncomingMessage, raw: Duplex, head: Buffer, vsn: Frame.Vsn, apiKey: string) =>
      Effect.gen(function*() {
        const ip = request.socket.remoteAddress ?? "unknown"
        const principal = yield* verifier.verify(apiKey)
        yield* registry.admit(ip, principal.sub)
        const ws = yield* upgrade(request, raw, head)
        const socket = socketOf(ws, raw)
        yield* Metric.update(ConnectionMetrics.accepted, 1)
        yield* ConnectionActor.run({
          id: ++nextId,
          vsn,
          ip,
          principal,
          socket,
          coalescer,
          isDraining: registry.isDraining,
          register: (handle) =>
            Effect.gen(function*() {
              yield* registry.register(handle)
              ws.on("message", (data: Buffer, isBinary: boolean) =>
                handle.offer({ _tag: "Frame", data: isBinary ? data : data.toString("utf8") })
              )
              ws.once("close", () => handle.offer({ _tag: "Closed" }))
              ws.on("error", () => handle.offer({ _tag: "Closed" }))
              ws.resume()
            })
        }).pipe(
          Effect.catchCause((cause) =>
            Effect.gen(function*() {
              yield* Effect.logError("connection actor failed", Cause.pretty(cause))
              ws.close(CloseCode.internalError, "internal error")
              ws.terminate()
            })
          )
        )
      }).pipe(
        Effect.catchTags({
          AuthError: (e) => refuse(raw, e.reason),
          ConnectionError: (e) => refuse(raw, e.reason)
        }),
        Effect.scoped
      )

    const onUpgrade = (request: IncomingMessage, raw: Duplex, head: Buffer) => {
      raw.on("error", () => raw.destroy())
      const url = new URL(request.url ?? "/", "http://gateway")
      if (!WEBSOCKET_PATHS.has(url.pathname)) {
        return writeRefusal(raw, { status: 404, body: JSON.stringify({ error: "Not found" }) })
      }
      const vsn = parseVsn(url.searchParams.get("vsn"))
      if (vsn === undefined) {
        return writeRefusal(raw, { status: 403, body: JSON.stringify({ error: "Unsupported serializer version (vsn)" }) })
      }
      const header = request.headers["x-api-key"]
      const apiKey = (typeof header === "string" ? header : undefined) ?? url.searchParams.get("apikey") ?? ""
      if (apiKey === "") {
        runFork(refuse(raw, { _tag: "ApiKeyMissing", message: "API key is missing" }))
        return
      }
      runFork(connection(request, raw, head, vsn, apiKey))
    }

    yield* Effect.acquireRelease(
      Effect.sync(() => server.on("upgrade", onUpgrade)),
      () => Effect.sync(() => server.off("upgrade", onUpgrade))
    )
  }) satisfies Effect.Effect<void, never, Scope.Scope | ConnectionConfig | ConnectionRegistry | Hub.Hub | Presence.Presence | TokenVerifier.TokenVerifier | ChannelPolicy.ChannelPolicy>

/**
 * The WebSocket transport: takes `upgrade` requests on the realtime path of a Node HTTP server,
 * authenticates and admits them, completes the handshake with `ws`, and runs one
 * `ConnectionActor` per socket in a fiber owned by the transport's scope.
 *
 * Outbound frames bypass `ws.send`: the outbox writes pre-framed bytes straight to the TCP socket
 * (one write per socket per event-loop turn). `ws` still parses inbound frames and performs the
 * close handshake; both write to the socket synchronously, so frames never interleave.
 */
import { AuthError, type Principal, TokenVerifier } from "@wedsync/auth"
import { HotMetric } from "@wedsync/metrics"
import type { Frame } from "@wedsync/protocol"
import { Admission as ScalingAdmission } from "@wedsync/scaling"
import { Effect, Exit, FiberSet, Metric, Random, Scope } from "effect"
import type { IncomingMessage, Server } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer, type WebSocket } from "ws"
import { ConnectionConfig } from "./ConnectionConfig.ts"
import * as ConnectionActor from "./ConnectionActor.ts"
import * as ConnectionMetrics from "./ConnectionMetrics.ts"
import * as ConnectionError from "./ConnectionError.ts"
import { type Admission, ConnectionRegistry, type ConnectionRegistryShape } from "./ConnectionRegistry.ts"
import { type HttpRefusal, shedRefusal, upgradeRefusal, type WireReason } from "./ErrorReply.ts"
import { type Wire, WriteCoalescer } from "./Outbox.ts"
import * as RefusalLog from "./RefusalLog.ts"
import { TurnQueue } from "./internal/TurnQueue.ts"

/** Paths realtime-js connects to: behind Supabase's API gateway, and the Realtime server's own. */
const WEBSOCKET_PATHS: ReadonlySet<string> = new Set(["/realtime/v1/websocket", "/socket/websocket"])

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
  const retryAfter = refusal.retryAfterSeconds === undefined ? "" : `Retry-After: ${refusal.retryAfterSeconds}\r\n`
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status] ?? "Error"}\r\n${retryAfter}` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${refusal.body}`
  )
}

const STOPPING: HttpRefusal = upgradeRefusal(ConnectionError.restarting())

/**
 * Handshakes started per turn of the event loop, at most; the rest wait for the next turns. A storm of new sockets (a
 * reconnect storm, a flood within the per-address cap) then interleaves with the reads and writes of the sockets
 * already open, instead of holding the loop for the whole storm: a few milliseconds of handshakes per turn rather than
 * a hundred. The handshakes' total cost, and so how fast the storm is through, does not change.
 */
const HANDSHAKES_PER_TURN = 16

function refuseWhileStopping(_request: IncomingMessage, socket: Duplex): void {
  socket.on("error", () => socket.destroy())
  writeRefusal(socket, STOPPING)
}

/** `vsn` query value to serializer; a missing value means 1.0.0, as in Phoenix. */
const parseVsn = (value: string | null): Frame.Vsn | undefined => {
  if (value === null || value === "" || value.startsWith("1.")) return "1.0.0"
  if (value.startsWith("2.")) return "2.0.0"
  return undefined
}

/** The actor's view of a `ws` socket; a class, so that each connection costs one object, not five closures. */
class WsSocket implements ConnectionActor.Socket, Wire {
  private readonly ws: WebSocket
  private readonly raw: Duplex
  readonly wire: Wire = this

  constructor(ws: WebSocket, raw: Duplex) {
    this.ws = ws
    this.raw = raw
  }

  write(bytes: Uint8Array): void {
    if (!this.raw.destroyed && this.raw.writable) this.raw.write(bytes)
  }

  get bufferedBytes(): number {
    return this.raw.writableLength
  }

  close(code: number, reason: string): void {
    const ws = this.ws
    ws.close(code, reason)
    setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref()
  }

  pauseReading(): void {
    this.ws.pause()
  }

  resumeReading(): void {
    this.ws.resume()
  }
}

/**
 * The actor of each socket is stored on the socket and reached from shared `ws` listeners, so a
 * socket has no listener closures of its own.
 */
const ACTOR = Symbol("wedsync.actor")

interface ActorSocket extends WebSocket {
  [ACTOR]?: ConnectionActor.ConnectionHandle
}

function onMessage(this: ActorSocket, data: Buffer, isBinary: boolean): void {
  this[ACTOR]?.offer({ _tag: "Frame", data: isBinary ? data : data.toString("utf8") })
}

const CLOSED: ConnectionActor.Mail = { _tag: "Closed" }

// Told at once, not through a per-turn budget like the handshakes: deferring the actors of a thousand sockets closed
// together made no measurable difference to the other sockets' round trips (`bench:closes`, docs/benchmarks.md);
// about half of such a burst is `ws`'s and Node's own close handling, which runs as the kernel reports the closes.
function onClose(this: ActorSocket): void {
  this[ACTOR]?.offer(CLOSED)
}

interface Accepted {
  readonly admission: Admission
  readonly ws: WebSocket
  readonly raw: Duplex
  readonly vsn: Frame.Vsn
  readonly ip: string
  readonly principal: Principal.Principal
  readonly id: number
}

/**
 * Starts the actor of an accepted socket. Kept apart from the upgrade code on purpose: closures
 * created here live as long as the connection, and must not keep the upgrade request alive.
 */
const startActor = (
  accepted: Accepted,
  coalescer: WriteCoalescer,
  registry: ConnectionRegistryShape,
  onEnd: () => void
) => {
  const { ws, admission } = accepted
  return ConnectionActor.make({
    id: accepted.id,
    vsn: accepted.vsn,
    ip: accepted.ip,
    principal: accepted.principal,
    socket: new WsSocket(ws, accepted.raw),
    coalescer,
    isDraining: registry.isDraining,
    claimUser: admission.claimUser,
    onEnd,
    register: (handle) =>
      Effect.sync(() => {
        admission.register(handle)
        const socket: ActorSocket = ws
        socket[ACTOR] = handle
        ws.on("message", onMessage)
        ws.once("close", onClose)
        ws.on("error", onClose)
        ws.resume()
      })
  })
}

/** The address a socket is counted under: by default the direct peer's. */
export type ClientAddress = (request: IncomingMessage) => string

const peerAddress: ClientAddress = (request) => request.socket.remoteAddress ?? "unknown"

/** The process's recent latencies for admission control; a reading that is not known is left out. */
export interface RecentLatency {
  readonly eventLoopP99Ms?: number | undefined
  readonly deliveryP99Ms?: number | undefined
}

/**
 * Admission control (issue 10): the guards of `Admission.decide`, and how to read the process's recent latencies.
 * Kept out of `ConnectionConfig` because the gateway builds it from `ScalingConfig` and its own samplers.
 */
export interface LoadShedding {
  readonly options: ScalingAdmission.AdmissionOptions
  readonly latency: Effect.Effect<RecentLatency>
}

interface AttachOptions {
  /** How the client address (for per-IP caps) is derived; the gateway passes its `TRUSTED_PROXIES` rule. */
  readonly clientAddress?: ClientAddress | undefined
  /** Unset: no shedding, only the hard caps of `ConnectionConfig`. */
  readonly shedding?: LoadShedding | undefined
}

/** Handles WebSocket upgrades on `server` until the scope closes. */
export const attach = (server: Server, options: AttachOptions = {}) =>
  Effect.gen(function*() {
    const config = yield* ConnectionConfig
    const registry = yield* ConnectionRegistry
    const verifier = yield* TokenVerifier.TokenVerifier
    // Connection scopes hang off one scope made now, so that a finalizer the caller adds after
    // `attach` (the drain) runs before any connection is force-closed.
    const transportScope = yield* Scope.fork(yield* Effect.scope, "parallel")
    // Short-lived fibers only (handshakes, scope closing): an established connection holds no fiber.
    const runFork = yield* FiberSet.makeRuntime<ConnectionActor.Services>()
    const framesOut = yield* HotMetric.counter(ConnectionMetrics.framesOut)
    const bytesOut = yield* HotMetric.counter(ConnectionMetrics.bytesOut)
    const writeDelay = yield* HotMetric.histogram(ConnectionMetrics.writeDelay)
    const coalescer = new WriteCoalescer(setImmediate, (_sockets, frames, bytes, delayMs) => {
      framesOut.inc(frames)
      bytesOut.inc(bytes)
      writeDelay.observe(delayMs / 1000)
    })
    const clientAddress = options.clientAddress ?? peerAddress
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      clientTracking: false
    })
    let nextId = 0
    // Upgrades between the shedding check and their actor's registration: a flood arrives faster than handshakes
    // finish, and counting only registered sockets would let all of it through.
    let handshaking = 0
    const shedding = options.shedding
    const shedCounters = yield* HotMetric.counterByLabel(
      ConnectionMetrics.admissionShed,
      "reason",
      ScalingAdmission.SHED_REASONS
    )

    // Answered at once, without `CONNECT_ERROR_BACKOFF_MS`: a process above its capacity must not hold more sockets
    // open, and the jittered `Retry-After` spreads the flood's return instead.
    const admit = (raw: Duplex, shedding: LoadShedding) =>
      Effect.gen(function*() {
        const latency = yield* shedding.latency
        const decision = ScalingAdmission.decide(
          {
            connections: registry.count() + handshaking,
            eventLoopP99Ms: latency.eventLoopP99Ms,
            deliveryP99Ms: latency.deliveryP99Ms
          },
          shedding.options,
          yield* Random.next
        )
        if (decision._tag === "Admit") return true
        shedCounters[decision.reason].inc()
        writeRefusal(raw, shedRefusal(decision.reason, decision.retryAfterSeconds))
        yield* RefusalLog.log("upgrade", { _tag: `Shed:${decision.reason}`, message: decision.detail })
        return false
      })

    const refuse = (socket: Duplex, reason: WireReason) =>
      Effect.gen(function*() {
        yield* Metric.update(Metric.withAttributes(ConnectionMetrics.refused, { reason: reason._tag }), 1)
        yield* RefusalLog.log("upgrade", reason)
        // The delay damps reconnect storms, but a draining node answers at once: its clients should go elsewhere
        // now, and the process must not wait on them to exit.
        if (config.connectErrorDelayMs > 0 && reason._tag !== "RealtimeRestarting")
          yield* Effect.sleep(config.connectErrorDelayMs)
      }).pipe(
        // Answered even when the transport shuts down during the delay: an unanswered upgrade keeps its socket open,
        // and with it the HTTP server's close and the process's exit.
        Effect.ensuring(Effect.sync(() => writeRefusal(socket, upgradeRefusal(reason))))
      )

    // A client that leaves while its token is checked must end the handshake too: `ws` drops a socket that is no
    // longer open without calling back, which left the fiber waiting forever with the client's connection slot.
    const upgrade = (request: IncomingMessage, raw: Duplex, head: Buffer) =>
      Effect.callback<WebSocket>((resume) => {
        const gone = () => resume(Effect.interrupt)
        if (raw.destroyed || !raw.readable || !raw.writable) return gone()
        raw.once("close", gone)
        wss.handleUpgrade(request, raw, head, (ws) => {
          raw.off("close", gone)
          // Nothing may be read before the actor's mailbox exists.
          ws.pause()
          resume(Effect.succeed(ws))
        })
        return Effect.sync(() => raw.off("close", gone))
      })

    // Built outside `establish` so the closure kept for the connection's life does not share a
    // context with (and so retain) the upgrade request.
    const connectionScope = () => {
      const scope = Scope.forkUnsafe(transportScope, "sequential")
      return { scope, close: () => void runFork(Scope.close(scope, Exit.void)) }
    }

    const establish = (
      request: IncomingMessage,
      raw: Duplex,
      head: Buffer,
      vsn: Frame.Vsn,
      apiKey: string,
      ip: string
    ) => {
      const { scope, close: closeScope } = connectionScope()
      return Effect.gen(function*() {
        const principal = yield* verifier.verify(apiKey)
        const admission = yield* registry.admit(ip, principal.sub)
        const ws = yield* upgrade(request, raw, head)
        yield* Metric.update(ConnectionMetrics.accepted, 1)
        return { admission, ws, raw, vsn, ip, principal, id: ++nextId }
      }).pipe(
        Effect.flatMap((accepted) => startActor(accepted, coalescer, registry, closeScope)),
        Scope.provide(scope),
        // Any failure releases what was admitted so far (the connection slot); a handshake cut short by shutdown
        // also drops its socket, which nothing else would ever close.
        Effect.tapCause(() => Effect.sync(closeScope)),
        Effect.onInterrupt(() => Effect.sync(() => raw.destroy())),
        // Registered (or refused) by now: the registry counts it from here on, if at all.
        Effect.ensuring(Effect.sync(() => handshaking--)),
        Effect.catchTags({
          AuthError: (e) => refuse(raw, e.reason),
          ConnectionError: (e) => refuse(raw, e.reason)
        }),
        Effect.asVoid
      )
    }

    const onUpgrade = (request: IncomingMessage, raw: Duplex, head: Buffer) => {
      raw.on("error", () => raw.destroy())
      const url = new URL(request.url ?? "/", "http://gateway")
      if (!WEBSOCKET_PATHS.has(url.pathname)) {
        return writeRefusal(raw, { status: 404, body: JSON.stringify({ error: "Not found" }) })
      }
      const vsn = parseVsn(url.searchParams.get("vsn"))
      if (vsn === undefined) {
        return writeRefusal(raw, {
          status: 403,
          body: JSON.stringify({ error: "Unsupported serializer version (vsn)" })
        })
      }
      const header = request.headers["x-api-key"]
      const apiKey = (typeof header === "string" ? header : undefined) ?? url.searchParams.get("apikey") ?? ""
      if (apiKey === "") {
        runFork(refuse(raw, new AuthError.ApiKeyMissing()))
        return
      }
      // A flat copy: a substring would keep the whole request URL alive for the connection's life.
      const flatKey = Buffer.from(apiKey, "utf8").toString("utf8")
      const ip = clientAddress(request)
      // Shedding comes before the token check and the queue: a process above its capacity should not spend a
      // verification on a socket it will turn away, nor make the refusal wait for the handshakes before it.
      if (shedding === undefined) return queueHandshake(request, raw, head, vsn, flatKey, ip)
      runFork(
        Effect.map(admit(raw, shedding), (admitted) => {
          if (admitted) queueHandshake(request, raw, head, vsn, flatKey, ip)
        })
      )
    }

    // Upgrades waiting for their turn (`HANDSHAKES_PER_TURN`); counted as handshaking from when they are queued.
    const handshakes = new TurnQueue<Parameters<typeof establish>>(
      HANDSHAKES_PER_TURN,
      (args) => void runFork(establish(...args))
    )
    let stopped = false
    const queueHandshake = (...args: Parameters<typeof establish>) => {
      if (stopped) {
        writeRefusal(args[1], STOPPING)
        return
      }
      handshaking++
      handshakes.push(args)
    }

    yield* Effect.acquireRelease(
      Effect.sync(() => server.on("upgrade", onUpgrade)),
      // Between the transport's end and the HTTP server's close, an upgrade still gets an answer (Node would reset a
      // socket that no listener takes).
      () =>
        Effect.sync(() => {
          server.off("upgrade", onUpgrade)
          server.on("upgrade", refuseWhileStopping)
          // Upgrades still waiting for their turn are answered as new ones now are.
          stopped = true
          for (const args of handshakes.takeAll()) {
            handshaking--
            writeRefusal(args[1], STOPPING)
          }
        })
    )
  }) satisfies Effect.Effect<
    void,
    never,
    Scope.Scope | ConnectionConfig | ConnectionRegistry | ConnectionActor.Services
  >

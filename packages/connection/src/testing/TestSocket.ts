/**
 * An in-memory socket for `ConnectionActor`, and a client that drives an actor through it.
 *
 * `TestSocket` records every byte the actor writes and decodes it with `WsFrame.parseAll` (text
 * frames JSON-parsed, binary frames kept as bytes); it also records `close` and the pause/resume
 * calls, and its `bufferedBytes` can be raised to play a consumer that stopped reading.
 * `connect` starts the real actor (`ConnectionActor.make`) in a forked fiber against real in-memory
 * neighbours (`layer`), with a synchronous `WriteCoalescer` so a reply is on the socket as soon as
 * the actor wrote it.
 *
 * Waiting is event driven: a wait resumes when the socket is written or closed, and fails with the
 * frames seen so far after `timeoutMs` of real time, so a missing frame never hangs a test.
 */
import { AuthConfig, ChannelPolicy, Memberships, type Principal, TokenVerifier } from "@wedsync/auth"
import { TestTokens } from "@wedsync/auth/testing"
import { Broker, ChangeFeed, History, Hub, Presence } from "@wedsync/hub"
import { type Frame, Serializer, WsFrame } from "@wedsync/protocol"
import { Clock, Deferred, Effect, Exit, Fiber, Layer, Redacted, Result, type Scope } from "effect"
import type * as ConnectionActor from "../ConnectionActor.ts"
import { make } from "../ConnectionActor.ts"
import { ConnectionConfig, type ConnectionOptions } from "../ConnectionConfig.ts"
import { DeviceCounts } from "../DeviceCounts.ts"
import { type Wire, WriteCoalescer } from "../Outbox.ts"

/** One frame the actor wrote: text JSON-parsed, binary as bytes. */
type TestFrame =
  | { readonly _tag: "Text"; readonly text: string; readonly json: unknown }
  | { readonly _tag: "Binary"; readonly bytes: Uint8Array }

const utf8 = new TextDecoder()

export const decodeFrames = (bytes: Uint8Array): Array<TestFrame> =>
  WsFrame.parseAll(bytes).map(({ opcode, payload }): TestFrame => {
    if (opcode === WsFrame.OPCODE_TEXT) {
      const text = utf8.decode(payload)
      return { _tag: "Text", text, json: JSON.parse(text) as unknown }
    }
    return { _tag: "Binary", bytes: payload }
  })

/** Real milliseconds a wait may take before it fails; TestClock does not move it. */
const DEFAULT_TIMEOUT_MS = 2_000

export class TestSocket implements ConnectionActor.Socket {
  /** Every chunk passed to `wire.write`, as written (one chunk may hold several frames). */
  readonly writes: Array<Uint8Array> = []
  /** Every frame written, decoded. */
  readonly frames: Array<TestFrame> = []
  /** What `wire.bufferedBytes` reports: raise it to simulate a client that stopped reading. */
  bufferedBytes = 0
  /** The first `close` call, if any. */
  closed: { readonly code: number; readonly reason: string } | undefined = undefined
  closeCalls = 0
  paused = false
  pauseCalls = 0
  resumeCalls = 0
  readonly timeoutMs: number
  readonly wire: Wire
  private readonly listeners = new Set<() => void>()

  constructor(options: { readonly bufferedBytes?: number; readonly timeoutMs?: number } = {}) {
    this.bufferedBytes = options.bufferedBytes ?? 0
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const self = this
    this.wire = {
      write: (bytes) => {
        self.writes.push(bytes)
        self.frames.push(...decodeFrames(bytes))
        self.notify()
      },
      get bufferedBytes() {
        return self.bufferedBytes
      }
    }
  }

  close(code: number, reason: string): void {
    this.closeCalls++
    this.closed ??= { code, reason }
    this.notify()
  }

  pauseReading(): void {
    this.paused = true
    this.pauseCalls++
    this.notify()
  }

  resumeReading(): void {
    this.paused = false
    this.resumeCalls++
    this.notify()
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }

  /** Resumes once `predicate` holds (checked now and after every write, close, pause and resume). */
  waitFor(what: string, predicate: () => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (predicate()) return resume(Effect.void)
      const check = () => {
        if (!predicate()) return
        cleanup()
        resume(Effect.void)
      }
      const timer = setTimeout(() => {
        cleanup()
        const seen = this.frames.map((f) => (f._tag === "Text" ? f.text : `<binary ${f.bytes.length} bytes>`))
        const closed = this.closed === undefined ? "open" : `closed ${this.closed.code} ${this.closed.reason}`
        resume(
          Effect.die(
            new Error(
              `timed out after ${this.timeoutMs} ms waiting for ${what}; socket ${closed}; frames:\n${seen.join("\n")}`
            )
          )
        )
      }, this.timeoutMs)
      const cleanup = () => {
        this.listeners.delete(check)
        clearTimeout(timer)
      }
      this.listeners.add(check)
      return Effect.sync(cleanup)
    })
  }

  /** Resumes once the actor has closed the socket. */
  get awaitClose(): Effect.Effect<{ readonly code: number; readonly reason: string }> {
    return Effect.map(this.waitFor("the socket to close", () => this.closed !== undefined), () => this.closed!)
  }
}

/** A coalescer that flushes as soon as a frame is queued: every frame is its own write. */
const syncCoalescer = (): WriteCoalescer => new WriteCoalescer((flush) => flush())

/** A coalescer whose flushes wait for the test: frames queued until `flush()` go out as one write. */
export const manualCoalescer = () => {
  const queued: Array<() => void> = []
  return {
    coalescer: new WriteCoalescer((flush) => void queued.push(flush)),
    /** Runs the scheduled flushes; returns how many ran. */
    flush: (): number => {
      const runs = queued.splice(0)
      for (const flush of runs) flush()
      return runs.length
    },
    get scheduled(): number {
      return queued.length
    }
  }
}

/** `Memberships` over a set of `user|wedding` rows, without a cache: each decision reads the set as it is now. */
export const membershipsOf = (rows: ReadonlySet<string>): Layer.Layer<Memberships.Memberships> =>
  Layer.succeed(Memberships.Memberships, {
    enabled: true,
    peek: () => undefined,
    isMember: (grant) => Effect.sync(() => grant.scope === "wedding" && rows.has(`${grant.userId}|${grant.id}`)),
    granted: () => Effect.void,
    revoked: () => Effect.void,
    onRevoke: () => Effect.void,
    hold: () => undefined
  })

/** The HS256 secret of the test `AuthConfig`; not the dev default, so the verifier stays quiet. */
const TEST_JWT_SECRET = "wedsync-connection-test-secret-of-at-least-32-chars"

/**
 * Real in-memory neighbours of the actor: one `Hub` over `broker` (the memory broker by default), `Presence`,
 * `history` (memory by default; it may use the hub), the given `ConnectionConfig`, the real `TokenVerifier` and `ChannelPolicy` over `TEST_JWT_SECRET`
 * (memberships from `memberships`, none by default), and a fresh `DeviceCounts`.
 */
export const layer = (
  options: Partial<ConnectionOptions> = {},
  memberships: Layer.Layer<Memberships.Memberships> = Memberships.Memberships.layerNoop,
  history: Layer.Layer<History.History, never, Hub.Hub> = History.History.layerMemory(),
  broker: Layer.Layer<Broker.Broker> = Broker.Broker.layerMemory
) =>
  Layer.mergeAll(
    Layer.merge(Presence.Presence.layerMemory, history).pipe(
      Layer.provideMerge(Hub.Hub.layer.pipe(Layer.provide(broker)))
    ),
    ChangeFeed.ChangeFeed.layerNoop,
    ConnectionConfig.layer(options),
    TokenVerifier.TokenVerifier.layer.pipe(
      Layer.provide(AuthConfig.AuthConfig.layer({ jwtSecret: Redacted.make(TEST_JWT_SECRET) }))
    ),
    ChannelPolicy.ChannelPolicy.layer.pipe(Layer.provide(memberships)),
    DeviceCounts.layer
  )

const nowSeconds = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

/** A user session token signed at the current (Test)Clock time; default lifetime one hour. */
export const userToken = (options: TestTokens.UserTokenOptions = {}): Effect.Effect<string> =>
  Effect.flatMap(
    nowSeconds,
    (now) => Effect.promise(() => TestTokens.userToken({ secret: TEST_JWT_SECRET, nowSeconds: now, ...options }))
  )

/** The project `anon` key as a JWT, signed at the current (Test)Clock time. */
export const anonToken = (options: TestTokens.SignOptions = {}): Effect.Effect<string> =>
  Effect.flatMap(
    nowSeconds,
    (now) => Effect.promise(() => TestTokens.anonToken({ secret: TEST_JWT_SECRET, nowSeconds: now, ...options }))
  )

/** A frame as the client sees it: a Phoenix message (text) or a kind-4 user broadcast (binary). */
export type Received =
  | {
    readonly _tag: "Message"
    readonly joinRef: string | null
    readonly ref: string | null
    readonly topic: string
    readonly event: string
    readonly payload: unknown
    readonly text: string
  }
  | ({ readonly _tag: "UserBroadcast" } & Frame.ServerBroadcast)

/** Reads a frame the way realtime-js would, for either serializer. */
const receivedOf = (frame: TestFrame): Received => {
  if (frame._tag === "Binary") {
    const decoded = Serializer.decodeUserBroadcast(frame.bytes)
    if (Result.isFailure(decoded))
      throw new Error(`the server sent a binary frame realtime-js cannot decode: ${decoded.failure.message}`)
    return { _tag: "UserBroadcast", ...decoded.success }
  }
  const json = frame.json
  if (Array.isArray(json)) {
    const [joinRef, ref, topic, event, payload] = json as [string | null, string | null, string, string, unknown]
    return { _tag: "Message", joinRef, ref, topic, event, payload, text: frame.text }
  }
  const o = json as {
    readonly topic: string
    readonly event: string
    readonly payload: unknown
    readonly ref: string | null
  }
  // Serializer 1.0.0 never carries join_ref from the server.
  return {
    _tag: "Message",
    joinRef: null,
    ref: o.ref,
    topic: o.topic,
    event: o.event,
    payload: o.payload,
    text: frame.text
  }
}

const SYNC_PREFIX = "sync-"

const isSyncReply = (frame: TestFrame): boolean => {
  if (frame._tag !== "Text") return false
  const received = receivedOf(frame)
  return received._tag === "Message" && received.topic === "phoenix" && received.event === "phx_reply" &&
    typeof received.ref === "string" && received.ref.startsWith(SYNC_PREFIX)
}

/** One client on one actor: push frames in, read the actor's frames out in order. */
export class TestClient {
  readonly socket: TestSocket
  readonly handle: ConnectionActor.ConnectionHandle
  readonly vsn: Frame.Vsn
  /** The fiber holding the actor's connection scope: it ends when the actor ends, and interrupting it closes that scope. */
  readonly fiber: Fiber.Fiber<void>
  private cursor = 0
  private readonly unread: Array<Received> = []
  private refs = 0
  private syncs = 0

  constructor(socket: TestSocket, handle: ConnectionActor.ConnectionHandle, vsn: Frame.Vsn, fiber: Fiber.Fiber<void>) {
    this.socket = socket
    this.handle = handle
    this.vsn = vsn
    this.fiber = fiber
  }

  /** A fresh ref, as the client's counter would give. */
  nextRef(): string {
    return String(++this.refs)
  }

  /** Sends a text frame in this client's serializer (v1 carries `join_ref` only when non-null, as realtime-js). */
  push(joinRef: string | null, ref: string | null, topic: string, event: string, payload: unknown): void {
    const text = this.vsn === "2.0.0"
      ? JSON.stringify([joinRef, ref, topic, event, payload])
      : JSON.stringify({ topic, event, payload, ref, ...(joinRef === null ? {} : { join_ref: joinRef }) })
    this.pushRaw(text)
  }

  /** Sends any frame as is (text or binary). */
  pushRaw(data: string | Uint8Array): void {
    this.handle.offer({ _tag: "Frame", data })
  }

  /** Sends a kind-3 user broadcast, as realtime-js does for `channel.send` under 2.0.0. */
  pushBroadcast(broadcast: Frame.UserBroadcast): void {
    this.pushRaw(Serializer.encodeUserBroadcastPush(broadcast))
  }

  /** Sends `phx_join` with `ref == join_ref`; returns that join ref. Read the reply with `next`. */
  join(topic: string, payload: unknown = {}): string {
    const joinRef = this.nextRef()
    this.push(joinRef, joinRef, topic, "phx_join", payload)
    return joinRef
  }

  private collect(): void {
    const frames = this.socket.frames
    while (this.cursor < frames.length) {
      const frame = frames[this.cursor++]!
      if (!isSyncReply(frame)) this.unread.push(receivedOf(frame))
    }
  }

  /** The next `count` frames (skipping `sync` replies), waiting for them to be written. */
  next(count = 1): Effect.Effect<Array<Received>> {
    return Effect.suspend(() => {
      this.collect()
      return this.socket.waitFor(`${count} unread frame(s)`, () => {
        this.collect()
        return this.unread.length >= count
      })
    }).pipe(Effect.map(() => this.unread.splice(0, count)))
  }

  /** The next frame, which must be a text message. */
  get nextMessage(): Effect.Effect<Extract<Received, { _tag: "Message" }>> {
    return Effect.flatMap(
      this.next(1),
      ([received]) =>
        received?._tag === "Message"
          ? Effect.succeed(received)
          : Effect.die(new Error("expected a text message, got a binary frame"))
    )
  }

  /**
   * Waits until the actor has handled everything offered before: sends a heartbeat and waits for
   * its reply, which is then hidden from `next`. It counts as client activity for the idle timer.
   */
  get sync(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const ref = `${SYNC_PREFIX}${++this.syncs}`
      this.push(null, ref, "phoenix", "heartbeat", {})
      return this.socket.waitFor(
        `the reply to heartbeat ${ref}`,
        () =>
          this.socket.frames.some((f) =>
            isSyncReply(f) && (receivedOf(f) as { readonly ref: string | null }).ref === ref
          )
      )
    }).pipe(Effect.tap(() => Effect.sync(() => this.collect())))
  }

  /** After a `sync`: every frame not read yet (and marks them read). */
  get drain(): Effect.Effect<Array<Received>> {
    return Effect.map(this.sync, () => this.unread.splice(0))
  }

  /** The actor's exit, once it has ended. */
  get exit(): Effect.Effect<Exit.Exit<void>> {
    return Fiber.await(this.fiber)
  }
}

export interface ConnectOptions {
  /** Default `2.0.0`, the realtime-js default. */
  readonly vsn?: Frame.Vsn
  /** The connect principal; default the `anon` key verified by the real `TokenVerifier`. */
  readonly principal?: Principal.Principal
  readonly ip?: string
  readonly id?: number
  /** Default `syncCoalescer()`; pass `manualCoalescer().coalescer` to flush by hand. */
  readonly coalescer?: WriteCoalescer
  readonly isDraining?: () => boolean
  /** Counts the socket against a join's user (e.g. an `Admission.claimUser` of a `ConnectionRegistry`). */
  readonly claimUser?: (userKey: string) => boolean
  /** Runs with the handle before the first frame, in the connection's scope (e.g. an `Admission.register` of a `ConnectionRegistry`). */
  readonly register?: (handle: ConnectionActor.ConnectionHandle) => Effect.Effect<void, never, Scope.Scope>
  readonly socket?: TestSocket
}

let nextId = 0

/**
 * Starts an actor with `ConnectionActor.make`, as the transport does, in a connection scope owned by a
 * fiber forked into the caller's scope; the fiber ends when the actor ends, and interrupting it (or
 * closing the caller's scope) closes the connection scope. Returns the client once the actor has
 * registered its handle.
 */
export const connect = (options: ConnectOptions = {}) =>
  Effect.gen(function*() {
    const vsn = options.vsn ?? "2.0.0"
    const socket = options.socket ?? new TestSocket()
    const principal = options.principal ??
      (yield* Effect.flatMap(anonToken(), (token) => TokenVerifier.TokenVerifier.use((v) => v.verify(token))).pipe(
        Effect.orDie
      ))
    const registered = yield* Deferred.make<ConnectionActor.ConnectionHandle>()
    const init: ConnectionActor.Init = {
      id: options.id ?? ++nextId,
      vsn,
      ip: options.ip ?? "127.0.0.1",
      principal,
      socket,
      coalescer: options.coalescer ?? syncCoalescer(),
      isDraining: options.isDraining ?? (() => false),
      ...(options.claimUser === undefined ? {} : { claimUser: options.claimUser }),
      register: (handle) =>
        Effect.gen(function*() {
          if (options.register !== undefined) yield* options.register(handle)
          yield* Deferred.succeed(registered, handle)
        })
    }
    const fiber = yield* Effect.gen(function*() {
      const ended = yield* Deferred.make<void>()
      yield* make({ ...init, onEnd: () => Deferred.doneUnsafe(ended, Exit.void) })
      yield* Deferred.await(ended)
    }).pipe(Effect.scoped, Effect.forkScoped)
    const handle = yield* Effect.raceFirst(
      Deferred.await(registered),
      Effect.flatMap(Fiber.await(fiber), (exit) =>
        Effect.die(new Error(`the actor ended before registering: ${String(exit)}`)))
    )
    return new TestClient(socket, handle, vsn, fiber)
  })

import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { ConnectionHandle, Mail } from "../src/ConnectionActor.ts"
import { ConnectionConfig, type ConnectionOptions } from "../src/ConnectionConfig.ts"
import { ConnectionRegistry } from "../src/ConnectionRegistry.ts"

/** The sweep runs only when a test calls it, unless the test sets `sweepIntervalMs`. */
const registryWith = (options: Partial<ConnectionOptions> = {}) =>
  ConnectionRegistry.layer.pipe(Layer.provide(ConnectionConfig.layer({ sweepIntervalMs: 3_600_000, ...options })))

interface FakeHandle extends ConnectionHandle {
  lastSeenMs: number
  nextExpiryMs: number
  readonly mails: Array<Mail["_tag"]>
}

let ids = 0
const handle = (
  options: { userKey?: string; ip?: string; lastSeenMs?: number; nextExpiryMs?: number } = {}
): FakeHandle => {
  const mails: Array<Mail["_tag"]> = []
  return {
    id: ++ids,
    ip: options.ip ?? "10.0.0.1",
    userKey: options.userKey,
    lastSeenMs: options.lastSeenMs ?? 0,
    nextExpiryMs: options.nextExpiryMs ?? Number.POSITIVE_INFINITY,
    mails,
    offer: (mail) => void mails.push(mail._tag)
  }
}

/** Admits and registers `h` in a scope of its own, as the transport does; closing it is the actor ending. */
const registered = (registry: ConnectionRegistry["Service"], h: FakeHandle) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const admission = yield* registry.admit(h.ip, h.userKey).pipe(Scope.provide(scope), Effect.orDie)
    admission.register(h)
    return Scope.close(scope, Exit.void)
  })

const refusal = <A>(effect: Effect.Effect<A, unknown, Scope.Scope>) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    const e = error as { readonly _tag: string; readonly reason: { readonly _tag: string; readonly message: string } }
    assert.strictEqual(e._tag, "ConnectionError")
    return e.reason
  })

describe("ConnectionRegistry", () => {
  describe("admission caps", () => {
    it.effect("total: up to maxConnections accepted, then ConnectionRateLimitReached", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        yield* registry.admit("10.0.0.1", undefined)
        yield* registry.admit("10.0.0.2", "u1")
        const reason = yield* refusal(registry.admit("10.0.0.3", "u2"))
        assert.deepStrictEqual([reason._tag, reason.message], [
          "ConnectionRateLimitReached",
          "Too many connected users"
        ])
      }).pipe(Effect.provide(registryWith({ maxConnections: 2 }))))

    it.effect("per IP: up to maxConnectionsPerIp from one address, other addresses unaffected", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        yield* registry.admit("10.0.0.1", undefined)
        yield* registry.admit("10.0.0.1", undefined)
        const reason = yield* refusal(registry.admit("10.0.0.1", undefined))
        assert.deepStrictEqual([reason._tag, reason.message], [
          "ConnectionRateLimitReached",
          "Too many connected users from this address"
        ])
        yield* registry.admit("10.0.0.2", undefined)
      }).pipe(Effect.provide(registryWith({ maxConnectionsPerIp: 2 }))))

    it.effect("per user: up to maxConnectionsPerUser per sub; anonymous sockets are not counted per user", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        yield* registry.admit("10.0.0.1", "u1")
        yield* registry.admit("10.0.0.2", "u1")
        const reason = yield* refusal(registry.admit("10.0.0.3", "u1"))
        assert.deepStrictEqual([reason._tag, reason.message], [
          "ConnectionRateLimitReached",
          "Too many connected users for this user"
        ])
        yield* registry.admit("10.0.0.3", "u2")
        for (let i = 0; i < 5; i++) yield* registry.admit(`10.0.1.${i}`, undefined)
      }).pipe(Effect.provide(registryWith({ maxConnectionsPerUser: 2 }))))

    it.effect("a slot is released when its scope closes", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        yield* Effect.scoped(registry.admit("10.0.0.1", "u1"))
        yield* Effect.scoped(registry.admit("10.0.0.1", "u1"))
        const held = yield* Scope.make()
        yield* registry.admit("10.0.0.1", "u1").pipe(Scope.provide(held))
        yield* refusal(registry.admit("10.0.0.1", "u1"))
        yield* Scope.close(held, Exit.void)
        yield* registry.admit("10.0.0.1", "u1")
      }).pipe(Effect.provide(registryWith({ maxConnections: 1, maxConnectionsPerIp: 1, maxConnectionsPerUser: 1 }))))
  })

  it.effect("count follows register and release", () =>
    Effect.gen(function*() {
      const registry = yield* ConnectionRegistry
      const releaseTab1 = yield* registered(registry, handle({ userKey: "u1" }))
      yield* registered(registry, handle({ userKey: "u1" }))
      yield* registered(registry, handle({ userKey: "u2" }))
      yield* registered(registry, handle())
      assert.strictEqual(registry.count(), 4)
      yield* releaseTab1
      assert.strictEqual(registry.count(), 3)
    }).pipe(Effect.provide(registryWith())))

  describe("sweep", () => {
    it.effect("mails Deadline only to handles that are idle or past a token expiry", () =>
      Effect.gen(function*() {
        yield* TestClock.adjust("100 seconds")
        const now = 100_000
        const registry = yield* ConnectionRegistry
        const fresh = handle({ lastSeenMs: now })
        const idle = handle({ lastSeenMs: now - 60_000 })
        const almostIdle = handle({ lastSeenMs: now - 59_999 })
        const expired = handle({ lastSeenMs: now, nextExpiryMs: now })
        const almostExpired = handle({ lastSeenMs: now, nextExpiryMs: now + 1 })
        for (const h of [fresh, idle, almostIdle, expired, almostExpired]) yield* registered(registry, h)
        yield* registry.sweep
        assert.deepStrictEqual(
          [fresh, idle, almostIdle, expired, almostExpired].map((h) => h.mails),
          [[], ["Deadline"], [], ["Deadline"], []]
        )
      }).pipe(Effect.provide(registryWith({ idleTimeoutMs: 60_000 }))))

    it.effect("runs by itself every sweepIntervalMs", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const idle = handle({ lastSeenMs: 0 })
        yield* registered(registry, idle)
        yield* TestClock.adjust("9 seconds")
        assert.deepStrictEqual(idle.mails, [])
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(idle.mails, ["Deadline"])
        yield* TestClock.adjust("2 seconds")
        assert.deepStrictEqual(idle.mails, ["Deadline", "Deadline", "Deadline"], "still due: mailed again each pass")
      }).pipe(Effect.provide(registryWith({ idleTimeoutMs: 10_000, sweepIntervalMs: 1_000 }))))
  })

  describe("drain", () => {
    it.effect("refuses new admissions, mails Drain in batches, and completes when every handle is gone", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const handles = Array.from({ length: 5 }, () => handle())
        const releases = yield* Effect.forEach(handles, (h) => registered(registry, h))
        const drain = yield* Effect.forkChild(registry.drain(60_000))
        yield* Effect.yieldNow
        assert.isTrue(registry.isDraining())
        const reason = yield* refusal(registry.admit("10.0.0.9", undefined))
        assert.deepStrictEqual([reason._tag, reason.message], [
          "RealtimeRestarting",
          "Realtime is restarting, please standby"
        ])
        const drained = () => handles.map((h) => h.mails.length)
        assert.deepStrictEqual(drained(), [1, 1, 0, 0, 0])
        yield* TestClock.adjust("99 millis")
        assert.deepStrictEqual(drained(), [1, 1, 0, 0, 0])
        yield* TestClock.adjust("1 millis")
        assert.deepStrictEqual(drained(), [1, 1, 1, 1, 0])
        yield* TestClock.adjust("100 millis")
        assert.deepStrictEqual(drained(), [1, 1, 1, 1, 1])
        assert.isTrue(handles.every((h) => h.mails[0] === "Drain"))
        // Every actor was asked; the drain waits until they have all gone.
        for (const release of releases.slice(0, 4)) yield* release
        yield* Effect.yieldNow
        assert.isUndefined(drain.pollUnsafe())
        yield* releases[4]!
        yield* Fiber.join(drain)
        assert.strictEqual(registry.count(), 0)
      }).pipe(Effect.provide(registryWith({ drainBatchSize: 2, drainIntervalMs: 100 }))))

    it.effect("a socket that registers after the drain began is drained too", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const early = handle()
        const releaseEarly = yield* registered(registry, early)
        // Admitted before the drain, handshake finished after it took its list.
        const lateScope = yield* Scope.make()
        const lateAdmission = yield* registry.admit("10.0.0.2", undefined).pipe(Scope.provide(lateScope))
        const drain = yield* Effect.forkChild(registry.drain(60_000))
        yield* Effect.yieldNow
        const late = handle({ ip: "10.0.0.2" })
        lateAdmission.register(late)
        const releaseLate = Scope.close(lateScope, Exit.void)
        assert.deepStrictEqual([early.mails, late.mails], [["Drain"], ["Drain"]])
        yield* releaseEarly
        yield* Effect.yieldNow
        assert.isUndefined(drain.pollUnsafe(), "the drain waits for the late socket as well")
        yield* releaseLate
        yield* Fiber.join(drain)
      }).pipe(Effect.provide(registryWith())))

    it.effect("gives up after timeoutMs when handles do not leave", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const stuck = handle()
        yield* registered(registry, stuck)
        const drain = yield* Effect.forkChild(registry.drain(5_000))
        yield* TestClock.adjust("4999 millis")
        assert.isUndefined(drain.pollUnsafe())
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(drain)
        assert.deepStrictEqual(stuck.mails, ["Drain"])
        assert.strictEqual(registry.count(), 1)
      }).pipe(Effect.provide(registryWith())))

    it.effect("completes at once when nothing is connected", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        yield* registry.drain(5_000)
        assert.isTrue(registry.isDraining())
      }).pipe(Effect.provide(registryWith())))
  })

  describe("recheck (a revoked membership)", () => {
    it.effect("mails the sockets of the user, by connect token or by a join's user, until they end", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const byConnect = handle({ userKey: "alice" })
        const closeByConnect = yield* registered(registry, byConnect)
        const anon = handle()
        const scope = yield* Scope.make()
        const admission = yield* registry.admit(anon.ip, undefined).pipe(Scope.provide(scope), Effect.orDie)
        admission.register(anon)
        assert.isTrue(admission.claimUser("alice"))
        const other = handle({ userKey: "bob" })
        yield* registered(registry, other)

        registry.recheck("alice", "wedding:w1")
        assert.deepStrictEqual([byConnect.mails, anon.mails, other.mails], [["Recheck"], ["Recheck"], []])

        yield* closeByConnect
        yield* Scope.close(scope, Exit.void)
        registry.recheck("alice", "wedding:w1")
        assert.deepStrictEqual([byConnect.mails.length, anon.mails.length], [1, 1])
      }).pipe(Effect.provide(registryWith())))
  })
})

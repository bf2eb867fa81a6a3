/**
 * Issue 8, item 5: devices per wedding and supplier on this process, counted up by a private scoped join and down
 * by every way its channel ends (leave, rejoin, shutdown, revoked membership, socket close, drain), on the real actor.
 */
import { assert, describe, it } from "@effect/vitest"
import { TokenVerifier } from "@wedsync/auth"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { DeviceCounts } from "../src/DeviceCounts.ts"
import { TestSocket } from "../src/testing/index.ts"

const WEDDING = "realtime:wedding:42"
const SUPPLIER = "realtime:supplier:s-7"
const Instant = TestSocket.layer({ joinErrorDelayMs: 0 })

const statusOf = (received: TestSocket.Received | undefined) => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return (received.payload as { status?: unknown }).status
}

const privateJoin = (token: string) => ({ config: { private: true }, access_token: token })

/** Joins and waits for the reply, which `open` sends after counting. */
const joined = (client: TestSocket.TestClient, topic: string, payload: unknown) =>
  Effect.gen(function*() {
    const joinRef = client.join(topic, payload)
    const [reply] = yield* client.next()
    assert.strictEqual(statusOf(reply), "ok")
    return joinRef
  })

const member = TestSocket.userToken({ weddingIds: ["42"], supplierIds: ["s-7"] })

describe("DeviceCounts", () => {
  it.effect("a private wedding or supplier join counts its socket once; a rejoin keeps it; a leave ends it", () =>
    Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const token = yield* member
      const a = yield* TestSocket.connect()
      const b = yield* TestSocket.connect()
      yield* joined(a, WEDDING, privateJoin(token))
      yield* joined(b, WEDDING, privateJoin(token))
      yield* joined(a, SUPPLIER, privateJoin(token))
      assert.strictEqual(counts.count("wedding", "42"), 2)
      assert.strictEqual(counts.count("supplier", "s-7"), 1)
      assert.strictEqual(counts.total("wedding"), 2)
      // The same topic joined again replaces the channel: still one device.
      yield* a.sync
      a.join(WEDDING, privateJoin(token))
      const frames = yield* a.next(2)
      assert.strictEqual(statusOf(frames[1]), "ok")
      assert.strictEqual(counts.count("wedding", "42"), 2)
      const joinRef = b.join(WEDDING, privateJoin(token))
      yield* b.next(2)
      b.push(joinRef, b.nextRef(), WEDDING, "phx_leave", {})
      yield* b.sync
      assert.strictEqual(counts.count("wedding", "42"), 1)
      assert.deepStrictEqual([...counts.snapshot().wedding], [["42", 1]])
      assert.deepStrictEqual([...counts.snapshot().supplier], [["s-7", 1]])
    }).pipe(Effect.provide(Instant)))

  it.effect("public channels are not counted", () =>
    Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const client = yield* TestSocket.connect()
      yield* joined(client, WEDDING, {})
      yield* joined(client, "realtime:room1", {})
      assert.strictEqual(counts.total("wedding"), 0)
      assert.strictEqual(counts.total("supplier"), 0)
      assert.strictEqual(counts.snapshot().wedding.size, 0)
    }).pipe(Effect.provide(Instant)))

  it.effect("a shutdown (expired token) counts the device down", () =>
    Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const token = yield* TestSocket.userToken({ weddingIds: ["42"], expiresInSeconds: 10 })
      const client = yield* TestSocket.connect()
      const joinRef = yield* joined(client, WEDDING, privateJoin(token))
      assert.strictEqual(counts.count("wedding", "42"), 1)
      yield* TestClock.adjust("11 seconds")
      client.push(joinRef, client.nextRef(), WEDDING, "access_token", { access_token: token })
      yield* client.next(2)
      assert.strictEqual(counts.count("wedding", "42"), 0)
      assert.strictEqual(counts.snapshot().wedding.size, 0)
    }).pipe(Effect.provide(Instant)))

  it.effect("a channel shut down because its membership was revoked counts down", () => {
    const rows = new Set(["alice|42"])
    const memberships = TestSocket.membershipsOf(rows)
    return Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const token = yield* TestSocket.userToken({ sub: "alice" })
      const principal = yield* TokenVerifier.TokenVerifier.use((v) => v.verify(token)).pipe(Effect.orDie)
      const alice = yield* TestSocket.connect({ principal })
      yield* joined(alice, WEDDING, { config: { private: true } })
      assert.strictEqual(counts.count("wedding", "42"), 1)
      rows.delete("alice|42")
      alice.handle.offer({ _tag: "Recheck", userId: "alice", subtopic: "wedding:42" })
      yield* alice.next(2)
      // The frames go out before the channel is released, in the same step of the actor.
      yield* alice.sync
      assert.strictEqual(counts.count("wedding", "42"), 0)
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0 }, memberships)))
  })

  it.effect("a socket that closes, is drained or whose scope ends counts every device it had down", () =>
    Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const token = yield* member
      const closed = yield* TestSocket.connect()
      const drained = yield* TestSocket.connect()
      const interrupted = yield* TestSocket.connect()
      for (const client of [closed, drained, interrupted]) {
        yield* joined(client, WEDDING, privateJoin(token))
        yield* joined(client, SUPPLIER, privateJoin(token))
      }
      assert.strictEqual(counts.count("wedding", "42"), 3)
      assert.strictEqual(counts.count("supplier", "s-7"), 3)
      closed.handle.offer({ _tag: "Closed" })
      yield* closed.exit
      assert.strictEqual(counts.count("wedding", "42"), 2)
      drained.handle.offer({ _tag: "Drain" })
      yield* drained.exit
      assert.strictEqual(counts.count("supplier", "s-7"), 1)
      yield* Fiber.interrupt(interrupted.fiber)
      assert.strictEqual(counts.total("wedding"), 0)
      assert.strictEqual(counts.total("supplier"), 0)
      assert.strictEqual(counts.snapshot().supplier.size, 0)
    }).pipe(Effect.provide(Instant)))

  it.effect("ending a channel twice, or one never counted, changes nothing", () =>
    Effect.gen(function*() {
      const counts = yield* DeviceCounts
      const a = { subtopic: "wedding:1", isPrivate: true }
      const b = { subtopic: "wedding:1", isPrivate: true }
      counts.opened(a)
      counts.opened(a)
      counts.opened(b)
      counts.ended(a)
      counts.ended(a)
      counts.ended({ subtopic: "wedding:1", isPrivate: true })
      assert.strictEqual(counts.count("wedding", "1"), 1)
      counts.opened({ subtopic: "wedding:", isPrivate: true })
      counts.opened({ subtopic: "supplier:1", isPrivate: false })
      counts.opened({ subtopic: "room:1", isPrivate: true })
      assert.strictEqual(counts.total("wedding") + counts.total("supplier"), 1)
    }).pipe(Effect.provide(DeviceCounts.layer)))
})

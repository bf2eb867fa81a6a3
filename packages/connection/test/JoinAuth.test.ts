/**
 * Issue 6, items 3, 6, 7, 9 and 10 on the actor: every authorization checks the expiry of the principal it
 * uses, joins count against the per-user cap, an `access_token` that is not a user JWT drops the channel's
 * rights, bindings are validated and bounded, every frame counts against the socket's rate, and deep JSON
 * closes only its sender. Each refusal is shown beside the accepted case.
 */
import { assert, describe, it } from "@effect/vitest"
import { TokenVerifier } from "@wedsync/auth"
import { Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import { ConnectionRegistry } from "../src/ConnectionRegistry.ts"
import { TestSocket } from "../src/testing/index.ts"

const ROOM = "realtime:room1"
const WEDDING = "realtime:wedding:42"
const Instant = TestSocket.layer({ joinErrorDelayMs: 0 })

const messageOf = (received: TestSocket.Received | undefined) => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return received
}
const statusOf = (received: TestSocket.Received | undefined) =>
  (messageOf(received).payload as { status?: unknown }).status
const reasonOf = (received: TestSocket.Received | undefined) =>
  (messageOf(received).payload as { response?: { reason?: unknown } }).response?.reason

const verified = (token: string) => TokenVerifier.TokenVerifier.use((v) => v.verify(token)).pipe(Effect.orDie)

const joinReply = (client: TestSocket.TestClient, topic: string, payload: unknown = {}) =>
  Effect.gen(function*() {
    const joinRef = client.join(topic, payload)
    const [reply] = yield* client.next()
    assert.strictEqual(messageOf(reply).ref, joinRef)
    return { joinRef, reply }
  })

const privateJoin = (accessToken?: string) => ({
  config: { private: true },
  ...(accessToken === undefined ? {} : { access_token: accessToken })
})

describe("expired connect token (item 3)", () => {
  it.effect("a join without access_token is refused once the connect token expired, accepted before", () =>
    Effect.gen(function*() {
      const token = yield* TestSocket.userToken({ weddingIds: ["42", "43"], expiresInSeconds: 10 })
      const client = yield* TestSocket.connect({ principal: yield* verified(token) })
      const before = yield* joinReply(client, WEDDING, privateJoin())
      assert.strictEqual(statusOf(before.reply), "ok")
      yield* TestClock.adjust("12 seconds")
      const after = yield* joinReply(client, "realtime:wedding:43", privateJoin())
      assert.strictEqual(reasonOf(after.reply), "InvalidJWTToken: Token has expired 2 seconds ago")
      // A public join without a token is an authorization decision too.
      const open = yield* joinReply(client, ROOM)
      assert.strictEqual(reasonOf(open.reply), "InvalidJWTToken: Token has expired 2 seconds ago")
    }).pipe(Effect.provide(Instant)))

  it.effect("an access_token push resending the channel's expired token shuts the channel down", () =>
    Effect.gen(function*() {
      const client = yield* TestSocket.connect()
      const token = yield* TestSocket.userToken({ weddingIds: ["42"], expiresInSeconds: 10 })
      const { joinRef } = yield* joinReply(client, WEDDING, privateJoin(token))
      client.push(joinRef, "2", WEDDING, "access_token", { access_token: token })
      assert.deepStrictEqual(yield* client.drain, [], "unexpired: nothing changes")
      yield* TestClock.adjust("11 seconds")
      client.push(joinRef, "3", WEDDING, "access_token", { access_token: token })
      const [system, close] = yield* client.next(2)
      assert.strictEqual(
        (messageOf(system).payload as { message?: unknown }).message,
        "Token has expired 1 seconds ago"
      )
      assert.strictEqual(messageOf(close).event, "phx_close")
    }).pipe(Effect.provide(Instant)))
})

describe("a push on a channel whose token expired, before the sweep comes by (item 3)", () => {
  for (const form of ["text", "binary"] as const) {
    it.effect(`a ${form} broadcast is delivered before expiry; after it the channel is shut down and nothing is published`, () =>
      Effect.gen(function*() {
        const receiver = yield* TestSocket.connect()
        const sender = yield* TestSocket.connect()
        yield* joinReply(receiver, WEDDING, privateJoin(yield* TestSocket.userToken({ weddingIds: ["42"] })))
        const token = yield* TestSocket.userToken({ weddingIds: ["42"], expiresInSeconds: 10 })
        const { joinRef } = yield* joinReply(sender, WEDDING, privateJoin(token))
        const send = (n: number) =>
          form === "text"
            ? sender.push(joinRef, sender.nextRef(), WEDDING, "broadcast", {
              type: "broadcast",
              event: "msg",
              payload: { n }
            })
            : sender.pushBroadcast({
              joinRef,
              ref: sender.nextRef(),
              topic: WEDDING,
              userEvent: "msg",
              meta: undefined,
              encoding: "json",
              payload: new TextEncoder().encode(JSON.stringify({ n }))
            })
        send(1)
        assert.lengthOf(yield* receiver.next(), 1, "before expiry: delivered")
        // No Deadline mail: only the push itself can notice the expiry.
        yield* TestClock.adjust("11 seconds")
        send(2)
        const [system, close] = yield* sender.next(2)
        assert.strictEqual(
          (messageOf(system).payload as { message?: unknown }).message,
          "Token has expired 1 seconds ago"
        )
        assert.strictEqual(messageOf(close).event, "phx_close")
        assert.deepStrictEqual(yield* receiver.drain, [], "after expiry: nothing published")
      }).pipe(Effect.provide(Instant)))
  }
})

describe("per-user cap through joins (item 6)", () => {
  const WithRegistry = ConnectionRegistry.layer.pipe(
    Layer.provideMerge(TestSocket.layer({ joinErrorDelayMs: 0, maxConnectionsPerUser: 1 }))
  )

  it.effect("an anon-key socket joining with a user's token counts against that user; over the cap the join is refused; released on close", () =>
    Effect.gen(function*() {
      const registry = yield* ConnectionRegistry
      const user = yield* TestSocket.userToken({ sub: "u-cap", weddingIds: ["42"] })
      const other = yield* TestSocket.userToken({ sub: "u-other", weddingIds: ["42"] })
      const firstScope = yield* Scope.make()
      const first = yield* Effect.gen(function*() {
        const admission = yield* registry.admit("10.0.0.1", undefined)
        return yield* TestSocket.connect({ claimUser: admission.claimUser })
      }).pipe(Scope.provide(firstScope))
      const admission = yield* registry.admit("10.0.0.2", undefined)
      const second = yield* TestSocket.connect({ claimUser: admission.claimUser })

      assert.strictEqual(statusOf((yield* joinReply(first, WEDDING, privateJoin(user))).reply), "ok")
      // The same user on the same socket is counted once.
      assert.strictEqual(statusOf((yield* joinReply(first, ROOM, { access_token: user })).reply), "ok")
      const refused = yield* joinReply(second, WEDDING, privateJoin(user))
      assert.strictEqual(reasonOf(refused.reply), "ConnectionRateLimitReached: Too many connected users for this user")
      // Another user is under its own cap.
      assert.strictEqual(statusOf((yield* joinReply(second, ROOM, { access_token: other })).reply), "ok")
      // The first socket's close releases its user.
      yield* Scope.close(firstScope, Exit.void)
      assert.strictEqual(statusOf((yield* joinReply(second, WEDDING, privateJoin(user))).reply), "ok")
    }).pipe(Effect.provide(WithRegistry), Effect.scoped))
})

describe("access_token that is not a user JWT (item 7)", () => {
  const shutdownMessage = (frames: ReadonlyArray<TestSocket.Received>) => {
    assert.strictEqual(frames.length, 2)
    assert.strictEqual(messageOf(frames[0]).event, "system")
    assert.strictEqual(messageOf(frames[1]).event, "phx_close")
    return (messageOf(frames[0]).payload as { message?: unknown }).message
  }

  const keys: ReadonlyArray<readonly [string, Effect.Effect<string | null>]> = [
    ["the anon JWT", TestSocket.anonToken()],
    ["an sb_publishable_ key", Effect.succeed("sb_publishable_abc")],
    ["null (no token: the socket's own anon key)", Effect.succeed(null)]
  ]
  for (const [name, key] of keys) {
    it.effect(`${name} shuts a private channel down and keeps a public one with anon rights`, () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const member = yield* TestSocket.userToken({ weddingIds: ["42"] })
        const signOut = yield* key
        const wedding = yield* joinReply(client, WEDDING, privateJoin(member))
        const room = yield* joinReply(client, ROOM, { config: { broadcast: { self: true } }, access_token: member })
        assert.strictEqual(statusOf(wedding.reply), "ok")
        client.push(wedding.joinRef, "5", WEDDING, "access_token", { access_token: signOut })
        assert.strictEqual(
          shutdownMessage(yield* client.next(2)),
          "You do not have permissions to read from this Channel topic: wedding:42"
        )
        client.push(room.joinRef, "6", ROOM, "access_token", { access_token: signOut })
        assert.deepStrictEqual(yield* client.drain, [], "the public channel goes on")
        client.push(room.joinRef, "7", ROOM, "broadcast", { type: "broadcast", event: "after", payload: {} })
        assert.strictEqual(messageOf((yield* client.next())[0]).event, "broadcast")
        // The private topic now refuses a join with the same key.
        assert.match(
          String(reasonOf((yield* joinReply(client, WEDDING, privateJoin(signOut ?? undefined))).reply)),
          /^Unauthorized: /
        )
      }).pipe(Effect.provide(Instant)))
  }
})

describe("postgres_changes bindings (item 9)", () => {
  const changes = (events: ReadonlyArray<unknown>) => ({
    config: {
      postgres_changes: events.map((event, i) => ({ event, schema: "public", table: "todos", filter: `id=eq.${i}` }))
    }
  })

  it.effect("an unknown event is refused with InvalidJoinPayload; a known one joins", () =>
    Effect.gen(function*() {
      const client = yield* TestSocket.connect()
      const refused = yield* joinReply(client, ROOM, changes(["INSERT", "UPSERT"]))
      assert.strictEqual(
        reasonOf(refused.reply),
        'InvalidJoinPayload: Unknown postgres_changes event "UPSERT"; expected *, INSERT, UPDATE or DELETE'
      )
      const accepted = yield* joinReply(client, ROOM, changes(["INSERT"]))
      assert.strictEqual(statusOf(accepted.reply), "ok")
    }).pipe(Effect.provide(Instant)))

  it.effect("more than maxBindingsPerChannel bindings are refused with BindingLimitReached; the limit itself joins", () =>
    Effect.gen(function*() {
      const client = yield* TestSocket.connect()
      const refused = yield* joinReply(client, ROOM, changes(["INSERT", "UPDATE", "DELETE"]))
      assert.strictEqual(
        reasonOf(refused.reply),
        "BindingLimitReached: Too many postgres_changes bindings; at most 2 per channel"
      )
      const accepted = yield* joinReply(client, ROOM, changes(["INSERT", "DELETE"]))
      assert.strictEqual(statusOf(accepted.reply), "ok")
    }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxBindingsPerChannel: 2 }))))
})

describe("one per-socket rate for every frame (item 9)", () => {
  const Limited = TestSocket.layer({
    joinErrorDelayMs: 0,
    maxEventsPerSecond: 3,
    maxJoinsPerSecond: 2,
    maxFramesPerSecond: 6
  })
  const heartbeat = (client: TestSocket.TestClient, ref: string) => client.push(null, ref, "phoenix", "heartbeat", {})

  it.effect("a heartbeat flood gets error replies past the event rate and a 4030 close past the frame budget; one a second is fine", () =>
    Effect.gen(function*() {
      const calm = yield* TestSocket.connect()
      for (let i = 0; i < 5; i++) {
        heartbeat(calm, String(i))
        assert.strictEqual(statusOf((yield* calm.next())[0]), "ok")
        yield* TestClock.adjust("1 second")
      }
      const flooder = yield* TestSocket.connect()
      for (let i = 0; i < 10; i++) heartbeat(flooder, String(i))
      const replies = yield* flooder.next(6)
      assert.deepStrictEqual(replies.map(statusOf), ["ok", "ok", "ok", "error", "error", "error"])
      assert.strictEqual(reasonOf(replies[3]), "EventRateLimitReached: Too many messages per second")
      assert.deepStrictEqual(yield* flooder.socket.awaitClose, { code: 4030, reason: "Too many frames per second" })
      assert.isUndefined(calm.socket.closed)
    }).pipe(Effect.provide(Limited)))

  it.effect("the frame budget is never below the event and join limits: an operator who raises those is not cut off", () =>
    Effect.gen(function*() {
      const client = yield* TestSocket.connect()
      for (let i = 0; i < 10; i++) heartbeat(client, String(i))
      const replies = yield* client.next(10)
      assert.deepStrictEqual(replies.map(statusOf), Array.from({ length: 10 }, () => "ok"))
      assert.isUndefined(client.socket.closed)
    }).pipe(Effect.provide(TestSocket.layer({ maxEventsPerSecond: 10, maxJoinsPerSecond: 2, maxFramesPerSecond: 6 }))))

  it.effect("heartbeats, malformed frames and unknown events count with channel pushes: the next push shuts the channel down", () =>
    Effect.gen(function*() {
      const client = yield* TestSocket.connect()
      const { joinRef } = yield* joinReply(client, ROOM)
      heartbeat(client, "1")
      client.pushRaw("not json")
      client.push(joinRef, "2", ROOM, "made-up-event", {})
      assert.strictEqual(statusOf((yield* client.next())[0]), "ok")
      client.push(joinRef, "3", ROOM, "access_token", { access_token: null })
      const [system, close] = yield* client.next(2)
      assert.strictEqual((messageOf(system).payload as { message?: unknown }).message, "Too many messages per second")
      assert.strictEqual(messageOf(close).event, "phx_close")
      // A new second: the socket and a new join work.
      yield* TestClock.adjust("1 second")
      assert.strictEqual(statusOf((yield* joinReply(client, ROOM)).reply), "ok")
    }).pipe(Effect.provide(Limited)))
})

describe("deeply nested JSON on the socket (item 10)", () => {
  const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`
  const broadcastText = (joinRef: string, payload: string) =>
    `["${joinRef}",null,"${ROOM}","broadcast",{"type":"broadcast","event":"deep","payload":${payload}}]`

  it.effect("closes only the sender with 4003, before parsing; 60 levels are delivered", () =>
    Effect.gen(function*() {
      const receiver = yield* TestSocket.connect()
      yield* joinReply(receiver, ROOM)
      const sender = yield* TestSocket.connect()
      const { joinRef } = yield* joinReply(sender, ROOM)
      sender.pushRaw(broadcastText(joinRef, nested(60)))
      assert.strictEqual(messageOf((yield* receiver.next())[0]).event, "broadcast")
      sender.pushRaw(broadcastText(joinRef, nested(100_000)))
      sender.pushRaw(broadcastText(joinRef, nested(100_000)))
      assert.deepStrictEqual(yield* sender.socket.awaitClose, {
        code: 4003,
        reason: "JSON is nested more than 64 levels deep"
      })
      assert.deepStrictEqual(yield* receiver.drain, [])
      assert.isUndefined(receiver.socket.closed)
    }).pipe(Effect.provide(Instant)))

  it.effect("a binary broadcast with a deep JSON payload closes its sender too", () =>
    Effect.gen(function*() {
      const sender = yield* TestSocket.connect()
      const { joinRef } = yield* joinReply(sender, ROOM)
      sender.pushBroadcast({
        joinRef,
        ref: null,
        topic: ROOM,
        userEvent: "deep",
        meta: undefined,
        encoding: "json",
        payload: new TextEncoder().encode(nested(1_000))
      })
      assert.strictEqual((yield* sender.socket.awaitClose).code, 4003)
    }).pipe(Effect.provide(Instant)))
})

import { assert, describe, it, layer } from "@effect/vitest"
import { Hub, Publication } from "@wedsync/hub"
import type { Frame } from "@wedsync/protocol"
import { Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { ConnectionRegistry } from "../src/ConnectionRegistry.ts"
import { TestSocket } from "../src/testing/index.ts"

type Received = TestSocket.Received
type Message = Extract<Received, { _tag: "Message" }>
type Tuple = readonly [string | null, string | null, string, string, unknown]

const VSNS: ReadonlyArray<Frame.Vsn> = ["1.0.0", "2.0.0"]
const ROOM = "realtime:room1"
const enc = new TextEncoder()
const dec = new TextDecoder()

/** No join error delay unless a test is about it. */
const Instant = TestSocket.layer({ joinErrorDelayMs: 0 })

const asMessage = (received: Received | undefined): Message => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return received
}

const tupleOf = (received: Received | undefined): Tuple => {
  const m = asMessage(received)
  return [m.joinRef, m.ref, m.topic, m.event, m.payload]
}

/** The frame as the vsn sends it: serializer 1.0.0 never carries a server join_ref. */
const expected = (
  vsn: Frame.Vsn,
  tuple: Tuple
): Tuple => (vsn === "1.0.0" ? [null, ...tuple.slice(1)] as unknown as Tuple : tuple)

const assertFrame = (vsn: Frame.Vsn, received: Received | undefined, tuple: Tuple) =>
  assert.deepStrictEqual(tupleOf(received), expected(vsn, tuple))

const ok = (response: unknown = {}) => ({ status: "ok", response })
const error = (reason: string) => ({ status: "error", response: { reason } })
const system = (message: string, channel: string) => ({ extension: "system", status: "error", message, channel })

/**
 * Frames of one push keyed by event: a presence call publishes its diff (to the caller too) and
 * replies, and the test should not depend on which of the two is written first.
 */
const byEvent = (frames: ReadonlyArray<Received>): Record<string, Received> =>
  Object.fromEntries(frames.map((f) => [asMessage(f).event, f]))

/** Takes a slot of `registry` in the connection's scope and registers the handle in it, as the transport does. */
const admitted = (registry: ConnectionRegistry["Service"]) => (handle: TestSocket.TestClient["handle"]) =>
  Effect.map(Effect.orDie(registry.admit("127.0.0.1", undefined)), (admission) => admission.register(handle))

/** Reads the client's next frame and checks it, as the client's vsn sends it. */
const expectNext = (client: TestSocket.TestClient, tuple: Tuple) =>
  Effect.map(client.next(), ([frame]) => assertFrame(client.vsn, frame, tuple))

/** Reads the client's next frame and checks that it is the reply to push `ref`. */
const expectReply = (
  client: TestSocket.TestClient,
  joinRef: string | null,
  ref: string,
  topic: string,
  response: unknown
) => expectNext(client, [joinRef, ref, topic, "phx_reply", response])

/** Joins and checks the ok reply; returns the join ref. */
const joinOk = (client: TestSocket.TestClient, topic: string, payload: unknown = {}) =>
  Effect.gen(function*() {
    const joinRef = client.join(topic, payload)
    const [reply] = yield* client.next()
    assertFrame(client.vsn, reply, [joinRef, joinRef, topic, "phx_reply", ok({ postgres_changes: [] })])
    return joinRef
  })

/** Joins and checks that the join is refused with `reason`. */
const joinRefused = (client: TestSocket.TestClient, topic: string, payload: unknown, reason: string) =>
  Effect.suspend(() => {
    const joinRef = client.join(topic, payload)
    return expectReply(client, joinRef, joinRef, topic, error(reason))
  })

/** Reads the system message and phx_close by which the server shuts a channel down; the socket stays. */
const expectShutDown = (client: TestSocket.TestClient, joinRef: string, topic: string, message: string) =>
  Effect.gen(function*() {
    const [sys, close] = yield* client.next(2)
    assertFrame(client.vsn, sys, [joinRef, null, topic, "system", system(message, topic.replace(/^realtime:/, ""))])
    assertFrame(client.vsn, close, [joinRef, joinRef, topic, "phx_close", {}])
  })

const sizeExceeded = { status: "error", response: "payload_size_exceeded" }

const broadcastConfig = (options: { self?: boolean; ack?: boolean; private?: boolean; presence?: object } = {}) => ({
  config: {
    broadcast: { self: options.self ?? false, ack: options.ack ?? false },
    presence: options.presence ?? { key: "", enabled: false },
    postgres_changes: [],
    private: options.private ?? false
  }
})

const jsonBroadcast = (joinRef: string, ref: string, topic: string, payload: unknown): Frame.UserBroadcast => ({
  joinRef,
  ref,
  topic,
  userEvent: "msg",
  meta: undefined,
  encoding: "json",
  payload: enc.encode(JSON.stringify(payload))
})

describe("ConnectionActor", () => {
  for (const vsn of VSNS) {
    layer(Instant)(`protocol, serializer ${vsn}`, (it) => {
      it.effect("answers a heartbeat with the exact Phoenix reply", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push(null, "21", "phoenix", "heartbeat", {})
          const reply = asMessage((yield* client.next())[0])
          assert.strictEqual(
            reply.text,
            vsn === "2.0.0"
              ? '[null,"21","phoenix","phx_reply",{"status":"ok","response":{}}]'
              : '{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"21"}'
          )
        }))

      it.effect("replies to a join with {postgres_changes: []}", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("9", "9", ROOM, "phx_join", broadcastConfig())
          const reply = asMessage((yield* client.next())[0])
          assert.strictEqual(
            reply.text,
            vsn === "2.0.0"
              ? '["9","9","realtime:room1","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]'
              : '{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{"postgres_changes":[]}},"ref":"9"}'
          )
          assert.deepStrictEqual(yield* client.drain, [])
        }))

      it.effect("echoes postgres_changes bindings in order with integer ids, then a system error each", () =>
        Effect.gen(function*() {
          const bindings = [
            { event: "INSERT", schema: "public", table: "messages", filter: "room_id=eq.1" },
            { event: "*", schema: "public", table: "todos" }
          ]
          const client = yield* TestSocket.connect({ vsn })
          client.push("9", "9", ROOM, "phx_join", { config: { postgres_changes: bindings } })
          const [reply, first, second] = yield* client.next(3)
          const payload = asMessage(reply).payload as {
            status: string
            response: { postgres_changes: Array<Record<string, unknown>> }
          }
          assert.strictEqual(payload.status, "ok")
          const echoed = payload.response.postgres_changes
          assert.deepStrictEqual(echoed.map(({ id: _id, ...rest }) => rest), bindings)
          for (const { id } of echoed) {
            assert.isTrue(Number.isInteger(id), `id ${String(id)} is an integer`)
            assert.isTrue((id as number) >= 0 && (id as number) < 2 ** 27)
          }
          assert.notStrictEqual(echoed[0]!["id"], echoed[1]!["id"])
          for (const [i, frame] of [first, second].entries()) {
            const [joinRef, ref, topic, event, body] = tupleOf(frame)
            assert.deepStrictEqual(
              [joinRef, ref, topic, event],
              expected(vsn, ["9", null, ROOM, "system", null]).slice(0, 4)
            )
            const sys = body as { extension: string; status: string; message: string; channel: string }
            assert.deepStrictEqual([sys.extension, sys.status, sys.channel], ["postgres_changes", "error", "room1"])
            assert.match(sys.message, /^Unable to subscribe to changes with given parameters\./)
            assert.include(sys.message, `table: ${bindings[i]!.table}`)
          }
          // The same filter map always gets the same id, as Supabase's phash2.
          const again = yield* TestSocket.connect({ vsn })
          again.push("3", "3", "realtime:other", "phx_join", { config: { postgres_changes: bindings } })
          const [otherReply] = yield* again.next(3)
          const otherIds = (asMessage(otherReply).payload as typeof payload).response.postgres_changes.map((b) =>
            b["id"]
          )
          assert.deepStrictEqual(otherIds, echoed.map((b) => b["id"]))
        }))

      it.effect("`realtime:` alone is TopicNameRequired", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("4", "4", "realtime:", "phx_join", {})
          yield* expectReply(client, "4", "4", "realtime:", error("TopicNameRequired: You must provide a topic name"))
        }))

      it.effect("a join on a topic without the realtime: prefix is an unmatched topic", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("4", "4", "room1", "phx_join", {})
          yield* expectReply(client, "4", "4", "room1", error("unmatched topic"))
        }))

      it.effect("a push to a topic that is not joined is an unmatched topic", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("7", "8", "realtime:nope", "broadcast", { type: "broadcast", event: "msg", payload: {} })
          yield* expectReply(client, "7", "8", "realtime:nope", error("unmatched topic"))
          client.push(null, "10", "realtime:nope", "presence", { type: "presence", event: "track", payload: {} })
          yield* expectReply(client, null, "10", "realtime:nope", error("unmatched topic"))
        }))

      it.effect("leave replies ok, then phx_close carries the join ref in both places", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("9", "9", ROOM, "phx_join", {})
          yield* client.next()
          client.push("9", "22", ROOM, "phx_leave", {})
          const [reply, close] = yield* client.next(2)
          assertFrame(vsn, reply, ["9", "22", ROOM, "phx_reply", ok()])
          assertFrame(vsn, close, ["9", "9", ROOM, "phx_close", {}])
          // Left means gone: the next push is an unmatched topic.
          client.push("9", "23", ROOM, "broadcast", { type: "broadcast", event: "msg", payload: {} })
          yield* expectReply(client, "9", "23", ROOM, error("unmatched topic"))
        }))

      it.effect("a leave for a channel that never joined is acknowledged without phx_close", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push(null, "3", "realtime:pre-sub", "phx_leave", {})
          yield* expectReply(client, null, "3", "realtime:pre-sub", ok())
          assert.deepStrictEqual(yield* client.drain, [])
        }))

      it.effect("joining a joined topic again closes the old channel and opens the new one", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          client.push("1", "1", ROOM, "phx_join", {})
          yield* client.next()
          client.push("5", "5", ROOM, "phx_join", {})
          const [close, reply] = yield* client.next(2)
          assertFrame(vsn, close, ["1", "1", ROOM, "phx_close", {}])
          assertFrame(vsn, reply, ["5", "5", ROOM, "phx_reply", ok({ postgres_changes: [] })])
          const hub = yield* Hub.Hub
          assert.strictEqual(hub.subscriberCount(Publication.topicKey(ROOM, false)), 1)
        }))

      it.effect("drops malformed frames and keeps working", () =>
        Effect.gen(function*() {
          const client = yield* TestSocket.connect({ vsn })
          const garbage: Array<string | Uint8Array> = [
            "not json",
            "",
            "42",
            "null",
            '["1","1","realtime:x"]',
            "[1,2,3,4,5,6,7]",
            vsn === "2.0.0"
              ? '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}'
              : '[null,"1","phoenix","heartbeat",{}]',
            '{"topic":1,"event":"x"}',
            new Uint8Array([]),
            new Uint8Array([9, 0, 0, 0, 0, 0, 1]),
            new Uint8Array([3, 1, 1, 200, 1, 0, 1, 0x31]),
            new Uint8Array([4, 0, 0, 0, 1])
          ]
          for (const frame of garbage) client.pushRaw(frame)
          assert.deepStrictEqual(yield* client.drain, [])
          assert.isUndefined(client.socket.closed)
          yield* joinOk(client, ROOM)
        }))
    })
  }

  describe("broadcast", () => {
    it.effect("self: false (default) reaches the others, not the sender; no ack means no reply", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const other = yield* TestSocket.connect()
        const senderJoin = yield* joinOk(sender, ROOM, broadcastConfig())
        yield* joinOk(other, ROOM, broadcastConfig())
        const body = { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } }
        sender.push(senderJoin, sender.nextRef(), ROOM, "broadcast", body)
        assert.deepStrictEqual(yield* sender.drain, [])
        yield* expectNext(other, [null, null, ROOM, "broadcast", body])
      }).pipe(Effect.provide(Instant)))

    it.effect("self: true delivers to the sender too", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const other = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ self: true }))
        yield* joinOk(other, ROOM, broadcastConfig())
        sender.pushBroadcast(jsonBroadcast(joinRef, sender.nextRef(), ROOM, { n: 1 }))
        for (const client of [sender, other]) {
          const [frame] = yield* client.next()
          if (frame?._tag !== "UserBroadcast") return assert.fail("expected a kind-4 frame")
          assert.deepStrictEqual([frame.topic, frame.userEvent, frame.encoding], [ROOM, "msg", "json"])
          assert.deepStrictEqual(JSON.parse(dec.decode(frame.payload)), { n: 1 })
        }
      }).pipe(Effect.provide(Instant)))

    it.effect("ack: true replies ok with the push's ref once fan-out started", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const other = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        yield* joinOk(other, ROOM, broadcastConfig())
        const ref = sender.nextRef()
        sender.pushBroadcast(jsonBroadcast(joinRef, ref, ROOM, { n: 1 }))
        yield* expectReply(sender, joinRef, ref, ROOM, ok())
        assert.strictEqual((yield* other.next())[0]?._tag, "UserBroadcast")
        // The text form (v1 clients) is acknowledged the same way.
        const textRef = sender.nextRef()
        sender.push(joinRef, textRef, ROOM, "broadcast", { type: "broadcast", event: "msg", payload: {} })
        yield* expectReply(sender, joinRef, textRef, ROOM, ok())
      }).pipe(Effect.provide(Instant)))

    it.effect("a kind-3 broadcast is kind 4 for v2 subscribers and JSON for v1; binary payloads skip v1", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const v2 = yield* TestSocket.connect()
        const v1 = yield* TestSocket.connect({ vsn: "1.0.0" })
        const joinRef = yield* joinOk(sender, ROOM)
        yield* joinOk(v2, ROOM)
        yield* joinOk(v1, ROOM)
        sender.pushBroadcast(jsonBroadcast(joinRef, sender.nextRef(), ROOM, { hello: "world" }))
        sender.pushBroadcast({
          ...jsonBroadcast(joinRef, sender.nextRef(), ROOM, null),
          encoding: "binary",
          payload: new Uint8Array([1, 2, 3, 255])
        })
        yield* sender.sync
        const [json, binary] = yield* v2.next(2)
        assert.strictEqual(json?._tag, "UserBroadcast")
        if (binary?._tag !== "UserBroadcast") return assert.fail("expected a kind-4 frame")
        assert.strictEqual(binary.encoding, "binary")
        assert.deepStrictEqual(Array.from(binary.payload), [1, 2, 3, 255])
        const v1Frames = yield* v1.drain
        assert.strictEqual(v1Frames.length, 1)
        assertFrame("1.0.0", v1Frames[0], [null, null, ROOM, "broadcast", {
          type: "broadcast",
          event: "msg",
          payload: { hello: "world" }
        }])
      }).pipe(Effect.provide(Instant)))

    it.effect("a v1 text broadcast reaches v2 subscribers as a text frame", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect({ vsn: "1.0.0" })
        const v2 = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM)
        yield* joinOk(v2, ROOM)
        const body = { type: "broadcast", event: "msg", payload: { hello: "world", n: 1 } }
        sender.push(joinRef, "10", ROOM, "broadcast", body)
        yield* expectNext(v2, [null, null, ROOM, "broadcast", body])
      }).pipe(Effect.provide(Instant)))

    it.effect("payload size: at the limit accepted; one byte over → payload_size_exceeded (ack) or silence (no ack)", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const quiet = yield* TestSocket.connect()
        const other = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        const quietJoin = yield* joinOk(quiet, ROOM, broadcastConfig())
        yield* joinOk(other, ROOM)
        const sized = (n: number, ref: string, from = joinRef): Frame.UserBroadcast => ({
          ...jsonBroadcast(from, ref, ROOM, null),
          encoding: "binary",
          payload: new Uint8Array(n)
        })
        sender.pushBroadcast(sized(100, "20"))
        yield* expectReply(sender, joinRef, "20", ROOM, ok())
        sender.pushBroadcast(sized(101, "21"))
        const refused = asMessage((yield* sender.next())[0])
        assert.deepStrictEqual(tupleOf(refused), [joinRef, "21", ROOM, "phx_reply", sizeExceeded])
        assert.include(refused.text, '"response":"payload_size_exceeded"')
        quiet.pushBroadcast(sized(101, "5", quietJoin))
        const sizes = (frames: ReadonlyArray<Received>) =>
          frames.map((f) => (f._tag === "UserBroadcast" ? f.payload.length : -1))
        // Without ack an oversized broadcast is dropped silently: no reply, no delivery.
        assert.deepStrictEqual(sizes(yield* quiet.drain), [100])
        assert.deepStrictEqual(sizes(yield* other.drain), [100])
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxPayloadBytes: 100 }))))

    it.effect("the text form is measured on its JSON: at the limit accepted, over refused", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        const body = (n: number) => {
          const base = { type: "broadcast", event: "msg", payload: { s: "" } }
          const pad = n - JSON.stringify(base).length
          return { ...base, payload: { s: "x".repeat(pad) } }
        }
        assert.strictEqual(JSON.stringify(body(100)).length, 100)
        sender.push(joinRef, "30", ROOM, "broadcast", body(100))
        yield* expectReply(sender, joinRef, "30", ROOM, ok())
        sender.push(joinRef, "31", ROOM, "broadcast", body(101))
        yield* expectReply(sender, joinRef, "31", ROOM, sizeExceeded)
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxPayloadBytes: 100 }))))

    it.effect("a large text broadcast goes out as the client spelled it, to v1 and v2; whitespace in it counts", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const v2 = yield* TestSocket.connect()
        const v1 = yield* TestSocket.connect({ vsn: "1.0.0" })
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        yield* joinOk(v2, ROOM)
        yield* joinOk(v1, ROOM)
        // Over Serializer.RAW_PAYLOAD_MIN, so the payload is forwarded as written, spaces and all.
        const body = { type: "broadcast", event: "big", payload: { s: "x".repeat(120_000), n: 1 } }
        const spelled = JSON.stringify(body, null, 1)
        sender.pushRaw(`["${joinRef}","40","${ROOM}","broadcast",${spelled}]`)
        yield* expectReply(sender, joinRef, "40", ROOM, ok())
        for (const receiver of [v2, v1]) {
          const received = asMessage((yield* receiver.next())[0])
          assert.include(received.text, spelled)
          assert.deepStrictEqual(received.payload, body)
        }
        // The limit is on the payload as sent: the same payload under the limit compact, over it with spaces inside.
        const compact = { type: "broadcast", event: "big", payload: { s: "x".repeat(195_000) } }
        sender.pushRaw(`["${joinRef}","41","${ROOM}","broadcast",${JSON.stringify(compact)}]`)
        yield* expectReply(sender, joinRef, "41", ROOM, ok())
        const padded = JSON.stringify(compact).replace('{"s"', `{${" ".repeat(10_000)}"s"`)
        sender.pushRaw(`["${joinRef}","42","${ROOM}","broadcast",${padded}]`)
        yield* expectReply(sender, joinRef, "42", ROOM, sizeExceeded)
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxPayloadBytes: 200_000 }))))

    it.effect("the text form is measured in UTF-8 bytes: 3-byte characters count three times", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        // Each "€" is 1 UTF-16 unit but 3 UTF-8 bytes; the rest of the message is 53 bytes of JSON.
        const euros = (n: number) => ({ type: "broadcast", event: "msg", payload: { s: "€".repeat(n) } })
        assert.strictEqual(Buffer.byteLength(JSON.stringify(euros(15))), 98)
        sender.push(joinRef, "40", ROOM, "broadcast", euros(15))
        yield* expectReply(sender, joinRef, "40", ROOM, ok())
        // 16 characters: 69 units, under the limit by string length, but 101 bytes: refused.
        assert.isBelow(JSON.stringify(euros(16)).length, 100)
        sender.push(joinRef, "41", ROOM, "broadcast", euros(16))
        yield* expectReply(sender, joinRef, "41", ROOM, sizeExceeded)
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxPayloadBytes: 100 }))))

    it.effect("events per second: the limit is accepted, the next push shuts the channel down", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        for (const ref of ["1", "2", "3"]) {
          sender.pushBroadcast(jsonBroadcast(joinRef, `e${ref}`, ROOM, {}))
          yield* expectReply(sender, joinRef, `e${ref}`, ROOM, ok())
        }
        sender.pushBroadcast(jsonBroadcast(joinRef, "e4", ROOM, {}))
        yield* expectShutDown(sender, joinRef, ROOM, "Too many messages per second")
        assert.isUndefined(sender.socket.closed)
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxEventsPerSecond: 3 }))))

    it.effect("public and private channels of one name are separate rooms", () =>
      Effect.gen(function*() {
        const token = yield* TestSocket.userToken({ weddingIds: ["42"] })
        const topic = "realtime:wedding:42"
        const privateSender = yield* TestSocket.connect()
        const publicMember = yield* TestSocket.connect()
        const privateMember = yield* TestSocket.connect()
        const joinRef = yield* joinOk(privateSender, topic, {
          ...broadcastConfig({ private: true }),
          access_token: token
        })
        yield* joinOk(publicMember, topic)
        yield* joinOk(privateMember, topic, { ...broadcastConfig({ private: true }), access_token: token })
        privateSender.pushBroadcast(jsonBroadcast(joinRef, "1", topic, { secret: true }))
        yield* privateSender.sync
        assert.strictEqual((yield* privateMember.drain).length, 1)
        assert.deepStrictEqual(yield* publicMember.drain, [])
      }).pipe(Effect.provide(Instant)))
  })

  describe("presence", () => {
    it.effect("track and untrack reply ok and publish diffs; a presence join gets presence_state", () =>
      Effect.gen(function*() {
        const alice = yield* TestSocket.connect()
        const bob = yield* TestSocket.connect()
        const aliceJoin = yield* joinOk(alice, ROOM, broadcastConfig({ presence: { key: "alice", enabled: true } }))
        yield* expectNext(alice, [aliceJoin, null, ROOM, "presence_state", {}])
        alice.push(aliceJoin, "12", ROOM, "presence", { type: "presence", event: "track", payload: { name: "alice" } })
        const { phx_reply: reply, presence_diff: diff } = byEvent(yield* alice.next(2))
        assertFrame("2.0.0", reply, [aliceJoin, "12", ROOM, "phx_reply", ok()])
        const joins = (tupleOf(diff)[4] as { joins: Record<string, { metas: Array<{ phx_ref: string }> }> }).joins
        const ref = joins["alice"]!.metas[0]!.phx_ref
        assertFrame("2.0.0", diff, [null, null, ROOM, "presence_diff", {
          joins: { alice: { metas: [{ phx_ref: ref, name: "alice" }] } },
          leaves: {}
        }])
        // A later member with presence enabled gets the current state after its join reply.
        const bobJoin = yield* joinOk(bob, ROOM, broadcastConfig({ presence: { key: "bob", enabled: true } }))
        yield* expectNext(bob, [bobJoin, null, ROOM, "presence_state", {
          alice: { metas: [{ phx_ref: ref, name: "alice" }] }
        }])
        // The event name is case-insensitive, as on the server.
        alice.push(aliceJoin, "13", ROOM, "presence", { type: "presence", event: "UNTRACK" })
        const { phx_reply: untrackReply, presence_diff: leave } = byEvent(yield* alice.next(2))
        assertFrame("2.0.0", untrackReply, [aliceJoin, "13", ROOM, "phx_reply", ok()])
        const leaveDiff = { joins: {}, leaves: { alice: { metas: [{ phx_ref: ref, name: "alice" }] } } }
        assertFrame("2.0.0", leave, [null, null, ROOM, "presence_diff", leaveDiff])
        yield* expectNext(bob, [null, null, ROOM, "presence_diff", leaveDiff])
      }).pipe(Effect.provide(Instant)))

    it.effect("a track payload that is not an object, or an unknown presence event, is an error reply", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const joinRef = yield* joinOk(client, ROOM)
        client.push(joinRef, "1", ROOM, "presence", { type: "presence", event: "track", payload: [1] })
        yield* expectReply(client, joinRef, "1", ROOM, error("Presence track payload must be a map"))
        client.push(joinRef, "2", ROOM, "presence", { type: "presence", event: "dance" })
        yield* expectReply(client, joinRef, "2", ROOM, {
          status: "error",
          response: {}
        })
      }).pipe(Effect.provide(Instant)))

    it.effect("5 presence calls per window are accepted; the 6th in the window shuts the channel down", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const joinRef = yield* joinOk(client, ROOM, broadcastConfig({ presence: { key: "k", enabled: false } }))
        const track = (ref: string, n: number) =>
          Effect.gen(function*() {
            client.push(joinRef, ref, ROOM, "presence", { type: "presence", event: "track", payload: { n } })
            const { phx_reply: reply, presence_diff: diff } = byEvent(yield* client.next(2))
            assertFrame("2.0.0", reply, [joinRef, ref, ROOM, "phx_reply", ok()])
            assert.isDefined(diff)
          })
        for (let n = 1; n <= 5; n++) yield* track(`a${n}`, n)
        // The window slides: 30 s later the first five no longer count.
        yield* TestClock.adjust("30 seconds")
        for (let n = 6; n <= 10; n++) yield* track(`b${n}`, n)
        client.push(joinRef, "b11", ROOM, "presence", { type: "presence", event: "track", payload: { n: 11 } })
        yield* expectShutDown(client, joinRef, ROOM, "Client presence rate limit exceeded")
        assert.isUndefined(client.socket.closed)
      }).pipe(Effect.provide(Instant)))

    for (const key of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      it.effect(`a presence key named ${key} is tracked like any key; a later joiner gets presence_state and diffs (beside: a normal key)`, () =>
        Effect.gen(function*() {
          const hostile = yield* TestSocket.connect()
          const normal = yield* TestSocket.connect()
          const late = yield* TestSocket.connect()
          const hostileJoin = yield* joinOk(hostile, ROOM, broadcastConfig({ presence: { key, enabled: false } }))
          const normalJoin = yield* joinOk(
            normal,
            ROOM,
            broadcastConfig({ presence: { key: "venue-1", enabled: false } })
          )
          hostile.push(hostileJoin, "1", ROOM, "presence", {
            type: "presence",
            event: "track",
            payload: { device: key }
          })
          assert.deepStrictEqual(tupleOf(byEvent(yield* hostile.next(2))["phx_reply"])[4], ok())
          yield* normal.next()
          normal.push(normalJoin, "2", ROOM, "presence", {
            type: "presence",
            event: "track",
            payload: { device: "venue-1" }
          })
          assert.deepStrictEqual(tupleOf(byEvent(yield* normal.next(2))["phx_reply"])[4], ok())
          yield* hostile.next()
          const lateJoin = yield* joinOk(late, ROOM, broadcastConfig({ presence: { key: "late", enabled: true } }))
          const [state] = yield* late.next()
          const stateText = asMessage(state).payload as Record<string, { metas: Array<Record<string, unknown>> }>
          assert.deepStrictEqual(Object.keys(stateText), [key, "venue-1"])
          assert.strictEqual(Object.getOwnPropertyDescriptor(stateText, key)?.value.metas[0]?.["device"], key)
          late.push(lateJoin, "3", ROOM, "presence", { type: "presence", event: "track", payload: { device: "late" } })
          const { phx_reply: reply, presence_diff: diff } = byEvent(yield* late.next(2))
          assert.deepStrictEqual(tupleOf(reply)[4], ok())
          assert.deepStrictEqual(Object.keys((tupleOf(diff)[4] as { joins: object }).joins), ["late"])
          hostile.push(hostileJoin, "4", ROOM, "presence", { type: "presence", event: "untrack" })
          yield* hostile.next(2)
          const [leave] = yield* late.next()
          const leaves = (tupleOf(leave)[4] as { leaves: object }).leaves
          assert.deepStrictEqual(Object.keys(leaves), [key])
          for (const c of [hostile, normal, late]) assert.isUndefined(c.socket.closed)
        }).pipe(Effect.provide(Instant)))
    }

    it.effect("a meta key named __proto__ stays an own key of the diff", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const joinRef = yield* joinOk(client, ROOM, broadcastConfig({ presence: { key: "k", enabled: false } }))
        client.pushRaw(
          `[${
            JSON.stringify(joinRef)
          },"1","${ROOM}","presence",{"type":"presence","event":"track","payload":{"__proto__":{"x":1},"a":2}}]`
        )
        const { presence_diff: diff } = byEvent(yield* client.next(2))
        const meta = (tupleOf(diff)[4] as { joins: { k: { metas: Array<object> } } }).joins.k.metas[0]!
        assert.deepStrictEqual(Object.keys(meta), ["phx_ref", "__proto__", "a"])
      }).pipe(Effect.provide(Instant)))

    const Bounded = TestSocket.layer({
      joinErrorDelayMs: 0,
      presenceMaxKeysPerChannel: 2,
      presenceMaxBytesPerChannel: 400,
      presenceMaxBytesPerSocket: 150
    })
    const trackReply = (client: TestSocket.TestClient, joinRef: string, ref: string, payload: object) =>
      Effect.gen(function*() {
        client.push(joinRef, ref, ROOM, "presence", { type: "presence", event: "track", payload })
        const first = yield* client.next()
        const reply = asMessage(first[0]).event === "phx_reply" ? first[0] : (yield* client.next())[0]
        return tupleOf(reply)[4]
      })

    it.effect("presence keys per channel: up to the bound accepted, one more refused with TooManyPresenceKeys", () =>
      Effect.gen(function*() {
        const [a, b, c] = [yield* TestSocket.connect(), yield* TestSocket.connect(), yield* TestSocket.connect()]
        const ja = yield* joinOk(a, ROOM, broadcastConfig({ presence: { key: "a" } }))
        const jb = yield* joinOk(b, ROOM, broadcastConfig({ presence: { key: "b" } }))
        const jc = yield* joinOk(c, ROOM, broadcastConfig({ presence: { key: "c" } }))
        assert.deepStrictEqual(yield* trackReply(a, ja, "1", { n: 1 }), ok())
        yield* b.next()
        yield* c.next()
        assert.deepStrictEqual(yield* trackReply(b, jb, "2", { n: 2 }), ok())
        yield* a.next()
        yield* c.next()
        assert.deepStrictEqual(
          yield* trackReply(c, jc, "3", { n: 3 }),
          error("TooManyPresenceKeys: Too many presence keys in this channel (at most 2)")
        )
        // The refused channel stays; an update of an existing key is not growth.
        assert.deepStrictEqual(yield* trackReply(a, ja, "4", { n: 4 }), ok())
        for (const s of [a, b, c]) assert.isUndefined(s.socket.closed)
      }).pipe(Effect.provide(Bounded)))

    it.effect("presence bytes per socket and per channel: within accepted, past refused with PresenceStateTooLarge", () =>
      Effect.gen(function*() {
        const a = yield* TestSocket.connect()
        const b = yield* TestSocket.connect()
        const ja = yield* joinOk(a, ROOM, broadcastConfig({ presence: { key: "a" } }))
        const ja2 = yield* joinOk(a, "realtime:room2", broadcastConfig({ presence: { key: "a" } }))
        const jb = yield* joinOk(b, ROOM, broadcastConfig({ presence: { key: "b" } }))
        assert.deepStrictEqual(yield* trackReply(a, ja, "1", { s: "x".repeat(100) }), ok())
        yield* b.next()
        // 108 + 58 > 150 bytes tracked by socket a.
        a.push(ja2, "2", "realtime:room2", "presence", {
          type: "presence",
          event: "track",
          payload: { s: "y".repeat(50) }
        })
        assert.deepStrictEqual(
          tupleOf((yield* a.next())[0])[4],
          error("PresenceStateTooLarge: Presence tracked by this connection would exceed 150 bytes")
        )
        // Beside it: a small one fits.
        a.push(ja2, "3", "realtime:room2", "presence", { type: "presence", event: "track", payload: { s: "y" } })
        assert.deepStrictEqual(tupleOf(byEvent(yield* a.next(2))["phx_reply"])[4], ok())
        // Room state: a's entry is 1 + 108 + 80 = 189 bytes; b's with a 138-byte meta would be 219 more (408 > 400).
        assert.deepStrictEqual(
          yield* trackReply(b, jb, "4", { s: "z".repeat(130) }),
          error("PresenceStateTooLarge: Presence state of this channel would exceed 400 bytes")
        )
        assert.deepStrictEqual(yield* trackReply(b, jb, "5", { s: "z".repeat(100) }), ok())
      }).pipe(Effect.provide(Bounded)))

    it.effect("a channel's presence leaves when the channel does", () =>
      Effect.gen(function*() {
        const alice = yield* TestSocket.connect()
        const bob = yield* TestSocket.connect()
        const aliceJoin = yield* joinOk(alice, ROOM, broadcastConfig({ presence: { key: "alice", enabled: false } }))
        yield* joinOk(bob, ROOM)
        alice.push(aliceJoin, "1", ROOM, "presence", { type: "presence", event: "track", payload: {} })
        yield* bob.next()
        alice.push(aliceJoin, "2", ROOM, "phx_leave", {})
        const [diff] = yield* bob.next()
        const leaves = (tupleOf(diff)[4] as { leaves: Record<string, unknown> }).leaves
        assert.deepStrictEqual(Object.keys(leaves), ["alice"])
      }).pipe(Effect.provide(Instant)))
  })

  describe("join limits and errors", () => {
    it.effect("channels per socket: up to the cap accepted, beyond it ChannelRateLimitReached", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const first = yield* joinOk(client, "realtime:a")
        yield* joinOk(client, "realtime:b")
        yield* joinRefused(client, "realtime:c", {}, "ChannelRateLimitReached: Too many channels")
        // Rejoining a joined topic does not count as another channel.
        client.join("realtime:a")
        const [close] = yield* client.next(2)
        assertFrame("2.0.0", close, [first, first, "realtime:a", "phx_close", {}])
        // Leaving frees a slot.
        client.push(null, client.nextRef(), "realtime:b", "phx_leave", {})
        yield* client.next(2)
        yield* joinOk(client, "realtime:c")
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxChannelsPerConnection: 2 }))))

    it.effect("joins per second: the limit is accepted; one more is refused and closes the socket with 4029", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        yield* joinOk(client, "realtime:a")
        yield* joinOk(client, "realtime:b")
        yield* TestClock.adjust("1 second")
        yield* joinOk(client, "realtime:c")
        yield* joinOk(client, "realtime:d")
        yield* joinRefused(client, "realtime:e", {}, "ClientJoinRateLimitReached: Too many joins per second")
        assert.deepStrictEqual(yield* client.socket.awaitClose, { code: 4029, reason: "Too many joins per second" })
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, maxJoinsPerSecond: 2 }))))

    it.effect("a join error is delayed beside the actor: heartbeats are answered meanwhile", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        client.push("4", "4", "realtime:", "phx_join", {})
        client.push(null, "5", "phoenix", "heartbeat", {})
        yield* expectReply(client, null, "5", "phoenix", ok())
        yield* TestClock.adjust("4999 millis")
        assert.deepStrictEqual(yield* client.drain, [])
        yield* TestClock.adjust("1 millis")
        yield* expectReply(client, "4", "4", "realtime:", error("TopicNameRequired: You must provide a topic name"))
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 5_000 }))))

    it.effect("a draining node refuses joins with RealtimeRestarting", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect({ isDraining: () => true })
        yield* joinRefused(client, ROOM, {}, "RealtimeRestarting: Realtime is restarting, please standby")
      }).pipe(Effect.provide(Instant)))
  })

  describe("tokens", () => {
    const WithRegistry = ConnectionRegistry.layer.pipe(Layer.provideMerge(Instant))

    it.effect("a token that expires while joined: system error then phx_close, socket and other channels stay", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const client = yield* TestSocket.connect({ register: admitted(registry) })
        const token = yield* TestSocket.userToken({ expiresInSeconds: 10 })
        const joinRef = yield* joinOk(client, ROOM, { access_token: token })
        const otherRef = yield* joinOk(client, "realtime:other")
        assert.strictEqual(client.handle.nextExpiryMs, 10_000)
        yield* TestClock.adjust("10 seconds")
        // The registry's sweep (every second) found the deadline at exp and mailed the actor.
        yield* expectShutDown(client, joinRef, ROOM, "Token has expired 0 seconds ago")
        assert.isUndefined(client.socket.closed)
        // The other channel rides on the socket's anon key, which expires years later.
        assert.isAbove(client.handle.nextExpiryMs, 365 * 24 * 3600 * 1000)
        client.push(otherRef, "50", "realtime:other", "broadcast", { type: "broadcast", event: "x", payload: {} })
        client.push(joinRef, "51", ROOM, "broadcast", { type: "broadcast", event: "x", payload: {} })
        yield* expectReply(client, joinRef, "51", ROOM, error("unmatched topic"))
      }).pipe(Effect.provide(WithRegistry)))

    it.effect("a Deadline before expiry changes nothing; after it, the message counts whole seconds", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const token = yield* TestSocket.userToken({ expiresInSeconds: 10 })
        const joinRef = yield* joinOk(client, ROOM, { access_token: token })
        yield* TestClock.adjust("9999 millis")
        client.handle.offer({ _tag: "Deadline" })
        assert.deepStrictEqual(yield* client.drain, [])
        yield* TestClock.adjust("5001 millis")
        client.handle.offer({ _tag: "Deadline" })
        const [sys] = yield* client.next(2)
        assertFrame("2.0.0", sys, [joinRef, null, ROOM, "system", system("Token has expired 5 seconds ago", "room1")])
      }).pipe(Effect.provide(Instant)))

    it.effect("a join with an expired token is refused with InvalidJWTToken", () =>
      Effect.gen(function*() {
        yield* TestClock.adjust("1 hour")
        const client = yield* TestSocket.connect()
        const token = yield* TestSocket.userToken({ nowSeconds: 0, expiresInSeconds: 60 })
        yield* joinRefused(client, ROOM, { access_token: token }, "InvalidJWTToken: Token has expired 3540 seconds ago")
      }).pipe(Effect.provide(Instant)))

    it.effect("access_token with a valid token keeps the channel and moves the expiry", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const short = yield* TestSocket.userToken({ expiresInSeconds: 10 })
        const joinRef = yield* joinOk(client, ROOM, { ...broadcastConfig({ self: true }), access_token: short })
        assert.strictEqual(client.handle.nextExpiryMs, 10_000)
        const long = yield* TestSocket.userToken({ expiresInSeconds: 3600 })
        client.push(joinRef, "60", ROOM, "access_token", { access_token: long })
        assert.deepStrictEqual(yield* client.drain, [], "access_token gets no reply")
        assert.strictEqual(client.handle.nextExpiryMs, 3_600_000)
        yield* TestClock.adjust("11 seconds")
        client.handle.offer({ _tag: "Deadline" })
        assert.deepStrictEqual(yield* client.drain, [])
        client.push(joinRef, "61", ROOM, "broadcast", { type: "broadcast", event: "still", payload: {} })
        yield* expectNext(client, [null, null, ROOM, "broadcast", {
          type: "broadcast",
          event: "still",
          payload: {}
        }])
      }).pipe(Effect.provide(Instant)))

    it.effect("on a public channel, access_token values that are null, an sb_publishable_ key or the current token change nothing visible", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const token = yield* TestSocket.userToken()
        const joinRef = yield* joinOk(client, ROOM, { access_token: token })
        client.push(joinRef, "1", ROOM, "access_token", { access_token: null })
        client.push(joinRef, "2", ROOM, "access_token", { access_token: "sb_publishable_abc" })
        client.push(joinRef, "3", ROOM, "access_token", { access_token: token })
        client.push(joinRef, "4", ROOM, "access_token", {})
        assert.deepStrictEqual(yield* client.drain, [])
      }).pipe(Effect.provide(Instant)))

    it.effect("a join whose access_token is only whitespace is refused with ApiKeyMissing", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        yield* joinRefused(client, ROOM, { access_token: " " }, "ApiKeyMissing: API key is missing")
      }).pipe(Effect.provide(Instant)))

    it.effect("access_token with an invalid token closes the channel with the system message", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const joinRef = yield* joinOk(client, ROOM)
        client.push(joinRef, "70", ROOM, "access_token", { access_token: "not-a-jwt" })
        yield* expectShutDown(client, joinRef, ROOM, "The token provided is not a valid JWT")
        assert.isUndefined(client.socket.closed)
      }).pipe(Effect.provide(Instant)))

    it.effect("private wedding:<id>: refused without the claim, accepted with it", () =>
      Effect.gen(function*() {
        const topic = "realtime:wedding:42"
        const client = yield* TestSocket.connect()
        const outsider = yield* TestSocket.userToken({ weddingIds: ["7"] })
        yield* joinRefused(
          client,
          topic,
          { ...broadcastConfig({ private: true }), access_token: outsider },
          "Unauthorized: You do not have permissions to read from this Channel topic: wedding:42"
        )
        // Without any access_token the socket's anon key is used, and it has no claim either.
        const anon = client.join(topic, broadcastConfig({ private: true }))
        assert.strictEqual(asMessage((yield* client.next())[0]).ref, anon)
        const member = yield* TestSocket.userToken({ weddingIds: ["42"] })
        const joinRef = yield* joinOk(client, topic, { ...broadcastConfig({ private: true }), access_token: member })
        // A refreshed token without the claim loses the channel.
        client.push(joinRef, "80", topic, "access_token", { access_token: outsider })
        yield* expectShutDown(
          client,
          joinRef,
          topic,
          "You do not have permissions to read from this Channel topic: wedding:42"
        )
      }).pipe(Effect.provide(Instant)))
  })

  describe("socket lifecycle", () => {
    const WithRegistry = ConnectionRegistry.layer.pipe(Layer.provideMerge(Instant))

    it.effect("heartbeat watchdog: a socket silent for idleTimeoutMs is closed with 4000; a chatty one stays", () =>
      Effect.gen(function*() {
        const registry = yield* ConnectionRegistry
        const silent = yield* TestSocket.connect({ register: admitted(registry) })
        const chatty = yield* TestSocket.connect({ register: admitted(registry) })
        for (let beat = 1; beat <= 2; beat++) {
          yield* TestClock.adjust("25 seconds")
          chatty.push(null, `hb${beat}`, "phoenix", "heartbeat", {})
          yield* chatty.next()
        }
        assert.isUndefined(silent.socket.closed, "50 s of silence is within the limit")
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual(yield* silent.socket.awaitClose, { code: 4000, reason: "heartbeat timeout" })
        yield* Fiber.await(silent.fiber)
        assert.isUndefined(chatty.socket.closed)
        assert.strictEqual(registry.count(), 1)
      }).pipe(Effect.provide(WithRegistry)))

    it.effect("slow consumer: past outboxLimitBytes the socket is closed with 4008; the others still receive", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const slow = yield* TestSocket.connect()
        const other = yield* TestSocket.connect()
        const joinRef = yield* joinOk(sender, ROOM)
        yield* joinOk(slow, ROOM)
        yield* joinOk(other, ROOM)
        slow.socket.bufferedBytes = 2_000
        sender.pushBroadcast(jsonBroadcast(joinRef, "1", ROOM, { n: 1 }))
        assert.deepStrictEqual(yield* slow.socket.awaitClose, { code: 4008, reason: "slow consumer: outbox overflow" })
        yield* Fiber.await(slow.fiber)
        sender.pushBroadcast(jsonBroadcast(joinRef, "2", ROOM, { n: 2 }))
        const received = yield* other.next(2)
        assert.deepStrictEqual(
          received.map((f) => (f._tag === "UserBroadcast" ? JSON.parse(dec.decode(f.payload)) : null)),
          [{ n: 1 }, { n: 2 }]
        )
        const hub = yield* Hub.Hub
        assert.strictEqual(
          hub.subscriberCount(Publication.topicKey(ROOM, false)),
          2,
          "the slow socket's subscription is gone"
        )
        assert.strictEqual(slow.socket.closeCalls, 1)
      }).pipe(Effect.provide(TestSocket.layer({ joinErrorDelayMs: 0, outboxLimitBytes: 1_000 }))))

    it.effect("a broadcast at MAX_PAYLOAD_BYTES reaches every reading receiver, none closed; one byte over is refused to the sender only", () =>
      Effect.gen(function*() {
        const sender = yield* TestSocket.connect()
        const receivers = [
          yield* TestSocket.connect(),
          yield* TestSocket.connect(),
          yield* TestSocket.connect({ vsn: "1.0.0" })
        ]
        const joinRef = yield* joinOk(sender, ROOM, broadcastConfig({ ack: true }))
        for (const r of receivers) yield* joinOk(r, ROOM)
        const max = { p: "y".repeat(3_000_000 - 8) } // {"p":"…"} is exactly 3,000,000 bytes
        sender.pushBroadcast(jsonBroadcast(joinRef, "1", ROOM, max))
        yield* expectReply(sender, joinRef, "1", ROOM, ok())
        for (const r of receivers) assert.strictEqual((yield* r.next()).length, 1)
        sender.pushBroadcast(jsonBroadcast(joinRef, "2", ROOM, { p: `${max.p}y` }))
        yield* expectReply(sender, joinRef, "2", ROOM, sizeExceeded)
        for (const c of [sender, ...receivers]) assert.isUndefined(c.socket.closed)
        // A paused reader (its last frame still unsent) is still closed as slow.
        receivers[0]!.socket.bufferedBytes = 6_000_000 // two max frames unsent
        sender.pushBroadcast(jsonBroadcast(joinRef, "3", ROOM, max))
        assert.deepStrictEqual(yield* receivers[0]!.socket.awaitClose, {
          code: 4008,
          reason: "slow consumer: outbox overflow"
        })
        for (const r of receivers.slice(1)) assert.strictEqual((yield* r.next()).length, 1)
      }).pipe(Effect.provide(Instant)))

    it.effect("a full mailbox pauses reading, and reading resumes once it drained", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        // Token verification is asynchronous, so the frames behind this join wait in the mailbox.
        const joinRef = client.join(ROOM, { access_token: yield* TestSocket.userToken() })
        for (let i = 0; i < 8; i++) client.push(null, `p${i}`, "phoenix", "heartbeat", {})
        assert.isTrue(client.socket.paused)
        assert.strictEqual(client.socket.pauseCalls, 1)
        const replies = yield* client.next(9)
        assert.deepStrictEqual(replies.map((r) => asMessage(r).ref), [
          joinRef,
          "p0",
          "p1",
          "p2",
          "p3",
          "p4",
          "p5",
          "p6",
          "p7"
        ])
        yield* client.socket.waitFor("reading to resume", () => !client.socket.paused)
        assert.strictEqual(client.socket.resumeCalls, 1)
      }).pipe(Effect.provide(TestSocket.layer({ mailboxCapacity: 4 }))))

    it.effect("Drain: every channel is told `Server requested disconnect`, then the socket closes with 1012", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        const a = yield* joinOk(client, "realtime:a")
        const b = yield* joinOk(client, "realtime:b")
        client.handle.offer({ _tag: "Drain" })
        const [first, second] = yield* client.next(2)
        const disconnect = (channel: string) => ({
          extension: "system",
          status: "ok",
          message: "Server requested disconnect",
          channel
        })
        assertFrame("2.0.0", first, [a, null, "realtime:a", "system", disconnect("a")])
        assertFrame("2.0.0", second, [b, null, "realtime:b", "system", disconnect("b")])
        assert.deepStrictEqual(yield* client.socket.awaitClose, { code: 1012, reason: "server draining" })
      }).pipe(Effect.provide(Instant)))

    it.effect("Closed (the client went away) ends the actor and releases its channels without a close frame", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        yield* joinOk(client, ROOM)
        const hub = yield* Hub.Hub
        assert.strictEqual(hub.subscriberCount(Publication.topicKey(ROOM, false)), 1)
        client.handle.offer({ _tag: "Closed" })
        yield* Fiber.await(client.fiber)
        assert.strictEqual(hub.subscriberCount(Publication.topicKey(ROOM, false)), 0)
        assert.strictEqual(client.socket.closeCalls, 0)
      }).pipe(Effect.provide(Instant)))

    it.effect("ending the connection's scope closes the socket with 1000", () =>
      Effect.gen(function*() {
        const client = yield* TestSocket.connect()
        yield* joinOk(client, ROOM)
        yield* Fiber.interrupt(client.fiber)
        assert.deepStrictEqual(client.socket.closed, { code: 1000, reason: "" })
        const hub = yield* Hub.Hub
        assert.strictEqual(hub.topicCount(), 0)
      }).pipe(Effect.provide(Instant)))
  })
})

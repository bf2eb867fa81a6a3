/**
 * A revoked membership on the actor: the registry's `Recheck` mail makes the actor decide its private channels on that
 * topic again, with their own principal, and shut down those now refused with Supabase's `Unauthorized` shutdown.
 */
import { assert, describe, it } from "@effect/vitest"
import { TokenVerifier } from "@wedsync/auth"
import { Effect } from "effect"
import { TestSocket } from "../src/testing/index.ts"

const { membershipsOf } = TestSocket

const payloadOf = (received: TestSocket.Received | undefined) => {
  if (received?._tag !== "Message") return assert.fail(`expected a text message, got ${received?._tag ?? "nothing"}`)
  return received
}

const verified = (token: string) => TokenVerifier.TokenVerifier.use((v) => v.verify(token)).pipe(Effect.orDie)

describe("Recheck (a revoked membership)", () => {
  const rows = new Set(["alice|42", "bob|42", "alice|43"])
  const Layer_ = TestSocket.layer({ joinErrorDelayMs: 0 }, membershipsOf(rows))

  it.effect("shuts down the user's private channel on the topic once the table refuses; others stay", () =>
    Effect.gen(function*() {
      const alice = yield* TestSocket.connect({
        principal: yield* verified(yield* TestSocket.userToken({ sub: "alice" }))
      })
      const bob = yield* TestSocket.connect({ principal: yield* verified(yield* TestSocket.userToken({ sub: "bob" })) })
      for (
        const [client, topic] of [[alice, "realtime:wedding:42"], [alice, "realtime:wedding:43"], [
          bob,
          "realtime:wedding:42"
        ]] as const
      ) {
        client.join(topic, { config: { private: true } })
        const [reply] = yield* client.next()
        assert.strictEqual((payloadOf(reply).payload as { status?: unknown }).status, "ok", topic)
      }

      // Still a member: the recheck changes nothing.
      alice.handle.offer({ _tag: "Recheck", userId: "alice", subtopic: "wedding:42" })
      assert.deepStrictEqual(yield* alice.drain, [])

      rows.delete("alice|42")
      alice.handle.offer({ _tag: "Recheck", userId: "alice", subtopic: "wedding:42" })
      const [system, close] = yield* alice.next(2)
      assert.strictEqual(payloadOf(system).topic, "realtime:wedding:42")
      assert.deepStrictEqual(payloadOf(system).payload, {
        extension: "system",
        status: "error",
        message: "You do not have permissions to read from this Channel topic: wedding:42",
        channel: "wedding:42"
      })
      assert.strictEqual(payloadOf(close).event, "phx_close")
      // Alice's other wedding and Bob's channel are untouched.
      bob.handle.offer({ _tag: "Recheck", userId: "alice", subtopic: "wedding:42" })
      alice.handle.offer({ _tag: "Recheck", userId: "alice", subtopic: "wedding:43" })
      assert.deepStrictEqual(yield* alice.drain, [])
      assert.deepStrictEqual(yield* bob.drain, [])
    }).pipe(Effect.provide(Layer_)))
})

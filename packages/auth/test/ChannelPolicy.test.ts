import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { ChannelPolicy, Memberships, Principal } from "../src/index.ts"

const guest = Principal.make({
  claims: { role: "authenticated", sub: "guest", app_metadata: { wedding_ids: ["w1", 7] } },
  token: "guest"
})
const florist = Principal.make({
  claims: { role: "authenticated", sub: "florist", app_metadata: { supplier_ids: ["s1"] } },
  token: "florist"
})
const anon = Principal.fromApiKey("anon", "sb_publishable_x")
const service = Principal.fromApiKey("service_role", "sb_secret_x")

// [who, subtopic, private?, allowed?]
const table: ReadonlyArray<readonly [string, Principal.Principal, string, boolean, boolean]> = [
  ["guest", guest, "wedding:w1", true, true],
  ["guest", guest, "wedding:7", true, true],
  ["guest", guest, "wedding:w2", true, false],
  ["guest", guest, "wedding:", true, false],
  ["guest", guest, "wedding:w1:chat", true, false],
  ["guest", guest, "supplier:s1", true, false],
  ["guest", guest, "room1", true, false],
  ["florist", florist, "supplier:s1", true, true],
  ["florist", florist, "supplier:s2", true, false],
  ["florist", florist, "wedding:w1", true, false],
  ["anon", anon, "wedding:w1", true, false],
  ["anon", anon, "anything", true, false],
  ["service_role", service, "wedding:w1", true, true],
  ["service_role", service, "supplier:s9", true, true],
  ["service_role", service, "ops:anything", true, true],
  ["guest", guest, "wedding:w2", false, true],
  ["anon", anon, "room1", false, true],
  ["florist", florist, "lobby", false, true]
]

describe("ChannelPolicy.decide", () => {
  for (const [who, principal, subtopic, isPrivate, allowed] of table) {
    it(`${who} ${allowed ? "may" : "may not"} join ${isPrivate ? "private" : "public"} ${JSON.stringify(subtopic)}`, () => {
      assert.strictEqual(ChannelPolicy.decide(principal, subtopic, isPrivate), allowed)
    })
  }
})

layer(ChannelPolicy.ChannelPolicy.layer.pipe(Layer.provide(Memberships.Memberships.layerNoop)))(
  "ChannelPolicy.layer",
  (it) => {
    it.effect("admits what decide admits", () =>
      Effect.gen(function*() {
        const policy = yield* ChannelPolicy.ChannelPolicy
        yield* policy.authorizeJoin(guest, "wedding:w1", true)
        yield* policy.authorizeJoin(anon, "lobby", false)
        yield* policy.authorizeJoin(service, "wedding:any", true)
      }))

    it.effect("refuses with Supabase's Unauthorized reason naming the subtopic", () =>
      Effect.gen(function*() {
        const policy = yield* ChannelPolicy.ChannelPolicy
        const error = yield* Effect.flip(policy.authorizeJoin(guest, "wedding:w2", true))
        assert.strictEqual(error.code, "Unauthorized")
        assert.strictEqual(
          `${error.code}: ${error.message}`,
          "Unauthorized: You do not have permissions to read from this Channel topic: wedding:w2"
        )
      }))
  }
)

describe("ChannelPolicy expiry (TestClock)", () => {
  const expiring = Principal.make({
    claims: { role: "authenticated", sub: "guest", exp: 60, app_metadata: { wedding_ids: ["w1"] } },
    token: "expiring"
  })
  const authorize = (principal: Principal.Principal, subtopic: string, isPrivate: boolean) =>
    ChannelPolicy.ChannelPolicy.use((policy) => policy.authorizeJoin(principal, subtopic, isPrivate)).pipe(
      Effect.provide(ChannelPolicy.ChannelPolicy.layer.pipe(Layer.provide(Memberships.Memberships.layerNoop)))
    )

  it.effect("authorizes a principal before its exp and refuses it, public or private, from exp on", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("59 seconds")
      yield* authorize(expiring, "wedding:w1", true)
      yield* authorize(expiring, "lobby", false)
      yield* TestClock.adjust("1 second")
      for (const [subtopic, isPrivate] of [["wedding:w1", true], ["lobby", false]] as const) {
        const error = yield* Effect.flip(authorize(expiring, subtopic, isPrivate))
        assert.strictEqual(`${error.code}: ${error.message}`, "InvalidJWTToken: Token has expired 0 seconds ago")
      }
      // Opaque keys never expire.
      yield* authorize(service, "wedding:w1", true)
    }))
})

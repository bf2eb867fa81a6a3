import { assert, describe, it } from "@effect/vitest"
import { CacheConfig, CacheStore, InvalidationBus, LayeredCache } from "@wedsync/cache"
import { Context, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { ChannelPolicy, Memberships, Principal } from "../src/index.ts"

/** The membership table of a test: rows as `user|scope|id`, with a count of lookups (queries). */
const makeTable = (rows: ReadonlyArray<string> = []) => {
  const table = { rows: new Set(rows), lookups: 0, failing: false }
  const layer = Layer.succeed(Memberships.MembershipSource, {
    lookup: (grant) =>
      Effect.suspend(() => {
        table.lookups++
        if (table.failing) {
          return Effect.fail(
            new Memberships.MembershipError({
              reason: new Memberships.MembershipUnavailable({ message: "database down", cause: undefined })
            })
          )
        }
        return Effect.succeed(table.rows.has(`${grant.userId}|${grant.scope}|${grant.id}`))
      })
  })
  return { table, layer }
}

/** One process: its L1-only cache on `bus`, memberships over `source`, and the channel policy. */
const processLayer = (
  source: Layer.Layer<Memberships.MembershipSource>,
  bus: InvalidationBus.MemoryBus = new InvalidationBus.MemoryBus()
) => {
  const busLayer = InvalidationBus.InvalidationBus.layerMemoryShared(bus)
  const cache = LayeredCache.LayeredCache.layer.pipe(
    Layer.provide([CacheStore.CacheStore.layerNoop, busLayer, CacheConfig.CacheConfig.layer()])
  )
  const memberships = Memberships.Memberships.layer.pipe(Layer.provide([cache, busLayer, source]))
  return ChannelPolicy.ChannelPolicy.layer.pipe(Layer.provideMerge(memberships))
}

const user = (sub: string | undefined, weddingIds: ReadonlyArray<string> = []) =>
  Principal.make({
    claims: { role: "authenticated", ...(sub === undefined ? {} : { sub }), app_metadata: { wedding_ids: weddingIds } },
    token: `token-${sub}`
  })

const alice: Memberships.Grant = { userId: "alice", scope: "wedding", id: "w1" }

describe("Memberships", () => {
  it.effect("loads a decision once per (user, wedding) and answers the rest from the cache", () => {
    const { layer, table } = makeTable(["alice|wedding|w1"])
    return Effect.gen(function*() {
      const memberships = yield* Memberships.Memberships
      assert.strictEqual(memberships.peek(Memberships.keyOf(alice)), undefined)
      const answers = yield* Effect.all(Array.from({ length: 50 }, () => memberships.isMember(alice)), {
        concurrency: "unbounded"
      })
      assert.isTrue(answers.every((member) => member))
      assert.isFalse(yield* memberships.isMember({ ...alice, id: "w2" }))
      assert.isFalse(yield* memberships.isMember({ ...alice, scope: "supplier" }))
      assert.strictEqual(table.lookups, 3)
      assert.strictEqual(memberships.peek(Memberships.keyOf(alice)), true)
      assert.strictEqual(memberships.peek(Memberships.keyOf({ ...alice, id: "w2" })), false)
    }).pipe(Effect.provide(processLayer(layer)))
  })

  it.effect("an inserted row drops the cached no at once", () => {
    const { layer, table } = makeTable()
    return Effect.gen(function*() {
      const memberships = yield* Memberships.Memberships
      assert.isFalse(yield* memberships.isMember(alice))
      table.rows.add("alice|wedding|w1")
      assert.isFalse(yield* memberships.isMember(alice), "cached no until the insert is seen")
      yield* memberships.granted(alice)
      assert.isTrue(yield* memberships.isMember(alice))
      assert.strictEqual(table.lookups, 2)
    }).pipe(Effect.provide(processLayer(layer)))
  })

  it.effect("a deleted row drops the decision and tells the listeners", () => {
    const { layer, table } = makeTable(["alice|wedding|w1"])
    return Effect.gen(function*() {
      const memberships = yield* Memberships.Memberships
      const told: Array<Memberships.Grant> = []
      yield* memberships.onRevoke((grant) => told.push(grant))
      assert.isTrue(yield* memberships.isMember(alice))
      table.rows.delete("alice|wedding|w1")
      yield* memberships.revoked(alice)
      assert.deepStrictEqual(told, [alice])
      assert.strictEqual(memberships.peek(Memberships.keyOf(alice)), undefined)
      assert.isFalse(yield* memberships.isMember(alice))
    }).pipe(Effect.provide(processLayer(layer)))
  })

  it.effect("a failed lookup answers no without caching it", () => {
    const { layer, table } = makeTable(["alice|wedding|w1"])
    return Effect.gen(function*() {
      const memberships = yield* Memberships.Memberships
      table.failing = true
      assert.isFalse(yield* memberships.isMember(alice))
      table.failing = false
      assert.isTrue(yield* memberships.isMember(alice))
      assert.strictEqual(table.lookups, 2)
    }).pipe(Effect.provide(processLayer(layer)))
  })

  it.effect("a revocation on one process reaches the held decisions of another through the bus", () => {
    const { layer, table } = makeTable(["alice|wedding|w1", "bob|wedding|w1"])
    const bus = new InvalidationBus.MemoryBus()
    return Effect.gen(function*() {
      const a = Context.get(yield* Layer.build(processLayer(layer, bus)), Memberships.Memberships)
      const b = Context.get(yield* Layer.build(processLayer(layer, bus)), Memberships.Memberships)
      const told: Array<Memberships.Grant> = []
      yield* b.onRevoke((grant) => told.push(grant))
      // B holds both decisions through open channels.
      assert.isTrue(yield* b.isMember(alice))
      b.hold(alice)
      const bob: Memberships.Grant = { ...alice, userId: "bob" }
      assert.isTrue(yield* b.isMember(bob))
      b.hold(bob)
      table.rows.delete("alice|wedding|w1")
      yield* a.revoked(alice)
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(told, [alice], "only the decision B no longer has fresh is re-checked")
      assert.isFalse(yield* b.isMember(alice))
    }).pipe(Effect.scoped)
  })
})

describe("ChannelPolicy with a membership table", () => {
  it.effect("a table row admits a private wedding channel the token does not list; no row, no entry", () => {
    const { layer, table } = makeTable(["alice|wedding|w1"])
    return Effect.gen(function*() {
      const policy = yield* ChannelPolicy.ChannelPolicy
      yield* policy.authorizeJoin(user("alice"), "wedding:w1", true)
      const refused = yield* Effect.flip(policy.authorizeJoin(user("alice"), "wedding:w2", true))
      assert.strictEqual(refused.code, "Unauthorized")
      assert.strictEqual(table.lookups, 2)
      // Claims, public channels, other topics and tokens without `sub` never query.
      yield* policy.authorizeJoin(user("alice", ["w9"]), "wedding:w9", true)
      yield* policy.authorizeJoin(user("alice"), "lobby", false)
      assert.strictEqual((yield* Effect.flip(policy.authorizeJoin(user("alice"), "room:1", true))).code, "Unauthorized")
      assert.strictEqual(
        (yield* Effect.flip(policy.authorizeJoin(user(undefined), "wedding:w1", true))).code,
        "Unauthorized"
      )
      assert.strictEqual(table.lookups, 2)
    }).pipe(Effect.provide(processLayer(layer)))
  })

  it.effect("the decision is reused by later joins until the row is revoked", () => {
    const { layer, table } = makeTable(["alice|wedding|w1"])
    return Effect.gen(function*() {
      const policy = yield* ChannelPolicy.ChannelPolicy
      const memberships = yield* Memberships.Memberships
      for (let i = 0; i < 5; i++) yield* policy.authorizeJoin(user("alice"), "wedding:w1", true)
      assert.strictEqual(table.lookups, 1)
      table.rows.delete("alice|wedding|w1")
      yield* memberships.revoked(alice)
      const fiber = yield* Effect.forkChild(Effect.flip(policy.authorizeJoin(user("alice"), "wedding:w1", true)))
      assert.strictEqual((yield* Fiber.join(fiber)).code, "Unauthorized")
    }).pipe(Effect.provide(processLayer(layer)))
  })
})

import { assert, describe, it } from "@effect/vitest"
import { JoinConfig } from "../src/index.ts"

const defaults: JoinConfig.JoinConfig = {
  broadcastAck: false,
  broadcastSelf: false,
  presenceKey: undefined,
  presenceEnabled: false,
  isPrivate: false,
  postgresChanges: [],
  accessToken: undefined,
  invalidFields: [],
  replay: undefined,
  unknownEvents: []
}

const withPresenceKey = (key: unknown) => JoinConfig.parse({ config: { presence: { key, enabled: true } } })

describe("JoinConfig.parse", () => {
  it("minimal payload (spec §2.2) gives the defaults", () => {
    const config = JoinConfig.parse({
      config: {
        broadcast: { ack: false, self: false },
        presence: { key: "", enabled: false },
        postgres_changes: [],
        private: false
      }
    })
    assert.deepStrictEqual(config, defaults)
  })

  it("keeps a postgres_changes select only when it is a list of column names", () => {
    const parsed = JoinConfig.parse({
      config: {
        postgres_changes: [
          { event: "UPDATE", schema: "public", table: "orders", select: ["id", "status"] },
          { event: "UPDATE", schema: "public", table: "orders", select: ["id", 7] }
        ]
      }
    })
    assert.deepStrictEqual(parsed.postgresChanges.map((b) => b.select), [["id", "status"], undefined])
  })

  it("refuses unknown postgres_changes events instead of widening them to *; accepts the four known ones in any case", () => {
    const refused = JoinConfig.parse({
      config: {
        postgres_changes: [
          { event: "UPSERT", schema: "public", table: "orders" },
          { event: 5, schema: "public", table: "orders" },
          { event: "insert", schema: "public", table: "orders" }
        ]
      }
    })
    assert.deepStrictEqual(refused.unknownEvents, ['"UPSERT"', "5"])
    assert.deepStrictEqual(refused.postgresChanges.map((b) => b.event), ["insert"])
    const accepted = JoinConfig.parse({
      config: {
        postgres_changes: ["*", "INSERT", "UPDATE", "DELETE", undefined].map((event) => ({
          event,
          schema: "public",
          table: "orders"
        }))
      }
    })
    assert.deepStrictEqual(accepted.unknownEvents, [])
    assert.deepStrictEqual(accepted.postgresChanges.map((b) => b.event), ["*", "INSERT", "UPDATE", "DELETE", "*"])
  })

  it("empty payload, empty config and null sections give the defaults", () => {
    assert.deepStrictEqual(JoinConfig.parse({}), defaults)
    assert.deepStrictEqual(JoinConfig.parse({ config: {} }), defaults)
    assert.deepStrictEqual(
      JoinConfig.parse({ config: { broadcast: null, presence: null, postgres_changes: null } }),
      defaults
    )
  })

  it("full payload (spec §2.2)", () => {
    const insert = { event: "INSERT", schema: "public", table: "messages", filter: "room_id=eq.1" }
    const todos = { event: "*", schema: "public", table: "todos" }
    const config = JoinConfig.parse({
      config: {
        broadcast: { self: true, ack: true },
        presence: { key: "user-1", enabled: true },
        postgres_changes: [insert, todos],
        private: false
      }
    })
    assert.deepStrictEqual(config, {
      broadcastAck: true,
      broadcastSelf: true,
      presenceKey: "user-1",
      presenceEnabled: true,
      isPrivate: false,
      postgresChanges: [
        {
          raw: insert,
          event: "INSERT",
          schema: "public",
          table: "messages",
          filter: "room_id=eq.1",
          select: undefined
        },
        { raw: todos, event: "*", schema: "public", table: "todos", filter: undefined, select: undefined }
      ],
      accessToken: undefined,
      invalidFields: [],
      replay: undefined,
      unknownEvents: []
    })
  })

  it("newer options: private channel, replay, postgres_changes_options; unknown keys ignored", () => {
    const config = JoinConfig.parse({
      config: {
        broadcast: { replay: { since: 1700000000000, limit: 10 }, replication_ready: true },
        presence: { key: "u1", enabled: true },
        postgres_changes: [{
          event: "UPDATE",
          schema: "public",
          table: "orders",
          filter: "id=eq.42",
          select: ["id", "status"]
        }],
        private: true,
        postgres_changes_options: { wait: true, timeout: 5000 }
      },
      access_token: "<jwt>",
      something_new: 1
    })
    assert.isTrue(config.isPrivate)
    assert.isFalse(config.broadcastAck)
    assert.isFalse(config.broadcastSelf)
    assert.strictEqual(config.presenceKey, "u1")
    assert.strictEqual(config.accessToken, "<jwt>")
    assert.deepStrictEqual(config.invalidFields, [])
    assert.deepStrictEqual(config.replay, { since: 1700000000000, limit: 10 })
  })

  describe("broadcast.replay", () => {
    const replayOf = (replay: unknown) => JoinConfig.parse({ config: { broadcast: { replay }, private: true } }).replay
    it("valid: since an integer, limit an integer >= 1; a missing or null limit is 25; a larger one is clamped", () => {
      assert.deepStrictEqual(replayOf({ since: 0, limit: 1 }), { since: 0, limit: 1 })
      assert.deepStrictEqual(replayOf({ since: 1700000000000 }), { since: 1700000000000, limit: 25 })
      assert.deepStrictEqual(replayOf({ since: 5, limit: null }), { since: 5, limit: 25 })
      assert.deepStrictEqual(replayOf({ since: 5, limit: 10_000_000 }), {
        since: 5,
        limit: JoinConfig.MAX_REPLAY_LIMIT
      })
    })
    it("absent or null: no replay", () => {
      assert.isUndefined(replayOf(undefined))
      assert.isUndefined(replayOf(null))
    })
    for (
      const replay of [
        {},
        { limit: 5 },
        { since: "1700000000000" },
        { since: 1.5 },
        { since: -1 },
        { since: 5, limit: 0 },
        { since: 5, limit: -3 },
        { since: 5, limit: 2.5 },
        { since: 5, limit: "10" },
        [],
        "yesterday",
        7
      ]
    ) {
      it(`invalid: ${JSON.stringify(replay)}`, () => assert.strictEqual(replayOf(replay), "invalid"))
    }
  })

  describe("private", () => {
    for (
      const [value, expected] of [["TRUE", true], ["true", true], ["True", true], ["false", false], ["FALSE", false], [
        true,
        true
      ], [false, false]] as const
    ) {
      it(`${JSON.stringify(value)} → ${expected}`, () => {
        const config = JoinConfig.parse({ config: { private: value } })
        assert.strictEqual(config.isPrivate, expected)
        assert.deepStrictEqual(config.invalidFields, [])
      })
    }

    it("other strings are invalid and fall back to false", () => {
      const config = JoinConfig.parse({ config: { private: "yes" } })
      assert.isFalse(config.isPrivate)
      assert.deepStrictEqual(config.invalidFields, ["config.private"])
    })
  })

  it("string booleans are accepted for broadcast and presence flags too", () => {
    const config = JoinConfig.parse({
      config: { broadcast: { ack: "TRUE", self: "true" }, presence: { enabled: "True" } }
    })
    assert.isTrue(config.broadcastAck)
    assert.isTrue(config.broadcastSelf)
    assert.isTrue(config.presenceEnabled)
    assert.deepStrictEqual(config.invalidFields, [])
  })

  it("bad field types fall back to defaults and are listed in invalidFields", () => {
    const config = JoinConfig.parse({
      config: {
        broadcast: { ack: 1, self: "nope" },
        presence: { key: "k", enabled: [] },
        postgres_changes: "all",
        private: 0
      }
    })
    assert.deepStrictEqual({ ...config, invalidFields: [] }, { ...defaults, presenceKey: "k" })
    assert.sameMembers(
      [...config.invalidFields],
      [
        "config.broadcast.ack",
        "config.broadcast.self",
        "config.presence.enabled",
        "config.postgres_changes",
        "config.private"
      ]
    )
  })

  it("bad section types fall back and are listed", () => {
    const config = JoinConfig.parse({
      config: { broadcast: "yes", presence: [1], postgres_changes: [{ event: "*" }, 3, null] }
    })
    assert.isFalse(config.broadcastAck)
    assert.isFalse(config.presenceEnabled)
    assert.lengthOf(config.postgresChanges, 1)
    assert.includeMembers([...config.invalidFields], ["config.broadcast", "config.presence", "config.postgres_changes"])
  })

  it("a non-object payload or config is listed and gives the defaults", () => {
    assert.deepStrictEqual(JoinConfig.parse("hello"), { ...defaults, invalidFields: ["payload"] })
    assert.deepStrictEqual(JoinConfig.parse(null), { ...defaults, invalidFields: ["payload"] })
    assert.deepStrictEqual(JoinConfig.parse([{ config: {} }]), { ...defaults, invalidFields: ["payload"] })
    assert.deepStrictEqual(JoinConfig.parse({ config: 5 }), { ...defaults, invalidFields: ["config"] })
  })

  describe("presence key", () => {
    it(`"" → undefined (the server generates one per join)`, () => {
      assert.isUndefined(withPresenceKey("").presenceKey)
      assert.isUndefined(withPresenceKey(null).presenceKey)
      assert.isUndefined(JoinConfig.parse({ config: { presence: { enabled: true } } }).presenceKey)
      assert.deepStrictEqual(withPresenceKey("").invalidFields, [])
    })

    it("non-string keys are stringified", () => {
      assert.strictEqual(withPresenceKey(42).presenceKey, "42")
      assert.strictEqual(withPresenceKey(0).presenceKey, "0")
      assert.strictEqual(withPresenceKey(true).presenceKey, "true")
      assert.strictEqual(withPresenceKey({ id: 1 }).presenceKey, `{"id":1}`)
      assert.strictEqual(withPresenceKey([1, "a"]).presenceKey, `[1,"a"]`)
      assert.deepStrictEqual(withPresenceKey(42).invalidFields, [])
    })

    it("a key JSON cannot carry is listed and left to the server", () => {
      const cyclic: Record<string, unknown> = {}
      cyclic["self"] = cyclic
      const config = withPresenceKey(cyclic)
      assert.isUndefined(config.presenceKey)
      assert.deepStrictEqual(config.invalidFields, ["config.presence.key"])
    })
  })

  it("postgres_changes raw objects are preserved, in order, with defaults for missing fields", () => {
    const entries = [
      {
        event: "UPDATE",
        schema: "public",
        table: "orders",
        filter: 'id=eq.42,status=in.(new,"a,b")',
        select: ["id", "status"]
      },
      { event: "INSERT", schema: "public", table: "messages" },
      { table: "todos" },
      { event: "*", schema: "audit", extra: { nested: true } }
    ]
    const config = JoinConfig.parse({ config: { postgres_changes: entries } })
    assert.strictEqual(config.postgresChanges.length, entries.length)
    config.postgresChanges.forEach((binding, i) => assert.strictEqual(binding.raw, entries[i]))
    assert.deepStrictEqual(
      config.postgresChanges.map(({ event, schema, table, filter }) => ({ event, schema, table, filter })),
      [
        { event: "UPDATE", schema: "public", table: "orders", filter: 'id=eq.42,status=in.(new,"a,b")' },
        { event: "INSERT", schema: "public", table: "messages", filter: undefined },
        { event: "*", schema: "public", table: "todos", filter: undefined },
        { event: "*", schema: "audit", table: undefined, filter: undefined }
      ]
    )
  })

  describe("access_token vs user_token", () => {
    it("access_token is read", () => {
      assert.strictEqual(JoinConfig.parse({ access_token: "a.b.c" }).accessToken, "a.b.c")
    })

    it("user_token is the legacy alias", () => {
      assert.strictEqual(JoinConfig.parse({ user_token: "u.v.w" }).accessToken, "u.v.w")
    })

    it("access_token wins over user_token", () => {
      assert.strictEqual(JoinConfig.parse({ access_token: "a.b.c", user_token: "u.v.w" }).accessToken, "a.b.c")
    })

    it("a null access_token falls through to user_token", () => {
      assert.strictEqual(JoinConfig.parse({ access_token: null, user_token: "u.v.w" }).accessToken, "u.v.w")
    })

    it("empty or missing tokens give undefined", () => {
      assert.isUndefined(JoinConfig.parse({ access_token: "" }).accessToken)
      assert.isUndefined(JoinConfig.parse({}).accessToken)
    })

    it("a non-string token is ignored and listed", () => {
      const config = JoinConfig.parse({ access_token: 123 })
      assert.isUndefined(config.accessToken)
      assert.deepStrictEqual(config.invalidFields, ["access_token"])
    })

    it("sb_ keys are passed through: choosing the connect token instead is the caller's job", () => {
      assert.strictEqual(JoinConfig.parse({ access_token: "sb_publishable_x" }).accessToken, "sb_publishable_x")
    })
  })
})

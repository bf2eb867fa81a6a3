import { assert, describe, it } from "@effect/vitest"
import { Services } from "../src/index.ts"

describe("Services", () => {
  it("uniquePrefix is t:<label>:<pid>:<random>: and differs per call", () => {
    const a = Services.uniquePrefix("broker")
    const b = Services.uniquePrefix("broker")
    assert.match(a, new RegExp(`^t:broker:${process.pid}:[0-9a-f]{8}:$`))
    assert.notStrictEqual(a, b)
  })

  it("uniqueSqlName is a lowercase identifier of at most 63 characters", () => {
    for (const label of ["changes", "Wal Slot-Test/äö", "x".repeat(200), "", "__", "9lives"]) {
      const name = Services.uniqueSqlName(label)
      assert.match(name, /^t_[a-z0-9_]+$/, name)
      assert.isAtMost(name.length, Services.maxSqlNameLength, name)
      assert.notInclude(name, "__", name)
      assert.include(name, `_${process.pid}_`)
    }
    assert.match(Services.uniqueSqlName("Wal Slot-Test"), new RegExp(`^t_wal_slot_test_${process.pid}_[0-9a-f]{8}$`))
    assert.notStrictEqual(Services.uniqueSqlName("a"), Services.uniqueSqlName("a"))
  })

  it("service URLs come from the environment, with loopback defaults", () => {
    const saved = { redis: process.env["REDIS_URL"], db: process.env["DATABASE_URL"] }
    try {
      delete process.env["REDIS_URL"]
      delete process.env["DATABASE_URL"]
      assert.strictEqual(Services.redisUrl(), "redis://127.0.0.1:6379")
      assert.strictEqual(Services.databaseUrl(), "postgres://postgres@127.0.0.1:5432/postgres")
      process.env["REDIS_URL"] = "redis://10.0.0.1:7000"
      assert.strictEqual(Services.redisUrl(), "redis://10.0.0.1:7000")
    } finally {
      if (saved.redis === undefined) delete process.env["REDIS_URL"]
      else process.env["REDIS_URL"] = saved.redis
      if (saved.db === undefined) delete process.env["DATABASE_URL"]
      else process.env["DATABASE_URL"] = saved.db
    }
  })
})

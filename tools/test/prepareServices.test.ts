import { assert, describe } from "@effect/vitest"
import { test } from "vitest"
import { isLoopback, parseRedisReply, redact, redisPingCommands } from "../src/prepareServices.ts"

describe("prepareServices helpers", () => {
  test("pings Redis in RESP, authenticating first when the URL has credentials", () => {
    assert.strictEqual(redisPingCommands(new URL("redis://127.0.0.1:6379")), "*1\r\n$4\r\nPING\r\n")
    assert.strictEqual(
      redisPingCommands(new URL("redis://:s3cret@127.0.0.1:6379")),
      "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n"
    )
    assert.include(redisPingCommands(new URL("redis://u:p@h:1")), "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n")
  })

  test("reads PONG, errors and partial replies", () => {
    assert.deepStrictEqual(parseRedisReply("+PONG\r\n"), { ok: true })
    assert.deepStrictEqual(parseRedisReply("+OK\r\n+PONG\r\n"), { ok: true })
    assert.deepStrictEqual(parseRedisReply("-NOAUTH Authentication required.\r\n"), {
      ok: false,
      error: "NOAUTH Authentication required."
    })
    const partial = parseRedisReply("+PO")
    assert.isFalse(partial.ok)
    assert.match(partial.ok ? "" : partial.error, /^unexpected/)
  })

  test("only loopback hosts are started locally; passwords are not printed", () => {
    assert.strictEqual(isLoopback("127.0.0.1"), true)
    assert.strictEqual(isLoopback("localhost"), true)
    assert.strictEqual(isLoopback("[::1]"), true)
    assert.strictEqual(isLoopback("redis.internal"), false)
    assert.strictEqual(redact("postgres://app:hunter2@db:5432/x"), "postgres://app:***@db:5432/x")
    assert.strictEqual(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379")
  })
})

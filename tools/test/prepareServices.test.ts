import { describe, expect, test } from "vitest"
import { isLoopback, parseRedisReply, redact, redisPingCommands } from "../src/prepareServices.ts"

describe("prepareServices helpers", () => {
  test("pings Redis in RESP, authenticating first when the URL has credentials", () => {
    expect(redisPingCommands(new URL("redis://127.0.0.1:6379"))).toBe("*1\r\n$4\r\nPING\r\n")
    expect(redisPingCommands(new URL("redis://:s3cret@127.0.0.1:6379"))).toBe(
      "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n"
    )
    expect(redisPingCommands(new URL("redis://u:p@h:1"))).toContain("*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n")
  })

  test("reads PONG, errors and partial replies", () => {
    expect(parseRedisReply("+PONG\r\n")).toEqual({ ok: true })
    expect(parseRedisReply("+OK\r\n+PONG\r\n")).toEqual({ ok: true })
    expect(parseRedisReply("-NOAUTH Authentication required.\r\n")).toEqual({ ok: false, error: "NOAUTH Authentication required." })
    expect(parseRedisReply("+PO")).toMatchObject({ ok: false, error: expect.stringMatching(/^unexpected/) })
  })

  test("only loopback hosts are started locally; passwords are not printed", () => {
    expect(isLoopback("127.0.0.1")).toBe(true)
    expect(isLoopback("localhost")).toBe(true)
    expect(isLoopback("[::1]")).toBe(true)
    expect(isLoopback("redis.internal")).toBe(false)
    expect(redact("postgres://app:hunter2@db:5432/x")).toBe("postgres://app:***@db:5432/x")
    expect(redact("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379")
  })
})

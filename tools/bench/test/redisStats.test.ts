import { assert, describe, it } from "@effect/vitest"
import { startRedisServer } from "../src/redisServer.ts"
import {
  encodeCommand,
  parseInfo,
  parseReply,
  perMessage,
  readRedisStats,
  redisCost,
  sendCommands
} from "../src/redisStats.ts"

describe("RESP", () => {
  it("encodes a command as an array of bulk strings (UTF-8 lengths)", () => {
    assert.strictEqual(encodeCommand(["INFO", "cpu"]).toString(), "*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n")
    assert.strictEqual(encodeCommand(["é"]).toString(), "*1\r\n$2\r\né\r\n")
  })

  it("parses simple, error and bulk replies, and waits for a bulk string's end", () => {
    assert.deepStrictEqual(parseReply(Buffer.from("+OK\r\n")), { done: true, value: "OK", error: false })
    assert.deepStrictEqual(parseReply(Buffer.from("-ERR no\r\n")), { done: true, value: "ERR no", error: true })
    assert.deepStrictEqual(parseReply(Buffer.from("$5\r\nhel")), { done: false })
    assert.deepStrictEqual(parseReply(Buffer.from("$5\r\nhello\r\n")), { done: true, value: "hello", error: false })
  })
})

describe("parseInfo and redisCost", () => {
  const info = (spublish: number, xadd: number, cpu: number) =>
    [
      "# CPU",
      `used_cpu_sys:${cpu}`,
      "used_cpu_user:1.000000",
      "# Commandstats",
      `cmdstat_spublish:calls=${spublish},usec=10,usec_per_call=1.00,rejected_calls=0,failed_calls=0`,
      `cmdstat_xadd:calls=${xadd},usec=10,usec_per_call=1.00,rejected_calls=0,failed_calls=0`,
      "cmdstat_info:calls=7,usec=10,usec_per_call=1.00,rejected_calls=0,failed_calls=0",
      ""
    ].join("\r\n")

  it("takes the difference per command and of the CPU, leaving out the readings' own INFO", () => {
    const before = parseInfo(info(100, 50, 2))
    const after = parseInfo(info(300, 150, 2.5).replace("info:calls=7", "info:calls=8"))
    const cost = redisCost(before, after)
    assert.deepStrictEqual(cost.calls, [["spublish", 200], ["xadd", 100]])
    assert.strictEqual(cost.totalCalls, 300)
    assert.closeTo(cost.cpuSeconds, 0.5, 1e-9)
    assert.strictEqual(perMessage(cost, 100), "3.00 (spublish 2.00, xadd 1.00)")
  })
})

describe("readRedisStats on a real redis-server", () => {
  it("counts exactly the commands sent between two readings", async () => {
    const redis = await startRedisServer()
    try {
      const before = await readRedisStats(redis.url)
      await sendCommands(redis.url, [["PING"], ["PING"], ["PING"], ["SET", "k", "v"]])
      const after = await readRedisStats(redis.url)
      assert.deepStrictEqual(redisCost(before, after).calls, [["ping", 3], ["set", 1]])
      // Nothing in between: the readings themselves do not count.
      const again = await readRedisStats(redis.url)
      assert.deepStrictEqual(redisCost(after, again).calls, [])
    } finally {
      await redis.stop()
    }
  })

  it("fails with Redis's own message when a command is refused", async () => {
    const redis = await startRedisServer()
    try {
      const refused = await sendCommands(redis.url, [["NOSUCHCOMMAND"]]).then(() => "", (e: Error) => e.message)
      assert.match(refused, /refused NOSUCHCOMMAND: ERR unknown command/)
      assert.strictEqual(await sendCommands(redis.url, [["PING"]]), "PONG")
    } finally {
      await redis.stop()
    }
  })
})

import { assert, describe, it } from "@effect/vitest"
import { parseOptions } from "../src/cli.ts"
import { DeliveryCollector } from "../src/collector.ts"
import { parseMultiTopicOptions, processOf } from "../src/multiTopicBench.ts"
import { parseScaleOut, perProcessLine, redacted, redisEnv } from "../src/scaleOut.ts"

describe("parseScaleOut", () => {
  it("takes one process without Redis, or any number with a Redis URL or spawn", () => {
    assert.deepStrictEqual(parseScaleOut("1", undefined), { processes: 1, redis: undefined })
    assert.deepStrictEqual(parseScaleOut("2", "spawn"), { processes: 2, redis: "spawn" })
    assert.deepStrictEqual(parseScaleOut("1", "redis://127.0.0.1:6379"), {
      processes: 1,
      redis: "redis://127.0.0.1:6379"
    })
  })

  it("refuses several processes without Redis, other schemes and bad counts", () => {
    assert.throws(() => parseScaleOut("2", undefined), /needs --redis/)
    assert.throws(() => parseScaleOut("2", "http://127.0.0.1:6379"), /redis:\/\//)
    assert.throws(() => parseScaleOut("0", "spawn"), /whole number/)
    assert.throws(() => parseScaleOut("1.5", "spawn"), /whole number/)
  })

  it("is part of both benches' options; the main bench keeps it to the gateway target", () => {
    assert.deepStrictEqual(parseMultiTopicOptions(["--processes", "2", "--redis", "spawn"]).scale, {
      processes: 2,
      redis: "spawn"
    })
    assert.throws(() => parseOptions(["--processes", "2", "--redis", "spawn"]), /--targets gateway/)
    assert.strictEqual(
      parseOptions(["--processes", "2", "--redis", "spawn", "--targets", "gateway"]).scale.processes,
      2
    )
  })
})

describe("redisEnv", () => {
  it("gives every process of a run the same prefix and cache key, and another run other ones", () => {
    const a = redisEnv("redis://127.0.0.1:6379")
    const b = redisEnv("redis://127.0.0.1:6379")
    assert.strictEqual(a["REDIS_URL"], "redis://127.0.0.1:6379")
    assert.match(a["REDIS_PREFIX"] ?? "", /^bench-\d+-[0-9a-f]{8}:$/)
    assert.notStrictEqual(a["REDIS_PREFIX"], b["REDIS_PREFIX"])
    assert.lengthOf(a["CACHE_HMAC_KEY"] ?? "", 64)
  })

  it("never shows a password in reports", () => {
    assert.strictEqual(redacted("redis://user:secret@host:6379/1"), "redis://user:***@host:6379/1")
    assert.strictEqual(redacted("redis://host:6379"), "redis://host:6379")
  })
})

describe("processOf", () => {
  it("puts subscribers of every topic on every process", () => {
    const topics = 4
    const seen = Array.from({ length: topics }, () => new Set<number>())
    for (let i = 0; i < 16; i++) seen[i % topics]!.add(processOf(i, topics, 2))
    for (const processes of seen) assert.deepStrictEqual([...processes].sort(), [0, 1])
  })
})

describe("perProcessLine", () => {
  it("says plainly when a process other than the publishers' received nothing", () => {
    const line = perProcessLine([1000, 0], [1000, 1000])
    assert.include(line, "process 1: 1,000 of 1,000; process 2: 0 of 1,000")
    assert.include(line, "process 2 received nothing")
  })

  it("has no diagnosis when every process received", () => {
    assert.strictEqual(perProcessLine([1000, 999], [1000, 1000]), "process 1: 1,000 of 1,000; process 2: 999 of 1,000")
  })
})

describe("DeliveryCollector.eventsOf", () => {
  it("counts in-window deliveries per process as well as in total", () => {
    const collector = new DeliveryCollector()
    const p1 = collector.eventsOf(0)
    const p2 = collector.eventsOf(1)
    collector.startWindow(10)
    p1.onDelivery(Date.now(), 9) // before the window
    p1.onDelivery(Date.now(), 10)
    p2.onDelivery(Date.now(), 11)
    p2.onDelivery(Date.now(), 12)
    assert.deepStrictEqual(collector.receivedByProcess, [1, 2])
    assert.strictEqual(collector.received, 3)
    collector.startWindow(20)
    assert.deepStrictEqual(collector.receivedByProcess, [0, 0])
  })
})

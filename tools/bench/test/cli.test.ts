import { assert, describe, it } from "@effect/vitest"
import { parseOptions } from "../src/cli.ts"

describe("parseOptions", () => {
  it("defaults to every scenario and target with the documented sizes", () => {
    const o = parseOptions([])
    assert.deepStrictEqual(o.scenarios, ["idle", "fanout", "saturate"])
    assert.deepStrictEqual(o.targets, ["gateway", "ws-relay", "socketio"])
    assert.strictEqual(o.idleConnections, 10_000)
    assert.strictEqual(o.subscribers, 5_000)
    assert.strictEqual(o.rate, 8)
    assert.strictEqual(o.durationS, 10)
    assert.strictEqual(o.client, "lean")
    assert.isTrue(o.pin)
    assert.isFalse(o.write)
  })

  it("reads lists and flags", () => {
    const o = parseOptions([
      "--scenario",
      "fanout,idle",
      "--targets",
      "ws-relay",
      "--no-pin",
      "--write",
      "--rate",
      "2.5"
    ])
    assert.deepStrictEqual(o.scenarios, ["fanout", "idle"])
    assert.deepStrictEqual(o.targets, ["ws-relay"])
    assert.isFalse(o.pin)
    assert.isTrue(o.write)
    assert.strictEqual(o.rate, 2.5)
  })

  it("rejects unknown names and bad numbers", () => {
    assert.throws(() => parseOptions(["--targets", "nats"]), /unknown target/)
    assert.throws(() => parseOptions(["--subscribers=-3"]), /positive/)
    assert.throws(() => parseOptions(["--client", "fast"]), /--client/)
    assert.throws(() => parseOptions(["--step-factor", "1"]), /greater than 1/)
    assert.throws(() => parseOptions(["stray"]))
  })
})

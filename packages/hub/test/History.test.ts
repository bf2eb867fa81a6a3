/**
 * The memory history: the contract suite, and the id and meta helpers every history shares.
 */
import { assert, describe, it } from "@effect/vitest"
import { History, Publication } from "../src/index.ts"
import { HistorySuite } from "../src/testing/index.ts"

HistorySuite("memory", (options) => History.History.layerMemory(options))

describe("History ids and meta", () => {
  it("a UUIDv7 carries its milliseconds, and later ids sort after earlier ones", () => {
    const early = History.makeId(1_700_000_000_000)
    const late = History.makeId(1_700_000_000_001)
    assert.match(early, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.strictEqual(History.timeOf(early), 1_700_000_000_000)
    assert.isTrue(early < late)
    assert.isNaN(History.timeOf("not-an-id"))
  })

  it("withMeta puts the meta last in a JSON broadcast and idOf reads the id back", () => {
    const id = History.makeId(5)
    const text = Publication.json("realtime:a", true, "broadcast", '{"type":"broadcast","event":"e","meta":{"id":"x"}}')
    const stamped = History.withMeta(text, History.liveMeta(id))
    const body = stamped.body._tag === "Json" ? stamped.body.json : ""
    assert.deepStrictEqual((JSON.parse(body) as { readonly meta: unknown }).meta, { id })
    assert.strictEqual(History.idOf(stamped), id)
    const empty = History.withMeta(Publication.json("realtime:a", true, "broadcast", "{}"), History.replayedMeta(id))
    assert.deepStrictEqual(empty.body, { _tag: "Json", json: `{"meta":{"replayed":true,"id":"${id}"}}` })
    assert.strictEqual(History.idOf(text), undefined)
  })
})

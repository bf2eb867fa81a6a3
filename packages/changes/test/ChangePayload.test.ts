import { assert, describe, it } from "@effect/vitest"
import type { ChangeEvent } from "../src/ChangeEvent.ts"
import * as ChangePayload from "../src/ChangePayload.ts"

const base = {
  schema: "public",
  table: "timeline_items",
  commitTimestamp: "2026-06-13T12:00:00.123Z",
  columns: [{ name: "id", type: "int8" }, { name: "wedding_id", type: "text" }, { name: "title", type: "text" }],
  primaryKey: ["id"]
} as const

const insert: ChangeEvent = {
  ...base,
  action: "INSERT",
  record: { id: 1, wedding_id: "w-1", title: "Vows" },
  oldRecord: undefined
}
const update: ChangeEvent = {
  ...base,
  action: "UPDATE",
  record: { id: 1, wedding_id: "w-1", title: "Rings" },
  oldRecord: { id: 1, wedding_id: "w-1", title: "Vows" }
}
const remove: ChangeEvent = {
  ...base,
  action: "DELETE",
  record: undefined,
  oldRecord: { id: 1, wedding_id: "w-1", title: "Rings" }
}
const full = { variant: "full", select: undefined } as const

describe("ChangePayload", () => {
  it("has Supabase's keys, in order, per action", () => {
    const head = ["schema", "table", "commit_timestamp", "type", "columns"]
    const expected: ReadonlyArray<readonly [ChangeEvent, ReadonlyArray<string>]> = [
      [insert, [...head, "record", "errors"]],
      [update, [...head, "record", "old_record", "errors"]],
      [remove, [...head, "old_record", "errors"]]
    ]
    for (const [event, keys] of expected) {
      assert.deepStrictEqual(Object.keys(ChangePayload.data(event, full)), keys, event.action)
    }
    const data = ChangePayload.data(insert, full)
    assert.containSubset(data, { type: "INSERT", errors: null, record: insert.record })
    assert.deepStrictEqual(data.columns, base.columns)
  })

  it("gives restricted subscribers a DELETE with the primary key only, and full subscribers the whole old row", () => {
    assert.deepStrictEqual(ChangePayload.data(remove, { variant: "restricted", select: undefined })["old_record"], {
      id: 1
    })
    assert.deepStrictEqual(ChangePayload.data(remove, full)["old_record"], remove.oldRecord)
    assert.deepStrictEqual(
      ChangePayload.data(update, { variant: "restricted", select: undefined })["record"],
      update.record
    )
  })

  it("limits columns and records to a select plus the primary key", () => {
    const selected = ChangePayload.data(update, { variant: "full", select: ["title"] })
    assert.deepStrictEqual(selected["columns"], [{ name: "id", type: "int8" }, { name: "title", type: "text" }])
    assert.deepStrictEqual(selected["record"], { id: 1, title: "Rings" })
    assert.deepStrictEqual(selected["old_record"], { id: 1, title: "Vows" })
  })

  it("wraps encoded data with ids exactly as JSON.stringify would", () => {
    const data = ChangePayload.dataJson(insert, full)
    assert.strictEqual(
      ChangePayload.frameJson([30934519, 7], data),
      JSON.stringify({ ids: [30934519, 7], data: ChangePayload.data(insert, full) })
    )
  })

  it("keeps columns named after Object.prototype members as plain keys of records and old records", () => {
    const record: Record<string, unknown> = Object.create(null)
    record["id"] = 1
    record["__proto__"] = "p"
    record["constructor"] = "c"
    const hostile: ChangeEvent = {
      ...base,
      columns: [{ name: "id", type: "int8" }, { name: "__proto__", type: "text" }, {
        name: "constructor",
        type: "text"
      }],
      action: "UPDATE",
      record,
      oldRecord: record
    }
    const json = ChangePayload.dataJson(hostile, full)
    assert.include(json, `"record":{"id":1,"__proto__":"p","constructor":"c"}`)
    assert.include(json, `"old_record":{"id":1,"__proto__":"p","constructor":"c"}`)
    const selected = ChangePayload.dataJson(hostile, { variant: "full", select: ["__proto__"] })
    assert.include(selected, `"record":{"id":1,"__proto__":"p"}`)
    // Beside it, an ordinary record is unchanged.
    assert.include(ChangePayload.dataJson(update, full), `"record":{"id":1,"wedding_id":"w-1","title":"Rings"}`)
  })
})

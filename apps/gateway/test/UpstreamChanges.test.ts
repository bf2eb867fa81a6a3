/** What a local subscriber sees of an upstream change: the gateway's row policy over the upstream's whole rows. */
import { RowPolicy } from "@wedsync/changes"
import type { ChangeFeed } from "@wedsync/hub"
import { assert, describe, it } from "@effect/vitest"
import { render, variantOf } from "../src/UpstreamChanges.ts"

const access = (role: string, weddings: ReadonlyArray<string> = []): ChangeFeed.Access => ({
  role,
  weddingIds: new Set(weddings),
  supplierIds: new Set()
})
const columns = [{ name: "id", type: "int4" }, { name: "wedding_id", type: "text" }, { name: "title", type: "text" }]
const base = { schema: "public", table: "timeline_items", commit_timestamp: "2026-12-05T10:00:00.000Z", errors: null }
const insert = (wedding: string) => ({
  ...base,
  type: "INSERT" as const,
  columns,
  record: { id: 1, wedding_id: wedding, title: "vows" }
})
const all = { select: undefined }
/** A record of the rendered data, compared by its own keys (rendered records have no prototype). */
const recordOf = (data: Record<string, unknown>, field: string): Record<string, unknown> => ({
  ...(data[field] as Record<string, unknown>)
})
const policy = () => {
  const p = new RowPolicy.RowPolicy("service_role")
  p.setNow(Date.now())
  return p
}

describe("UpstreamChanges", () => {
  it("gives a member its wedding's rows and nothing of another wedding; service_role everything", () => {
    assert.strictEqual(variantOf(insert("w-1"), access("authenticated", ["w-1"]), policy()), "restricted")
    assert.strictEqual(variantOf(insert("w-2"), access("authenticated", ["w-1"]), policy()), undefined)
    assert.strictEqual(variantOf(insert("w-2"), access("service_role"), policy()), "full")
  })

  it("shows a row moved in from another wedding without its old image, and a DELETE by its key only", () => {
    const moved = {
      ...base,
      type: "UPDATE" as const,
      columns,
      record: { id: 1, wedding_id: "w-1", title: "vows" },
      old_record: { id: 1, wedding_id: "w-2", title: "secret" }
    }
    const member = access("authenticated", ["w-1"])
    assert.strictEqual(variantOf(moved, member, policy()), "restricted-moved")
    assert.deepStrictEqual(recordOf(render(moved, all, "restricted-moved"), "old_record"), { id: 1 })
    // The same update within one wedding keeps its old image.
    const inPlace = { ...moved, old_record: { id: 1, wedding_id: "w-1", title: "old vows" } }
    assert.strictEqual(variantOf(inPlace, member, policy()), "restricted")
    assert.deepStrictEqual(recordOf(render(inPlace, all, "restricted"), "old_record"), inPlace.old_record)

    const deleted = { ...base, type: "DELETE" as const, columns, old_record: { id: 1, wedding_id: "w-1", title: "x" } }
    assert.deepStrictEqual(recordOf(render(deleted, all, "restricted"), "old_record"), { id: 1 })
    assert.deepStrictEqual(recordOf(render(deleted, all, "full"), "old_record"), deleted.old_record)
  })

  it("applies a binding's select (plus id) to the columns and records", () => {
    const data = render(insert("w-1"), { select: ["title"] }, "restricted")
    assert.deepStrictEqual(recordOf(data, "record"), { id: 1, title: "vows" })
    assert.deepStrictEqual((data["columns"] as Array<{ name: string }>).map((c) => c.name), ["id", "title"])
  })

  it("keeps unscoped tables to the UNSCOPED_TABLES audience", () => {
    const note = {
      ...base,
      table: "notes",
      type: "INSERT" as const,
      columns: [{ name: "id", type: "int4" }],
      record: { id: 1 }
    }
    assert.strictEqual(variantOf(note, access("authenticated"), policy()), undefined)
    const open = new RowPolicy.RowPolicy("authenticated")
    open.setNow(Date.now())
    assert.strictEqual(variantOf(note, access("authenticated"), open), "restricted")
  })
})

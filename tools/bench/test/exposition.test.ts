import { assert, describe, it } from "@effect/vitest"
import { sumSeries } from "../src/exposition.ts"

const exposition = [
  "# HELP c_total a counter",
  "# TYPE c_total counter",
  'c_total{tier="l1"} 3',
  'c_total{tier="l2"} 4',
  "g 7",
  "g_other 100"
].join("\n")

describe("sumSeries", () => {
  it("sums every series of a name, labelled or not, narrowed by a label text", () => {
    assert.strictEqual(sumSeries(exposition, "c_total"), 7)
    assert.strictEqual(sumSeries(exposition, "c_total", 'tier="l2"'), 4)
    assert.strictEqual(sumSeries(exposition, "g"), 7)
  })

  it("is undefined for a name the process does not export, not 0 (nor a longer name's value)", () => {
    assert.isUndefined(sumSeries(exposition, "missing_total"))
    assert.isUndefined(sumSeries(exposition, "c_total", 'tier="l3"'))
    assert.isUndefined(sumSeries(exposition, "g_oth"))
  })
})

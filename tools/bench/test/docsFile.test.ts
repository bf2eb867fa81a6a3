import { assert, describe, it } from "@effect/vitest"
import { BEGIN, END, replaceSection } from "../src/docsFile.ts"

describe("replaceSection", () => {
  it("appends a marked section to a document without one", () => {
    const out = replaceSection("# Benchmarks\n\nMethod.\n", "## Results\n")
    assert.strictEqual(out, `# Benchmarks\n\nMethod.\n\n${BEGIN}\n\n## Results\n\n${END}\n`)
  })

  it("replaces only the marked section", () => {
    const first = replaceSection("# B\n\nintro\n", "old")
    const withTail = `${first}\ntail text\n`
    const out = replaceSection(withTail, "new")
    assert.include(out, "intro")
    assert.include(out, "tail text")
    assert.include(out, "\n\nnew\n\n")
    assert.notInclude(out, "old")
    assert.strictEqual(out.split(END).length, 2)
  })
})

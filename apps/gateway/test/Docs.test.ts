/** The configuration catalogue lists every environment variable a `*Config.ts` module reads. */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { assert, it } from "@effect/vitest"

const root = new URL("../../../", import.meta.url).pathname

const configModules = (): Array<string> =>
  ["packages", "apps"].flatMap((dir) =>
    readdirSync(join(root, dir)).flatMap((pkg) => {
      const src = join(root, dir, pkg, "src")
      try {
        return readdirSync(src).filter((f) => f.endsWith("Config.ts")).map((f) => join(src, f))
      } catch {
        return []
      }
    })
  )

it("documents every environment variable in docs/config.md", () => {
  const catalogue = readFileSync(join(root, "docs/config.md"), "utf8")
  const modules = configModules()
  assert.isAtLeast(modules.length, 3)
  const names = new Set(
    modules.flatMap((file) =>
      [...readFileSync(file, "utf8").matchAll(/"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|HOST|PORT)"/g)].map((m) => m[1]!)
    )
  )
  assert.include(names, "MAX_CONNECTIONS")
  assert.deepStrictEqual([...names].filter((name) => !catalogue.includes(`\`${name}\``)), [])
})

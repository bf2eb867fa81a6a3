import { join } from "node:path"
import { assert, describe } from "@effect/vitest"
import { test } from "vitest"
import { check, findCycles, importedPackages, loadWorkspaces } from "../src/checkDeps.ts"
import type { Edge, Workspace, WorkspaceKind } from "../src/checkDeps.ts"

const root = join(import.meta.dirname, "..", "..")

const ws = (short: string, kind: WorkspaceKind, ...edges: Array<Edge | string>): Workspace => ({
  name: `@wedsync/${short}`,
  dir: kind === "app" ? `apps/${short}` : kind === "tools" ? "tools" : `packages/${short}`,
  kind,
  edges: edges.map((e) => (typeof e === "string" ? { to: `@wedsync/${e}`, via: "dependencies" } : e))
})

const base = [
  ws("protocol", "package"),
  ws("metrics", "package"),
  ws("redis", "package"),
  ws("cache", "package", "redis"),
  ws("auth", "package", "protocol"),
  ws("hub", "package", "protocol", "metrics", { to: "@wedsync/testkit", via: "devDependencies" }),
  ws("connection", "package", "protocol", "auth", "hub", "metrics"),
  ws("testkit", "testkit"),
  ws("gateway", "app", "protocol", "connection", "hub", "auth", "metrics", "cache"),
  ws("tools", "tools", "protocol")
]

const replace = (graph: ReadonlyArray<Workspace>, w: Workspace) => graph.map((x) => (x.name === w.name ? w : x))

describe("checkDeps", () => {
  test("the real repository graph passes", () => {
    const workspaces = loadWorkspaces(root)
    assert.includeMembers(workspaces.map((w) => w.name), [
      "@wedsync/protocol",
      "@wedsync/metrics",
      "@wedsync/testkit",
      "@wedsync/gateway",
      "@wedsync/tools"
    ])
    assert.deepStrictEqual(check(workspaces), [])
  })

  test("a graph that follows the rows passes", () => {
    assert.deepStrictEqual(check(base), [])
  })

  test("an upward edge is refused", () => {
    const v = check(replace(base, ws("hub", "package", "protocol", "connection")))
    assert.include(
      v.map((x) => x.message),
      "@wedsync/hub (row 3) → @wedsync/connection (row 4) (dependencies): upward edge; a package may import only rows below its own"
    )
  })

  test("a same-row edge is refused", () => {
    const v = check(replace(base, ws("auth", "package", "protocol", "hub")))
    assert.match(
      v.map((x) => x.message).join("\n"),
      /@wedsync\/auth \(row 3\) → @wedsync\/hub \(row 3\).*same-row edge/
    )
  })

  test("a cycle is refused and named", () => {
    const graph = replace(replace(base, ws("protocol", "package", "metrics")), ws("metrics", "package", "protocol"))
    assert.deepStrictEqual(findCycles(graph), [["@wedsync/protocol", "@wedsync/metrics", "@wedsync/protocol"]])
    assert.include(
      check(graph).map((x) => x.message),
      "cycle: @wedsync/protocol → @wedsync/metrics → @wedsync/protocol"
    )
  })

  test("importing an app is refused, even from another app or tools", () => {
    const v = check([...replace(base, ws("tools", "tools", "protocol", "gateway")), ws("admin", "app", "gateway")])
    const messages = v.map((x) => x.message).join("\n")
    assert.match(messages, /@wedsync\/tools → @wedsync\/gateway .*nothing may import an app/)
    assert.match(messages, /@wedsync\/admin → @wedsync\/gateway .*nothing may import an app/)
  })

  test("testkit imports nothing from the workspace and is dev-only for others", () => {
    const graph = replace(
      replace(
        base,
        ws("testkit", "testkit", { to: "@wedsync/protocol", via: "src import", file: "packages/testkit/src/X.ts" })
      ),
      ws("hub", "package", "protocol", "testkit")
    )
    const messages = check(graph).map((x) => x.message).join("\n")
    assert.match(
      messages,
      /@wedsync\/testkit → @wedsync\/protocol \(src import in packages\/testkit\/src\/X.ts\): testkit may import no/
    )
    assert.match(messages, /@wedsync\/hub → @wedsync\/testkit \(dependencies\): testkit is dev-only/)
  })

  test("tools may import only protocol", () => {
    const v = check(replace(base, ws("tools", "tools", "protocol", "hub")))
    assert.deepStrictEqual(v.map((x) => x.message), [
      "@wedsync/tools → @wedsync/hub (dependencies): tools may import only @wedsync/protocol"
    ])
  })

  test("an import missing from package.json is refused; a package without a row is refused", () => {
    const graph = [
      ...replace(
        base,
        ws("cache", "package", "redis", { to: "@wedsync/protocol", via: "src import", file: "packages/cache/src/A.ts" })
      ),
      ws("mystery", "package")
    ]
    const messages = check(graph).map((x) => x.message)
    assert.include(
      messages,
      "@wedsync/cache imports @wedsync/protocol (src import in packages/cache/src/A.ts) but does not list it in package.json dependencies"
    )
    assert.include(messages, "@wedsync/mystery has no row: add it to `rows` in tools/src/checkDeps.ts (STYLE.md §6.2)")
  })

  test("finds import specifiers, ignoring comments", () => {
    // Built from parts so that this file does not itself import these names as far as the checker can tell.
    const S = "@wedsync"
    const source = [
      `import { Hub } from "${S}/hub"`,
      `import type { X } from '${S}/protocol/internal'`,
      `export * from "${S}/metrics"`,
      `import "${S}/side-effect"`,
      `const lazy = await import("${S}/lazy")`,
      `import {`,
      `  a,`,
      `} from "${S}/multi"`,
      `// import { nope } from "${S}/commented"`,
      `/** e.g. import { Broker } from "${S}/doc" */`,
      `const url = "ws://example/${S}/not-an-import"`
    ].join("\n")
    assert.deepStrictEqual([...importedPackages(source)].sort(), [
      "@wedsync/hub",
      "@wedsync/lazy",
      "@wedsync/metrics",
      "@wedsync/multi",
      "@wedsync/protocol",
      "@wedsync/side-effect"
    ])
  })
})

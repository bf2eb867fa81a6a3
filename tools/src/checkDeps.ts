/**
 * Dependency-direction check for the workspace (STYLE.md §6.2): a package may depend only on rows below its own.
 *
 * Rows, bottom up: 0 metrics · 1 protocol, redis, scaling · 2 cache · 3 auth, hub · 4 connection, changes, upstream ·
 * 5 apps/gateway. `testkit` is dev-only: it imports no @wedsync package, and others may take it only as a
 * devDependency from their tests. `tools` may import only `protocol` (benchmarks measure what a client sees). Edges come
 * from each package.json and from the `@wedsync/*` specifiers in `src/**` and `test/**`, so an import that works only
 * through workspace hoisting is caught too. `check` is pure; running the file checks the repository and exits 1 on any
 * violation.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"

/** Row of every library package, by short name (`@wedsync/<name>`). */
export const rows: Readonly<Record<string, number>> = {
  // Below every other package: each one lints its own handles with `MetricNames` (redis included), and metrics
  // imports nothing from the workspace.
  metrics: 0,
  protocol: 1,
  redis: 1,
  // Pure policy over numbers the gateway samples: it needs only effect, and sitting low lets the transport ask its
  // admission decision without an upward edge.
  scaling: 1,
  cache: 2,
  auth: 3,
  hub: 3,
  connection: 4,
  changes: 4,
  upstream: 4
}

/** Row of every app. */
const appRow = 5

/** The only @wedsync packages `tools` may import. */
const toolsMayImport: ReadonlyArray<string> = ["@wedsync/protocol"]

export type WorkspaceKind = "package" | "app" | "testkit" | "tools"

/** How an edge was found; `dev` edges are allowed to reach `testkit`. */
type EdgeVia = "dependencies" | "devDependencies" | "src import" | "test import"

export interface Edge {
  readonly to: string
  readonly via: EdgeVia
  /** Source file for import edges, relative to the repository. */
  readonly file?: string | undefined
}

export interface Workspace {
  readonly name: string
  readonly dir: string
  readonly kind: WorkspaceKind
  readonly edges: ReadonlyArray<Edge>
}

export interface Violation {
  readonly from: string
  readonly to: string
  readonly message: string
}

const SCOPE = "@wedsync/"

const shortName = (name: string): string => name.slice(SCOPE.length)

const isDev = (via: EdgeVia): boolean => via === "devDependencies" || via === "test import"

const describeEdge = (edge: Edge): string => edge.file === undefined ? `(${edge.via})` : `(${edge.via} in ${edge.file})`

/** The row of a workspace, or undefined for testkit, tools and unknown packages. */
const rowOf = (workspace: Pick<Workspace, "name" | "kind">): number | undefined =>
  workspace.kind === "app" ? appRow : workspace.kind === "package" ? rows[shortName(workspace.name)] : undefined

/** Checks every edge against the rows and finds cycles. Returns one violation per broken edge or cycle. */
export const check = (workspaces: ReadonlyArray<Workspace>): ReadonlyArray<Violation> => {
  const byName = new Map(workspaces.map((w) => [w.name, w]))
  const violations: Array<Violation> = []
  const add = (from: string, to: string, message: string) => {
    if (!violations.some((v) => v.message === message)) violations.push({ from, to, message })
  }
  for (const w of workspaces) {
    if (w.kind === "package" && rowOf(w) === undefined) {
      add(w.name, w.name, `${w.name} has no row: add it to \`rows\` in tools/src/checkDeps.ts (STYLE.md §6.2)`)
    }
    const declared = new Map<string, EdgeVia>()
    for (const e of w.edges) {
      if (e.via === "dependencies" || e.via === "devDependencies") {
        if (!declared.has(e.to) || e.via === "dependencies") declared.set(e.to, e.via)
      }
    }
    for (const edge of w.edges) {
      const target = byName.get(edge.to)
      const where = describeEdge(edge)
      if (edge.to === w.name) {
        // Importing yourself by name (tests of the public entry point) is fine; listing yourself as a dependency is not.
        if (edge.file === undefined) add(w.name, edge.to, `${w.name} lists itself in package.json ${where}`)
        continue
      }
      if (target === undefined) {
        add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: no such workspace package`)
        continue
      }
      if (edge.via === "src import" && declared.get(edge.to) !== "dependencies") {
        add(w.name, edge.to, `${w.name} imports ${edge.to} ${where} but does not list it in package.json dependencies`)
      } else if (edge.via === "test import" && !declared.has(edge.to)) {
        add(
          w.name,
          edge.to,
          `${w.name} imports ${edge.to} ${where} but does not list it in package.json (dev)dependencies`
        )
      }
      if (target.kind === "app") {
        add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: nothing may import an app`)
        continue
      }
      if (w.kind === "testkit") {
        add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: testkit may import no @wedsync package`)
        continue
      }
      if (target.kind === "testkit") {
        if (!isDev(edge.via)) {
          add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: testkit is dev-only (devDependencies and test/ only)`)
        }
        continue
      }
      if (target.kind === "tools") {
        add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: nothing may import tools`)
        continue
      }
      if (w.kind === "tools") {
        if (!toolsMayImport.includes(edge.to)) {
          add(w.name, edge.to, `${w.name} → ${edge.to} ${where}: tools may import only ${toolsMayImport.join(", ")}`)
        }
        continue
      }
      const fromRow = rowOf(w)
      const toRow = rowOf(target)
      if (fromRow === undefined || toRow === undefined) continue // reported above as "has no row"
      if (toRow >= fromRow) {
        const kind = toRow === fromRow ? "same-row" : "upward"
        add(
          w.name,
          edge.to,
          `${w.name} (row ${fromRow}) → ${edge.to} (row ${toRow}) ${where}: ${kind} edge; a package may import only rows below its own`
        )
      }
    }
  }
  for (const cycle of findCycles(workspaces)) {
    add(cycle[0]!, cycle[1]!, `cycle: ${cycle.join(" → ")}`)
  }
  return violations
}

/** Every elementary cycle reachable by DFS, each reported once as `a → b → … → a`. */
export const findCycles = (workspaces: ReadonlyArray<Workspace>): ReadonlyArray<ReadonlyArray<string>> => {
  const next = new Map(
    workspaces.map((w) => [w.name, [...new Set(w.edges.map((e) => e.to))].filter((to) => to !== w.name)])
  )
  const cycles: Array<Array<string>> = []
  const seen = new Set<string>()
  const state = new Map<string, "active" | "done">()
  const stack: Array<string> = []
  const visit = (node: string) => {
    state.set(node, "active")
    stack.push(node)
    for (const to of next.get(node) ?? []) {
      if (!next.has(to)) continue
      if (state.get(to) === "active") {
        const cycle = [...stack.slice(stack.indexOf(to)), to]
        const key = [...cycle.slice(0, -1)].sort().join(",")
        if (!seen.has(key)) {
          seen.add(key)
          cycles.push(cycle)
        }
      } else if (state.get(to) === undefined) {
        visit(to)
      }
    }
    stack.pop()
    state.set(node, "done")
  }
  for (const name of [...next.keys()].sort()) if (state.get(name) === undefined) visit(name)
  return cycles
}

// --- Reading the repository -------------------------------------------------------------------------------------

interface PackageJson {
  readonly name?: string
  readonly workspaces?: ReadonlyArray<string>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly devDependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly optionalDependencies?: Readonly<Record<string, string>>
  readonly scripts?: Readonly<Record<string, string>>
}

const readJson = (file: string): PackageJson => JSON.parse(readFileSync(file, "utf8")) as PackageJson

/** Workspace directories (relative to root) from the root package.json's `workspaces` globs (`dir/*` or `dir`). */
export const workspaceDirs = (root: string): ReadonlyArray<string> => {
  const dirs: Array<string> = []
  for (const pattern of readJson(join(root, "package.json")).workspaces ?? []) {
    if (pattern.endsWith("/*")) {
      const parent = pattern.slice(0, -2)
      if (!existsSync(join(root, parent))) continue
      for (const entry of readdirSync(join(root, parent)).sort()) {
        if (existsSync(join(root, parent, entry, "package.json"))) dirs.push(`${parent}/${entry}`)
      }
    } else if (existsSync(join(root, pattern, "package.json"))) {
      dirs.push(pattern)
    }
  }
  return dirs
}

const listTs = (dir: string, skip: ReadonlySet<string>): Array<string> => {
  if (!existsSync(dir)) return []
  const out: Array<string> = []
  for (const entry of readdirSync(dir)) {
    if (entry === "node_modules" || skip.has(entry)) continue
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) out.push(...listTs(path, new Set()))
    else if (/\.(c|m)?tsx?$/.test(entry)) out.push(path)
  }
  return out.sort()
}

// `from "x"`, `import "x"`, `import("x")`, `require("x")` — after comments are removed.
const specifierPattern =
  /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*|\brequire\s*\(\s*)["'](@wedsync\/[^"'/]+)(?:\/[^"']*)?["']/gm

/** The @wedsync package names a TypeScript source imports. */
export const importedPackages = (source: string): ReadonlyArray<string> => {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  const found = new Set<string>()
  for (const match of code.matchAll(specifierPattern)) found.add(match[1]!)
  return [...found]
}

const kindOf = (dir: string, name: string): WorkspaceKind =>
  dir.startsWith("apps/") ? "app" : name === "@wedsync/testkit" ? "testkit" : dir === "tools" ? "tools" : "package"

/** Reads every workspace's package.json edges and source imports. */
export const loadWorkspaces = (root: string): ReadonlyArray<Workspace> =>
  workspaceDirs(root).map((dir) => {
    const pkg = readJson(join(root, dir, "package.json"))
    const name = pkg.name ?? dir
    const edges: Array<Edge> = []
    const fromManifest = (deps: Readonly<Record<string, string>> | undefined, via: EdgeVia) => {
      for (const to of Object.keys(deps ?? {})) if (to.startsWith(SCOPE)) edges.push({ to, via })
    }
    fromManifest(pkg.dependencies, "dependencies")
    fromManifest(pkg.peerDependencies, "dependencies")
    fromManifest(pkg.optionalDependencies, "dependencies")
    fromManifest(pkg.devDependencies, "devDependencies")
    const kind = kindOf(dir, name)
    // tools keeps runtime code in src/, bench/, attack/ and deploy/; everything under test/ directories counts as test code.
    const sourceRoots: ReadonlyArray<[string, EdgeVia]> = kind === "tools"
      ? [
        ["src", "src import"],
        ["bench", "src import"],
        ["attack", "src import"],
        ["deploy", "src import"],
        ["test", "test import"]
      ]
      : [["src", "src import"], ["test", "test import"]]
    for (const [sub, via] of sourceRoots) {
      for (const file of listTs(join(root, dir, sub), new Set())) {
        const isTest = via === "test import" || /[\\/]test[\\/]|\.test\.tsx?$/.test(relative(join(root, dir), file))
        for (const to of importedPackages(readFileSync(file, "utf8"))) {
          edges.push({ to, via: isTest ? "test import" : via, file: relative(root, file) })
        }
      }
    }
    return { name, dir, kind, edges }
  })

/** One line per violation. */
export const formatViolations = (violations: ReadonlyArray<Violation>): string =>
  violations.map((v) => `  ✗ ${v.message}`).join("\n")

const main = () => {
  const root = join(import.meta.dirname, "..", "..")
  const workspaces = loadWorkspaces(root)
  const violations = check(workspaces)
  if (violations.length === 0) {
    const edges = new Set(workspaces.flatMap((w) => w.edges.map((e) => `${w.name}→${e.to}`))).size
    console.log(
      `dependency check: ok (${workspaces.length} workspaces, ${edges} @wedsync edges, rows respected, no cycles)`
    )
    return
  }
  console.error(`dependency check: ${violations.length} violation(s) of the rows in STYLE.md §6.2:`)
  console.error(formatViolations(violations))
  console.error("Fix: depend only on lower rows (move shared code down, or invert the dependency with a service).")
  process.exitCode = 1
}

if (import.meta.main) main()

/**
 * Where the gateway under test comes from. By default the repository's working tree; with
 * `--gateway-ref <ref>` a clean snapshot of that commit (`git archive`) in a temp directory whose
 * node_modules links the repository's third-party packages and the snapshot's own workspaces, so a
 * benchmark can measure a committed gateway while others are editing the working tree.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readlinkSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export interface GatewaySource {
  /** Directory to run `node apps/gateway/src/main.ts` in. */
  readonly dir: string
  /** For the report: commit and whether uncommitted changes were included. */
  readonly description: string
}

const git = (repoRoot: string, args: ReadonlyArray<string>): string =>
  execFileSync("git", ["-C", repoRoot, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim()

const GATEWAY_PATHS = ["apps/gateway", "packages"]

export const workingTree = (repoRoot: string): GatewaySource => {
  try {
    const sha = git(repoRoot, ["rev-parse", "--short=12", "HEAD"])
    const dirty = git(repoRoot, ["status", "--porcelain", "--", ...GATEWAY_PATHS]).length > 0
    return {
      dir: repoRoot,
      description: `working tree at ${sha}${
        dirty ? " with uncommitted changes in apps/gateway or packages/" : " (clean)"
      }`
    }
  } catch {
    return { dir: repoRoot, description: "working tree (not a git checkout)" }
  }
}

export const snapshot = (repoRoot: string, ref: string): GatewaySource => {
  const sha = git(repoRoot, ["rev-parse", "--verify", `${ref}^{commit}`])
  const dir = join(tmpdir(), `wedsync-bench-gateway-${sha.slice(0, 12)}`)
  if (!existsSync(join(dir, ".complete"))) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    execFileSync("sh", ["-c", `git -C "${repoRoot}" archive "${sha}" | tar -x -C "${dir}"`])
    const modules = join(repoRoot, "node_modules")
    mkdirSync(join(dir, "node_modules", "@wedsync"), { recursive: true })
    for (const entry of readdirSync(modules)) {
      if (entry !== "@wedsync") symlinkSync(join(modules, entry), join(dir, "node_modules", entry))
    }
    // Workspace links point into the snapshot so its packages, not the working tree's, are loaded.
    for (const entry of readdirSync(join(modules, "@wedsync"))) {
      const target = resolve(join(modules, "@wedsync"), readlinkSync(join(modules, "@wedsync", entry)))
      const inSnapshot = join(dir, target.slice(repoRoot.length))
      if (existsSync(inSnapshot)) symlinkSync(inSnapshot, join(dir, "node_modules", "@wedsync", entry))
    }
    execFileSync("touch", [join(dir, ".complete")])
  }
  return { dir, description: `commit ${sha.slice(0, 12)} (--gateway-ref ${ref}, clean git archive snapshot)` }
}

/** The gateway a bench runs: the working tree, or a snapshot of `ref` (`--gateway-ref`) when one is given. */
export const gatewaySource = (repoRoot: string, ref: string | undefined): GatewaySource =>
  ref === undefined ? workingTree(repoRoot) : snapshot(repoRoot, ref)

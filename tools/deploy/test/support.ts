/** Files of `deploy/`, the workspace facts they must agree with, and the gateway started the way the image starts it. */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"

export const root = join(import.meta.dirname, "..", "..", "..")
export const read = (path: string): string => readFileSync(join(root, path), "utf8")

/** Workspace directories from the root package.json's globs (`packages/*` → `packages/auth`, …). */
export const workspaces = (): ReadonlyArray<string> => {
  const manifest: unknown = JSON.parse(read("package.json"))
  const globs = typeof manifest === "object" && manifest !== null && "workspaces" in manifest &&
      Array.isArray(manifest.workspaces)
    ? manifest.workspaces.filter((w): w is string => typeof w === "string")
    : []
  const listed = spawnSync("git", ["ls-files", "--", ...globs.map((g) => `${g}/package.json`)], {
    cwd: root,
    encoding: "utf8"
  })
  return listed.stdout.split("\n").filter((l) => l !== "").map((l) => l.replace(/\/package\.json$/, ""))
}

/** `npm start`'s command without its `exec`: `["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"]`. */
export const startCommand = (): ReadonlyArray<string> => {
  const manifest: unknown = JSON.parse(read("package.json"))
  const scripts = typeof manifest === "object" && manifest !== null && "scripts" in manifest ? manifest.scripts : {}
  const start = typeof scripts === "object" && scripts !== null && "start" in scripts ? String(scripts.start) : ""
  return start.split(/\s+/).filter((w) => w !== "" && w !== "exec")
}

/** Runs `promtool check rules` on a rules file's text; status 0 when every expression parses. */
export const promtoolCheckRules = (rules: string): { readonly status: number | null; readonly output: string } => {
  const dir = mkdtempSync(join(tmpdir(), "wedsync-deploy-"))
  try {
    const file = join(dir, "rules.yml")
    writeFileSync(file, rules)
    const run = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" })
    if (run.error)
      throw new Error(`promtool is not installed (npm test's preparation installs it): ${run.error.message}`)
    return { status: run.status, output: `${run.stdout}${run.stderr}` }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface Gateway {
  readonly child: ChildProcess
  readonly port: number
  readonly lines: ReadonlyArray<string>
  readonly exit: Promise<number | null>
}

/**
 * Starts the gateway with a command and environment as the container would (no shell: the process is what PID 1 would
 * be), on a free port, and resolves once it logs that it listens. `node` is this test's Node 24.
 */
export const startGateway = (command: ReadonlyArray<string>, env: Record<string, string>): Promise<Gateway> => {
  const [program, ...args] = command
  const child = spawn(program === "node" ? process.execPath : program!, args, {
    cwd: root,
    env: { PATH: process.env["PATH"] ?? "", ...env, PORT: "0" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    const onLine = (line: string) => {
      lines.push(line)
      const port = /listening on http:\/\/[^:]+:(\d+)/.exec(line)?.[1]
      if (port !== undefined) resolve({ child, port: Number(port), lines, exit })
    }
    createInterface({ input: child.stdout! }).on("line", onLine)
    createInterface({ input: child.stderr! }).on("line", onLine)
    void exit.then(
      (code) => reject(new Error(`gateway exited (${code}) before listening:\n${lines.join("\n")}`)),
      reject
    )
  })
}

/**
 * deploy/Dockerfile read by a Dockerfile parser (dockerfile-ast), not by eye: Node 24 base, a non-root numeric user,
 * exec-form CMD running npm start's command (node is PID 1 and gets SIGTERM), no secret in ENV/ARG, every workspace
 * manifest copied for `npm ci`. Then the image's CMD, ENV and HEALTHCHECK are run for real on this machine: no image
 * is built (the test must not depend on a registry), but the command the container runs is the one tested.
 */
import { assert, describe } from "@effect/vitest"
import { DockerfileParser } from "dockerfile-ast"
import { test, vi } from "vitest"
import { spawnSync } from "node:child_process"
import { checkDockerfile, checkDockerignore, execForm, healthcheckCommand } from "../src/DeployChecks.ts"
import { read, startCommand, startGateway, workspaces } from "./support.ts"

vi.setConfig({ testTimeout: 30_000 })

const dockerfile = read("deploy/Dockerfile")
const expected = { startCommand: startCommand(), workspaces: workspaces() }

describe("deploy/Dockerfile", () => {
  test("the expectations come from the workspace itself", () => {
    assert.deepStrictEqual(expected.startCommand, ["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"])
    assert.includeMembers([...expected.workspaces], ["apps/gateway", "packages/hub", "packages/metrics", "tools"])
  })

  test("is accepted: Node 24, non-root, exec-form node as PID 1, no secrets, every workspace manifest", () => {
    assert.deepStrictEqual(checkDockerfile(dockerfile, expected), [])
    assert.deepStrictEqual(checkDockerignore(read("deploy/Dockerfile.dockerignore")), [])
  })

  test("node under an init (tini) is accepted too; the command after it must still be npm start's", () => {
    const cmd = `CMD ["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"]`
    const withTini = dockerfile.replace(cmd, `ENTRYPOINT ["/usr/bin/tini", "--"]\n${cmd}`)
    assert.notStrictEqual(withTini, dockerfile)
    assert.deepStrictEqual(checkDockerfile(withTini, expected), [])
    const tiniShell = dockerfile.replace(cmd, `ENTRYPOINT ["/usr/bin/tini", "--"]\nCMD node apps/gateway/src/main.ts`)
    assert.isNotEmpty(checkDockerfile(tiniShell, expected))
  })

  test("a root user, a shell-form CMD, a baked secret, a loopback HOST or a missing manifest are refused", () => {
    const refused = (from: string, to: string, problem: RegExp) => {
      const changed = dockerfile.replace(from, to)
      assert.notStrictEqual(changed, dockerfile, `the Dockerfile no longer contains ${from}`)
      const problems = checkDockerfile(changed, expected)
      assert.isTrue(problems.some((p) => problem.test(p)), `${to}: ${problems.join("; ")}`)
    }
    refused("USER 1000:1000", "USER root", /runs the gateway as root/)
    refused("USER 1000:1000", "USER node", /numeric uid/)
    refused("USER 1000:1000", "", /no USER/)
    refused(
      `CMD ["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"]`,
      "CMD npm start",
      /shell form/
    )
    refused(`CMD ["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"]`, `CMD ["node", "main.ts"]`, /not npm/)
    refused("LOG_FORMAT=json", "LOG_FORMAT=json \\\n    JWT_SECRET=not-in-an-image", /JWT_SECRET: secrets/)
    refused("HOST=0.0.0.0", "HOST=127.0.0.1", /HOST=0.0.0.0 missing/)
    refused("COPY packages/scaling/package.json packages/scaling/\n", "", /packages\/scaling\/package.json/)
    refused("FROM node:24-slim\n# Node 24", "FROM node:22-slim\n# Node 24", /Node 24/)
    assert.isNotEmpty(checkDockerignore("dist\n"))
  })

  test("the image's CMD and ENV start the gateway, its HEALTHCHECK passes, and SIGTERM drains and exits 0", async () => {
    const parsed = DockerfileParser.parse(dockerfile)
    const command = execForm(parsed.getCMDs().at(-1)!)
    assert.isDefined(command)
    const env = Object.fromEntries(
      parsed.getENVs().flatMap((e) => e.getProperties().map((p) => [p.getName(), p.getValue() ?? ""]))
    )
    assert.strictEqual(env["HOST"], "0.0.0.0")
    const gateway = await startGateway(command!, env)
    try {
      const check = healthcheckCommand(parsed.getHEALTHCHECKs().at(-1)!)
      assert.isDefined(check, "HEALTHCHECK in exec form")
      const [program, ...args] = check!
      const probe = spawnSync(program === "node" ? process.execPath : program!, args, {
        env: { PORT: String(gateway.port) },
        encoding: "utf8",
        timeout: 10_000
      })
      assert.strictEqual(probe.status, 0, probe.stderr)
      const json = gateway.lines.map((l) => {
        try {
          const line: unknown = JSON.parse(l)
          return line
        } catch {
          return undefined
        }
      })
      assert.isTrue(json.every((l) => typeof l === "object" && l !== null), "LOG_FORMAT=json: one JSON object per line")
    } finally {
      gateway.child.kill("SIGTERM")
    }
    assert.strictEqual(await gateway.exit, 0)
    assert.isTrue(gateway.lines.some((l) => l.includes("draining")), gateway.lines.join("\n"))
  })
})

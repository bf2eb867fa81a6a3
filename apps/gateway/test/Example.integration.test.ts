/** The runnable example the README points to (examples/timeline) works against a gateway. */
import { spawn } from "node:child_process"
import { afterAll, beforeAll, expect, it } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const script = new URL("../../../examples/timeline/timeline.ts", import.meta.url).pathname

let gateway: RunningGateway
beforeAll(async () => {
  gateway = await startGateway()
})
afterAll(async () => {
  await gateway.stop()
})

it("examples/timeline joins wedding:42, sees both devices in presence and delivers the broadcasts", async () => {
  const child = spawn(process.execPath, [script], {
    env: { PATH: process.env["PATH"] ?? "", GATEWAY_URL: gateway.url },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve))
  expect(output).toContain("[venue] received over the socket")
  expect(output).toContain("online: planner, venue")
  expect(output).toContain("REST broadcast answered: accepted")
  expect(code, output).toBe(0)
}, 30_000)

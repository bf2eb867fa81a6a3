/** The runnable example the README points to (examples/timeline) works against a gateway. */
import { spawn } from "node:child_process"
import { assert, it } from "@effect/vitest"
import { afterAll, beforeAll } from "vitest"
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
  assert.include(output, "[venue] received over the socket")
  assert.include(output, "online: planner, venue")
  assert.include(output, "REST broadcast answered: accepted")
  assert.strictEqual(code, 0, output)
}, 30_000)

import { execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { connect } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { onOutputLines } from "../src/serverProcess.ts"
import { openSplitNetwork } from "../src/splitNetwork.ts"

const rpsMask = (text: string): number => Number.parseInt(text.trim().replace(/,/g, ""), 16)

// Runs for real (CI runs as root, as `prepareServices` does): a namespace, a veth pair and RPS, and a TCP round trip
// across it. Without root `openSplitNetwork` throws with its message, and this test fails instead of skipping.
describe("openSplitNetwork", () => {
  it("puts a server in its own namespace reachable from the bench, steers each end to its core, and removes it all", async () => {
    const split = openSplitNetwork(0, 1)
    let closed = false
    try {
      assert.strictEqual(rpsMask(readFileSync(`/sys/class/net/${split.benchDevice}/queues/rx-0/rps_cpus`, "utf8")), 2)
      const inside = execFileSync(
        split.prefix[0]!,
        [...split.prefix.slice(1), "cat", `/sys/class/net/${split.serverDevice}/queues/rx-0/rps_cpus`],
        { encoding: "utf8" }
      )
      assert.strictEqual(rpsMask(inside), 1)
      const script =
        `require("node:net").createServer((s) => s.pipe(s)).listen(0, "${split.serverHost}", function () {` +
        ` console.log("port " + this.address().port) })`
      const [command, ...args] = [...split.prefix, process.execPath, "-e", script]
      const server = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] })
      try {
        const port = await new Promise<number>((resolve, reject) => {
          server.once("exit", (code) => reject(new Error(`server exited ${code}`)))
          onOutputLines(server, (line) => {
            const match = /^port (\d+)$/.exec(line)
            if (match !== null) resolve(Number(match[1]))
          })
        })
        const echoed = await new Promise<string>((resolve, reject) => {
          const socket = connect(port, split.serverHost, () => socket.end("across the veth"))
          let got = ""
          socket.setEncoding("utf8")
          socket.on("data", (chunk: string) => (got += chunk))
          socket.once("end", () => resolve(got))
          socket.once("error", reject)
        })
        assert.strictEqual(echoed, "across the veth")
        // The server is not in this namespace: the same port on this side's loopback has nobody behind it.
        const local = await new Promise<string>((resolve) => {
          const socket = connect(port, "127.0.0.1", () => {
            socket.destroy()
            resolve("connected")
          })
          socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
        })
        assert.strictEqual(local, "ECONNREFUSED")
      } finally {
        server.kill("SIGKILL")
        await new Promise((resolve) => server.once("close", resolve))
      }
      split.close()
      closed = true
      assert.notInclude(execFileSync("ip", ["netns", "list"], { encoding: "utf8" }), split.namespace)
      assert.throws(() => execFileSync("ip", ["link", "show", split.benchDevice], { stdio: "ignore" }))
    } finally {
      if (!closed) split.close()
    }
  })
})

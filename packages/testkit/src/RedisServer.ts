/**
 * A throwaway Redis server for the tests that must stop and restart Redis: stopping the shared local server would cut
 * every other test's connections. `start` runs `redis-server` on a free loopback port with persistence off; `kill`
 * ends it the hard way (SIGKILL, as a crash or a lost node), `restart` starts it again on the same port, `pause` and
 * `resume` freeze and thaw it (SIGSTOP/SIGCONT: connected but silent), and `stop` ends it for good. Each resolves once the event happened (ready to accept connections, process exited), so tests
 * await events instead of sleeping. It needs `redis-server` on the PATH (or `REDIS_SERVER_BIN`).
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { tmpdir } from "node:os"
import { freePort } from "./internal/freePort.ts"

export interface Server {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string
  readonly port: number
  /** SIGKILL; resolves when the process has exited. Safe to call when it is not running. */
  readonly kill: () => Promise<void>
  /** Starts the server again on the same port (after `kill`), resolving once it accepts connections. */
  readonly restart: () => Promise<void>
  /** SIGSTOP: the server keeps its sockets open but answers nothing (a frozen node); resolves once sent. */
  readonly pause: () => Promise<void>
  /** SIGCONT after `pause`. */
  readonly resume: () => Promise<void>
  /** Stops the server for good (resuming it first if paused). Safe to call twice. */
  readonly stop: () => Promise<void>
}

const launch = (port: number): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const bin = process.env["REDIS_SERVER_BIN"] || "redis-server"
    const child = spawn(
      bin,
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmpdir()],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Ready to accept connections")) {
        child.stdout?.off("data", onData)
        child.stdout?.resume()
        resolve(child)
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.resume()
    child.once("error", (error) => reject(new Error(`${bin} could not be started: ${error.message}`)))
    child.once("exit", (code) =>
      reject(new Error(`${bin} --port ${port} exited with ${code} before it was ready:\n${output}`)))
  })

const exited = (child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> =>
  new Promise((resolve) => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill(signal)
  })

/** Starts a private Redis server on a free port. */
export const start = async (): Promise<Server> => {
  const port = await freePort()
  let child: ChildProcess | undefined = await launch(port)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: async () => {
      await exited(child, "SIGKILL")
      child = undefined
    },
    restart: async () => {
      await exited(child, "SIGKILL")
      child = await launch(port)
    },
    pause: async () => {
      child?.kill("SIGSTOP")
    },
    resume: async () => {
      child?.kill("SIGCONT")
    },
    stop: async () => {
      child?.kill("SIGCONT")
      await exited(child, "SIGTERM")
      child = undefined
    }
  }
}

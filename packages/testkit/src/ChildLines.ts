/**
 * The output lines of a child process the test started, and a wait for one of them: the tests that run the gateway or
 * another app as a real process find "listening on", a log line or an error this way. A wait that the child's exit
 * makes hopeless fails at once, with everything the child wrote.
 */
import type { ChildProcess } from "node:child_process"
import { createInterface } from "node:readline"

export interface ChildLines {
  /** Every line written so far, stdout and stderr interleaved as read. */
  readonly lines: ReadonlyArray<string>
  /** The first line (already written or still to come) that matches; fails if the child exits first. */
  readonly line: (match: (line: string) => boolean, what?: string) => Promise<string>
}

/** Starts collecting `child`'s lines (its stdout and stderr must be pipes); `name` goes into failure messages. */
export const watch = (child: ChildProcess, name: string): ChildLines => {
  const lines: Array<string> = []
  const waiters = new Set<(line: string) => void>()
  const onLine = (text: string) => {
    lines.push(text)
    for (const waiter of [...waiters]) waiter(text)
  }
  if (child.stdout !== null) createInterface({ input: child.stdout }).on("line", onLine)
  if (child.stderr !== null) createInterface({ input: child.stderr }).on("line", onLine)
  const line = (match: (line: string) => boolean, what = "a matching line") =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find(match)
      if (seen !== undefined) return resolve(seen)
      const waiter = (text: string) => {
        if (!match(text)) return
        waiters.delete(waiter)
        resolve(text)
      }
      const onExit = (code: number | null) => {
        if (waiters.delete(waiter))
          reject(new Error(`${name} exited (${code}) before ${what}; output:\n${lines.join("\n")}`))
      }
      waiters.add(waiter)
      if (child.exitCode !== null || child.signalCode !== null) return onExit(child.exitCode)
      child.once("exit", onExit)
    })
  return { lines, line }
}

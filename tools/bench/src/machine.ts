/** Facts about the machine and run that make a benchmark result interpretable. */
import { execFileSync } from "node:child_process"
import os from "node:os"

export interface MachineFacts {
  readonly date: string
  readonly nproc: number
  readonly cpuModel: string
  readonly memGiB: number
  readonly kernel: string
  readonly node: string
  readonly loadAvg: ReadonlyArray<number>
  readonly fdLimit: string
  readonly tasksetAvailable: boolean
}

const run = (command: string, args: ReadonlyArray<string>): string | undefined => {
  try {
    return execFileSync(command, [...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return undefined
  }
}

export const tasksetAvailable = (): boolean => run("taskset", ["-V"]) !== undefined

export const machineFacts = (): MachineFacts => ({
  date: new Date().toISOString(),
  nproc: Number(run("nproc", []) ?? os.availableParallelism()),
  cpuModel: os.cpus()[0]?.model ?? "unknown",
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  kernel: `${os.type()} ${os.release()}`,
  node: process.version,
  loadAvg: os.loadavg(),
  fdLimit: run("sh", ["-c", "ulimit -n"]) ?? "unknown",
  tasksetAvailable: tasksetAvailable()
})

/** Pins this process (all threads) to `cpu`; returns whether it worked. */
export const pinSelf = (cpu: number): boolean =>
  run("taskset", ["-a", "-p", "-c", String(cpu), String(process.pid)]) !== undefined

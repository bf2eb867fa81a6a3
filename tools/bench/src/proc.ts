/**
 * Linux /proc readers for a server process and its descendants (a server that forks workers is
 * measured as a whole): resident memory from `status` VmRSS and CPU time from `stat`.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

const readOr = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

// Fields after the parenthesised comm, which may itself contain spaces or parentheses.
const statFields = (stat: string): ReadonlyArray<string> => stat.slice(stat.lastIndexOf(")") + 2).split(" ")

/** `pid` plus every live descendant. */
const processTree = (pid: number): ReadonlyArray<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of readdirSync("/proc")) {
    const child = Number(entry)
    if (!Number.isInteger(child)) continue
    const stat = readOr(`/proc/${entry}/stat`)
    if (stat === undefined) continue
    const ppid = Number(statFields(stat)[1])
    const list = children.get(ppid) ?? []
    list.push(child)
    children.set(ppid, list)
  }
  const out: Array<number> = []
  const queue = [pid]
  while (queue.length > 0) {
    const next = queue.pop()!
    out.push(next)
    queue.push(...(children.get(next) ?? []))
  }
  return out
}

/** One server pid or several. */
const roots = (pid: number | ReadonlyArray<number>): ReadonlyArray<number> => typeof pid === "number" ? [pid] : pid

/** VmRSS of one process in KiB, or 0 when it is gone. */
export const rssKiB = (pid: number): number => {
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(readOr(`/proc/${pid}/status`) ?? "")
  return match?.[1] === undefined ? 0 : Number(match[1])
}

/** Summed VmRSS of `pid` (or of each of several server processes) and their descendants, in KiB. */
export const treeRssKiB = (pid: number | ReadonlyArray<number>): number =>
  roots(pid).flatMap(processTree).reduce((sum, p) => sum + rssKiB(p), 0)

/** utime + stime of one process in clock ticks (all its threads), or 0 when it is gone. */
const cpuTicks = (pid: number): number => {
  const stat = readOr(`/proc/${pid}/stat`)
  if (stat === undefined) return 0
  const fields = statFields(stat)
  // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3 (state).
  return Number(fields[11]) + Number(fields[12])
}

const treeCpuTicks = (pid: number | ReadonlyArray<number>): number =>
  roots(pid).flatMap(processTree).reduce((sum, p) => sum + cpuTicks(p), 0)

let ticksPerSecond: number | undefined
const clockTicksPerSecond = (): number => {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/**
 * Measures the CPU share (100 = one full core) a process tree used between `start` and `stop`; given several pids
 * (the gateway processes of a scale-out run), their sum.
 */
export class CpuMeter {
  readonly #pid: number | ReadonlyArray<number>
  #ticks = 0
  #at = 0

  constructor(pid: number | ReadonlyArray<number>) {
    this.#pid = pid
  }

  start(): void {
    this.#ticks = treeCpuTicks(this.#pid)
    this.#at = performance.now()
  }

  /** Percent of one core since `start`. */
  read(): number {
    const seconds = (performance.now() - this.#at) / 1000
    if (seconds <= 0) return Number.NaN
    return ((treeCpuTicks(this.#pid) - this.#ticks) / clockTicksPerSecond() / seconds) * 100
  }

  /** CPU seconds used since `start` (all processes together). */
  seconds(): number {
    return (treeCpuTicks(this.#pid) - this.#ticks) / clockTicksPerSecond()
  }
}

/** The same measurement for the bench process itself, from `process.cpuUsage` (all threads). */
export class SelfCpuMeter {
  #usage = process.cpuUsage()
  #at = performance.now()

  start(): void {
    this.#usage = process.cpuUsage()
    this.#at = performance.now()
  }

  read(): number {
    const used = process.cpuUsage(this.#usage)
    const elapsedUs = (performance.now() - this.#at) * 1000
    return elapsedUs <= 0 ? Number.NaN : ((used.user + used.system) / elapsedUs) * 100
  }
}

export interface CpuTimes {
  readonly busy: number
  /** Time the hypervisor ran another guest while this virtual CPU had work (counted in `busy` too). */
  readonly steal: number
  readonly total: number
}

/**
 * Busy, stolen and total jiffies of one line of a /proc/stat text: `cpu` for the whole machine, `cpu0` for one CPU.
 * Zeros when the line is missing (not Linux), so a meter reads NaN instead of failing the run.
 */
export const parseCpuTimes = (stat: string, label: string): CpuTimes => {
  const line = stat.split("\n").find((l) => l.startsWith(`${label} `))
  if (line === undefined) return { busy: 0, steal: 0, total: 0 }
  // user nice system idle iowait irq softirq steal (guest time is already inside user).
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = v.reduce((a, b) => a + b, 0)
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  return { busy: total - idle, steal: v[7] ?? 0, total }
}

const cpuTimes = (label: string): CpuTimes => parseCpuTimes(readOr("/proc/stat") ?? "", label)
const coreTimes = (cpu: number): CpuTimes => cpuTimes(`cpu${cpu}`)

/** Percent of the time between two readings that `pick` took. */
const share = (from: CpuTimes, to: CpuTimes, pick: (times: CpuTimes) => number): number => {
  const total = to.total - from.total
  return total <= 0 ? Number.NaN : ((pick(to) - pick(from)) / total) * 100
}

/**
 * The machine's stolen CPU time per named phase (the attack suite's phases): on a virtual machine, a phase whose
 * victims' latency rose while the hypervisor took a third of the CPUs says more about the host than the gateway.
 * A name entered twice adds up.
 */
export class StealByPhase {
  readonly #times = new Map<string, { steal: number; total: number }>()
  readonly #read: () => CpuTimes
  #current: { readonly name: string; readonly from: CpuTimes } | undefined

  /** `read` gives the machine's times; a test passes its own. */
  constructor(read: () => CpuTimes = () => cpuTimes("cpu")) {
    this.#read = read
  }

  enter(name: string): void {
    const now = this.#read()
    this.#close(now)
    this.#current = { name, from: now }
  }

  /** Ends the current phase; percent stolen per phase, NaN where nothing was counted. */
  finish(): ReadonlyMap<string, number> {
    this.#close(this.#read())
    this.#current = undefined
    return new Map([...this.#times].map(([name, t]) => [name, t.total <= 0 ? Number.NaN : (t.steal / t.total) * 100]))
  }

  #close(now: CpuTimes): void {
    const current = this.#current
    if (current === undefined) return
    const before = this.#times.get(current.name) ?? { steal: 0, total: 0 }
    this.#times.set(current.name, {
      steal: before.steal + now.steal - current.from.steal,
      total: before.total + now.total - current.from.total
    })
  }
}

export interface StealOfCore {
  readonly cpu: number
  /** Percent of the core's time stolen from `start` to `stop`. */
  readonly meanPct: number
  /** The worst one-second sample, percent: steal comes in bursts that a mean over a run hides. */
  readonly worstSecondPct: number
}

/**
 * Samples once a second how much of each given core the hypervisor gave to other guests, so a benchmark run can be
 * told apart from the host: a run whose tail coincides with a second of 30% stolen is the host's.
 */
export class StealWatch {
  readonly #cpus: ReadonlyArray<number>
  readonly #read: (cpu: number) => CpuTimes
  #first: Array<CpuTimes> = []
  #last: Array<CpuTimes> = []
  #worst: Array<number> = []
  #timer: ReturnType<typeof setInterval> | undefined

  /** `read` gives one core's times; a test passes its own. */
  constructor(cpus: ReadonlyArray<number>, read: (cpu: number) => CpuTimes = coreTimes) {
    this.#cpus = cpus
    this.#read = read
  }

  start(): void {
    this.#first = this.#cpus.map(this.#read)
    this.#last = this.#first
    this.#worst = this.#cpus.map(() => 0)
    this.#timer = setInterval(() => this.sample(), 1000)
  }

  /** Takes one sample (the timer's, every second). */
  sample(): void {
    const now = this.#cpus.map(this.#read)
    now.forEach((times, i) => {
      const stolen = share(this.#last[i]!, times, (t) => t.steal)
      if (Number.isFinite(stolen)) this.#worst[i] = Math.max(this.#worst[i]!, stolen)
    })
    this.#last = now
  }

  /** Stops sampling; the last part-second counts in the mean only (too short for a fair one-second figure). */
  stop(): ReadonlyArray<StealOfCore> {
    clearInterval(this.#timer)
    const now = this.#cpus.map(this.#read)
    return this.#cpus.map((cpu, i) => ({
      cpu,
      meanPct: share(this.#first[i]!, now[i]!, (t) => t.steal),
      worstSecondPct: this.#worst[i]!
    }))
  }
}

/**
 * How busy one CPU was between `start` and `read`, in percent. Compared with the server's own CPU
 * share it shows how much of the server's core other processes took (noise on a shared machine).
 */
export class CoreMeter {
  readonly #cpu: number
  #start: CpuTimes = { busy: 0, steal: 0, total: 0 }

  constructor(cpu: number) {
    this.#cpu = cpu
  }

  start(): void {
    this.#start = coreTimes(this.#cpu)
  }

  read(): number {
    return share(this.#start, coreTimes(this.#cpu), (times) => times.busy)
  }

  /**
   * The share of the core's time the hypervisor gave to another guest (part of `read`): on a virtual machine, what
   * makes the same work take more of "its" core from one minute to the next.
   */
  readSteal(): number {
    return share(this.#start, coreTimes(this.#cpu), (times) => times.steal)
  }
}

let selfGcFn: (() => void) | undefined
/**
 * Full GC of the bench process itself, so that garbage from closed client sockets is not collected
 * in the middle of a measured window. `--expose-gc` set at run time, then `gc` read from a new context.
 */
export const selfGc = (): void => {
  if (selfGcFn === undefined) {
    setFlagsFromString("--expose-gc")
    const gc: unknown = runInNewContext("gc")
    selfGcFn = typeof gc === "function" ? () => Reflect.apply(gc, undefined, []) : () => undefined
  }
  selfGcFn()
}

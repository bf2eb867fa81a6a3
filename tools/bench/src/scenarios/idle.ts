/**
 * `idle`: connect and join N connections that then only heartbeat. Reports connect and join rates,
 * server RSS per connection (forced GC before both readings) and idle server CPU per connection.
 */
import type { ClientPool } from "../pool.ts"
import { CoreMeter, CpuMeter, treeRssKiB } from "../proc.ts"
import { settleGc, sleep } from "../serverProcess.ts"

export interface IdleResult {
  readonly requested: number
  readonly connections: number
  readonly failures: number
  readonly firstError: string | undefined
  readonly connectPerSec: number
  readonly joinPerSec: number
  readonly rssBeforeKiB: number
  readonly rssAfterKiB: number
  readonly rssPerConnectionKiB: number
  /** Server CPU time per connection per second while idle, in microseconds. */
  readonly idleCpuUsPerConnSec: number
  /** Share of the server's core other processes used while connecting and joining. */
  readonly otherOnServerCorePct: number
}

interface IdlePlan {
  readonly connections: number
  readonly concurrency: number
  readonly settleMs: number
  readonly idleCpuMs: number
  readonly serverCore: number | undefined
}

/** `serverPid`: the server, or every process of a scale-out gateway (RSS and CPU are their sum). */
export const runIdle = async (
  pool: ClientPool,
  serverPid: number | ReadonlyArray<number>,
  plan: IdlePlan
): Promise<IdleResult> => {
  await settleGc(serverPid, plan.settleMs)
  const rssBeforeKiB = treeRssKiB(serverPid)
  const core = plan.serverCore === undefined ? undefined : new CoreMeter(plan.serverCore)
  const growCpu = new CpuMeter(serverPid)
  core?.start()
  growCpu.start()
  const grown = await pool.grow(plan.connections, plan.concurrency)
  const otherOnServerCorePct = Math.max(0, (core?.read() ?? Number.NaN) - growCpu.read())
  await settleGc(serverPid, plan.settleMs)
  const rssAfterKiB = treeRssKiB(serverPid)
  const cpu = new CpuMeter(serverPid)
  cpu.start()
  await sleep(plan.idleCpuMs)
  const cpuPct = cpu.read()
  const connections = pool.size
  return {
    requested: plan.connections,
    connections,
    failures: grown.failures,
    firstError: grown.firstError,
    connectPerSec: grown.connectPerSec,
    joinPerSec: grown.joinPerSec,
    rssBeforeKiB,
    rssAfterKiB,
    rssPerConnectionKiB: connections > 0 ? (rssAfterKiB - rssBeforeKiB) / connections : Number.NaN,
    idleCpuUsPerConnSec: connections > 0 ? ((cpuPct / 100) * 1e6) / connections : Number.NaN,
    otherOnServerCorePct
  }
}

/**
 * Runs the selected scenarios against one target: starts its server, shares one subscriber pool
 * across scenarios (idle grows it, fanout trims it to the subscriber count), and always cleans up.
 */
import type { BenchOptions } from "./cli.ts"
import { DeliveryCollector } from "./collector.ts"
import { ClientPool } from "./pool.ts"
import { selfGc } from "./proc.ts"
import { type Gateways, startGateways } from "./scaleOut.ts"
import { settleGc, sleep } from "./serverProcess.ts"
import { type IdleResult, runIdle } from "./scenarios/idle.ts"
import { runSaturate, type SaturateResult } from "./scenarios/saturate.ts"
import { measureQuietWindow, type RetryBudget, type WindowContext, type WindowResult } from "./scenarios/window.ts"
import type { Target, TargetName } from "./targets/Target.ts"

export interface TargetRun {
  readonly target: TargetName
  readonly serverCommand: string
  /** How many server processes, and their Redis (scale-out runs). */
  processes?: string
  idle?: IdleResult
  fanout?: WindowResult
  saturate?: SaturateResult
  /** Why the run (or part of it) did not complete. */
  error?: string
}

interface RunContext {
  readonly options: BenchOptions
  readonly repoRoot: string
  readonly serverCpu: number | undefined
  readonly clientCpu: number | undefined
  /** Noisy windows a target may re-measure. */
  readonly retries: number
  /** performance.now() after which no new scenario or step starts. */
  readonly deadline: number
  readonly log: (line: string) => void
}

const CONNECT_TIMEOUT_MS = 15_000
const MAX_DRAIN_MS = 10_000

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export const runTarget = async (target: Target, ctx: RunContext, run: TargetRun): Promise<void> => {
  const { options, log } = ctx
  const wants = (s: BenchOptions["scenarios"][number]): boolean => options.scenarios.includes(s)
  let gateways: Gateways | undefined
  let pool: ClientPool | undefined
  const collector = new DeliveryCollector()
  try {
    log(`[${target.name}] starting ${options.scale.processes} server process(es)`)
    // Every process on the server's core: the other core is the bench's, so a scale-out run measures the cost of
    // going through Redis, not a speed-up.
    gateways = await startGateways(
      options.scale,
      (port, env) => target.start({ repoRoot: ctx.repoRoot, port, cpu: ctx.serverCpu, env }),
      ctx.serverCpu
    )
    const { pids, alive } = gateways
    if (options.scale.processes > 1 || options.scale.redis !== undefined) run.processes = gateways.description
    log(`[${target.name}] ${gateways.description} on ports ${gateways.servers.map((s) => s.port).join(", ")}`)
    pool = new ClientPool(
      target,
      gateways.servers.map((s) => s.port),
      (process) => collector.eventsOf(process),
      CONNECT_TIMEOUT_MS
    )
    await sleep(500)

    if (wants("idle")) {
      log(`[${target.name}] idle: ${options.idleConnections} connections`)
      run.idle = await runIdle(pool, pids, {
        connections: options.idleConnections,
        concurrency: options.concurrency,
        settleMs: options.settleS * 1000,
        idleCpuMs: options.idleCpuS * 1000,
        serverCore: ctx.serverCpu
      })
      log(`[${target.name}] idle: ${JSON.stringify(run.idle)}`)
      alive()
    }

    if (!wants("fanout") && !wants("saturate")) return
    if (performance.now() > ctx.deadline) throw new Error("time budget exhausted before fanout")
    if (pool.size > options.subscribers) {
      pool.shrinkTo(options.subscribers)
      await sleep(500)
    } else if (pool.size < options.subscribers) {
      log(`[${target.name}] connecting ${options.subscribers - pool.size} subscribers`)
      const grown = await pool.grow(options.subscribers - pool.size, options.concurrency)
      if (grown.failures > 0) log(`[${target.name}] ${grown.failures} connect/join failures: ${grown.firstError}`)
    }
    // Collect the garbage of connecting (and of the connections just closed) on both sides now,
    // not as a major GC pause inside the first measured window.
    selfGc()
    await settleGc(pids, options.settleS * 1000)
    const publisher = await pool.extra({
      onDelivery: () => undefined,
      onReorder: () => undefined,
      onUnexpectedClose: collector.onUnexpectedClose
    })
    const windowCtx: WindowContext = {
      publisher,
      collector,
      subscribers: pool.size,
      subscribersByProcess: pool.sizes(),
      serverPids: pids,
      redisUrl: gateways.redisUrl,
      sideProcesses: gateways.redisPid === undefined ? [] : [gateways.redisPid],
      serverCore: ctx.serverCpu,
      clientCore: ctx.clientCpu,
      payloadBytes: options.payloadBytes
    }
    let seq = 1
    const budget: RetryBudget = { remaining: ctx.retries, deadline: ctx.deadline }

    if (wants("fanout")) {
      log(`[${target.name}] fanout: ${pool.size} subscribers at ${options.rate} msg/s for ${options.durationS} s`)
      const { result, nextSeq } = await measureQuietWindow(
        windowCtx,
        {
          rate: options.rate,
          warmupMs: options.warmupS * 1000,
          durationMs: options.durationS * 1000,
          firstSeq: seq,
          maxDrainMs: MAX_DRAIN_MS
        },
        budget
      )
      seq = nextSeq
      run.fanout = result
      log(`[${target.name}] fanout: ${JSON.stringify(result)}`)
      alive()
    }

    if (wants("saturate")) {
      log(`[${target.name}] saturate: from ${options.rate} msg/s x${options.stepFactor} per step`)
      const { result } = await runSaturate(
        windowCtx,
        {
          startRate: options.rate,
          factor: options.stepFactor,
          maxSteps: options.maxSteps,
          warmupMs: options.stepWarmupS * 1000,
          stepMs: options.stepS * 1000,
          p99LimitMs: options.p99LimitMs,
          maxDrainMs: MAX_DRAIN_MS / 2,
          deadline: ctx.deadline
        },
        seq,
        budget
      )
      run.saturate = result
      for (const step of result.steps) {
        log(
          `[${target.name}] step ${step.rate} msg/s: ${Math.round(step.deliveriesPerSec)} deliveries/s p99 ${
            step.p99.toFixed(1)
          } ms loss ${step.loss} reordered ${step.reordered} cpu ${step.serverCpuPct.toFixed(0)}% client ${
            step.clientCpuPct.toFixed(0)
          }% others on server/client core ${step.otherOnServerCorePct.toFixed(0)}%/${
            step.otherOnClientCorePct.toFixed(0)
          }% attempts ${step.attempts}`
        )
      }
      log(`[${target.name}] saturate stopped: ${result.stopReason}`)
      alive()
    }
  } catch (error) {
    run.error = errorText(error)
    log(`[${target.name}] error: ${run.error}`)
  } finally {
    pool?.closeAll()
    await gateways?.stop()
  }
}

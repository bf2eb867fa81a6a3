/**
 * One measured publishing window shared by `fanout` and `saturate`: warm up, publish at a fixed
 * rate for a fixed time, wait for the deliveries to drain, then read latency, throughput, loss and
 * the CPU both processes used.
 */
import type { DeliveryCollector } from "../collector.ts"
import { CoreMeter, CpuMeter, SelfCpuMeter, treeRssKiB } from "../proc.ts"
import { publishFor } from "../publisher.ts"
import { readRedisStats, type RedisCost, redisCost } from "../redisStats.ts"
import { sleep } from "../serverProcess.ts"
import type { Connection } from "../targets/Target.ts"

export interface WindowResult {
  readonly rate: number
  readonly achievedPublishRate: number
  readonly subscribers: number
  readonly durationS: number
  readonly published: number
  readonly expected: number
  readonly received: number
  readonly loss: number
  /** Deliveries that repeated or went back in sequence on their connection (should be 0). */
  readonly reordered: number
  readonly offeredDeliveriesPerSec: number
  readonly deliveriesPerSec: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly serverCpuPct: number
  /** Gateway CPU (all its processes) per 1,000 deliveries, in ms. */
  readonly serverCpuMsPer1000: number
  readonly clientCpuPct: number
  /** Busy share of the server's CPU not used by the server (other processes), when pinned. */
  readonly otherOnServerCorePct: number
  /** Busy share of the bench's CPU not used by the bench, when pinned. */
  readonly otherOnClientCorePct: number
  /** How many times the window was measured (re-measured when other processes interfered). */
  readonly attempts: number
  readonly serverRssKiB: number
  readonly unexpectedCloses: number
  /** Per server process (index 0 = process 1): subscribers' in-window deliveries and what they should have been. */
  readonly receivedByProcess: ReadonlyArray<number>
  readonly expectedByProcess: ReadonlyArray<number>
  /** Commands and CPU the window cost Redis, when the gateways use one. */
  readonly redis?: RedisCost
}

export interface WindowContext {
  readonly publisher: Connection
  readonly collector: DeliveryCollector
  readonly subscribers: number
  /** Subscribers per server process (index 0 = process 1, which also has the publisher). */
  readonly subscribersByProcess: ReadonlyArray<number>
  /** Every server process: CPU and RSS are their sum. */
  readonly serverPids: ReadonlyArray<number>
  /** The Redis the gateways use: its `INFO commandstats` and CPU are read around the window. */
  readonly redisUrl: string | undefined
  /**
   * Server-side processes besides the gateways (the private Redis, pinned to the server's core): their CPU is neither
   * the gateways' nor "other processes" on that core.
   */
  readonly sideProcesses: ReadonlyArray<number>
  /** The CPUs the server and the bench are pinned to, if any. */
  readonly serverCore: number | undefined
  readonly clientCore: number | undefined
  readonly payloadBytes: number
}

interface WindowPlan {
  readonly rate: number
  readonly warmupMs: number
  readonly durationMs: number
  readonly firstSeq: number
  /** Give up waiting for stragglers after this long past the last publish. */
  readonly maxDrainMs: number
}

/** Other processes above this share of either pinned core make a window "noisy". */
export const NOISE_LIMIT_PCT = 15

export const noiseOf = (r: WindowResult): number =>
  Math.max(
    Number.isNaN(r.otherOnServerCorePct) ? 0 : r.otherOnServerCorePct,
    Number.isNaN(r.otherOnClientCorePct) ? 0 : r.otherOnClientCorePct
  )

/** Re-measurements a target may spend on noisy windows, shared by its scenarios. */
export interface RetryBudget {
  remaining: number
  /** performance.now() after which no retry starts. */
  readonly deadline: number
}

const STALL_MS = 2_000

const measureWindow = async (
  ctx: WindowContext,
  plan: WindowPlan
): Promise<{ readonly result: WindowResult; readonly nextSeq: number }> => {
  let seq = plan.firstSeq
  // Publishes at the plan's rate from the next sequence number on; the caller advances `seq` by what it published.
  const publish = (durationMs: number) =>
    publishFor(ctx.publisher, { rate: plan.rate, durationMs, firstSeq: seq, payloadBytes: ctx.payloadBytes })
  if (plan.warmupMs > 0) {
    const warm = await publish(plan.warmupMs)
    seq += warm.published
  }
  const { collector } = ctx
  collector.startWindow(seq)
  const closesBefore = collector.unexpectedCloses
  const redisBefore = ctx.redisUrl === undefined ? undefined : await readRedisStats(ctx.redisUrl)
  const serverCpu = new CpuMeter(ctx.serverPids)
  const sideCpu = ctx.sideProcesses.length === 0 ? undefined : new CpuMeter(ctx.sideProcesses)
  sideCpu?.start()
  const clientCpu = new SelfCpuMeter()
  const core = ctx.serverCore === undefined ? undefined : new CoreMeter(ctx.serverCore)
  const clientCore = ctx.clientCore === undefined ? undefined : new CoreMeter(ctx.clientCore)
  serverCpu.start()
  clientCpu.start()
  core?.start()
  clientCore?.start()
  const pub = await publish(plan.durationMs)
  seq += pub.published
  const expected = pub.published * ctx.subscribers

  const drainStart = performance.now()
  let lastCount = collector.received
  let lastProgress = drainStart
  while (collector.received - collector.reordered < expected) {
    await sleep(25)
    const now = performance.now()
    if (collector.received !== lastCount) {
      lastCount = collector.received
      lastProgress = now
    } else if (now - lastProgress > STALL_MS) break
    if (now - drainStart > plan.maxDrainMs) break
  }
  const serverCpuPct = serverCpu.read()
  const serverCpuSeconds = serverCpu.seconds()
  const sideCpuPct = sideCpu?.read() ?? 0
  const clientCpuPct = clientCpu.read()
  const coreBusyPct = core?.read() ?? Number.NaN
  const clientCoreBusyPct = clientCore?.read() ?? Number.NaN
  const serverRssKiB = treeRssKiB(ctx.serverPids)
  const redis = ctx.redisUrl === undefined || redisBefore === undefined
    ? undefined
    : redisCost(redisBefore, await readRedisStats(ctx.redisUrl))

  const lastReceived = collector.lastReceivedAt - performance.timeOrigin
  const spanMs = Math.max(pub.endedAt - pub.startedAt, plan.durationMs, lastReceived - pub.startedAt)
  const { latency, received, reordered } = collector
  return {
    nextSeq: seq,
    result: {
      rate: plan.rate,
      achievedPublishRate: pub.achievedRate,
      subscribers: ctx.subscribers,
      durationS: plan.durationMs / 1000,
      published: pub.published,
      expected,
      received,
      // Duplicates must not hide losses: only in-order deliveries count towards the expected total.
      loss: Math.max(0, expected - (received - reordered)),
      reordered,
      offeredDeliveriesPerSec: plan.rate * ctx.subscribers,
      deliveriesPerSec: (received / spanMs) * 1000,
      p50: latency.percentile(0.5),
      p99: latency.percentile(0.99),
      p999: latency.percentile(0.999),
      max: latency.max,
      serverCpuPct,
      serverCpuMsPer1000: received > 0 ? (serverCpuSeconds * 1e6) / received : Number.NaN,
      clientCpuPct,
      otherOnServerCorePct: Math.max(0, coreBusyPct - serverCpuPct - sideCpuPct),
      otherOnClientCorePct: Math.max(0, clientCoreBusyPct - clientCpuPct),
      attempts: 1,
      serverRssKiB,
      unexpectedCloses: collector.unexpectedCloses - closesBefore,
      receivedByProcess: ctx.subscribersByProcess.map((_, i) => collector.receivedByProcess[i] ?? 0),
      expectedByProcess: ctx.subscribersByProcess.map((n) => n * pub.published),
      ...(redis === undefined ? {} : { redis })
    }
  }
}

/**
 * `measureWindow`, repeated while other processes took more than NOISE_LIMIT_PCT of a pinned core
 * and the budget allows; returns the least disturbed attempt. The machine is shared, and one busy
 * neighbour can otherwise decide a comparison.
 */
export const measureQuietWindow = async (
  ctx: WindowContext,
  plan: WindowPlan,
  budget: RetryBudget
): Promise<{ readonly result: WindowResult; readonly nextSeq: number }> => {
  let best: WindowResult | undefined
  let seq = plan.firstSeq
  let attempts = 0
  const cost = plan.warmupMs + plan.durationMs + plan.maxDrainMs
  for (;;) {
    const { result, nextSeq } = await measureWindow(ctx, { ...plan, firstSeq: seq })
    seq = nextSeq
    attempts++
    if (best === undefined || noiseOf(result) < noiseOf(best)) best = result
    if (noiseOf(result) <= NOISE_LIMIT_PCT || budget.remaining <= 0 || performance.now() + cost > budget.deadline) break
    budget.remaining--
  }
  return { result: { ...best, attempts }, nextSeq: seq }
}

/**
 * `saturate`: raise the publish rate geometrically until deliveries/s stops growing, p99 exceeds the
 * limit, messages are lost or time runs out. The max sustained throughput is the best step that
 * stayed within the p99 limit without loss.
 */
import { measureQuietWindow, type RetryBudget, type WindowContext, type WindowResult } from "./window.ts"

interface SaturatePlan {
  readonly startRate: number
  readonly factor: number
  readonly maxSteps: number
  readonly warmupMs: number
  readonly stepMs: number
  readonly p99LimitMs: number
  readonly maxDrainMs: number
  /** performance.now() after which no new step starts. */
  readonly deadline: number
}

export interface SaturateResult {
  readonly steps: ReadonlyArray<WindowResult>
  readonly stopReason: string
  /** Best step within the p99 limit, without loss or reordering, if any. */
  readonly sustained: WindowResult | undefined
  readonly peakDeliveriesPerSec: number
}

// A step must beat the best so far by this factor to count as "still growing".
const GROWTH = 1.05

export const runSaturate = async (
  ctx: WindowContext,
  plan: SaturatePlan,
  firstSeq: number,
  budget: RetryBudget
): Promise<{ readonly result: SaturateResult; readonly nextSeq: number }> => {
  const steps: Array<WindowResult> = []
  let seq = firstSeq
  let rate = plan.startRate
  let best = 0
  let stopReason = `reached ${plan.maxSteps} steps`
  for (let i = 0; i < plan.maxSteps; i++) {
    const stepBudget = plan.warmupMs + plan.stepMs + plan.maxDrainMs
    if (performance.now() + stepBudget > plan.deadline) {
      stopReason = "time budget exhausted"
      break
    }
    const { result, nextSeq } = await measureQuietWindow(
      ctx,
      { rate, warmupMs: plan.warmupMs, durationMs: plan.stepMs, firstSeq: seq, maxDrainMs: plan.maxDrainMs },
      budget
    )
    seq = nextSeq
    steps.push(result)
    if (result.p99 > plan.p99LimitMs) {
      stopReason = `p99 ${Math.round(result.p99)} ms > ${plan.p99LimitMs} ms at ${Math.round(rate)} msg/s`
      break
    }
    if (result.loss > 0 || result.reordered > 0) {
      stopReason = `${result.loss} lost / ${result.reordered} reordered at ${Math.round(rate)} msg/s`
      break
    }
    if (result.deliveriesPerSec < best * GROWTH) {
      stopReason = `deliveries/s stopped growing at ${Math.round(rate)} msg/s`
      break
    }
    best = Math.max(best, result.deliveriesPerSec)
    rate = Math.round(rate * plan.factor * 10) / 10
  }
  const within = steps.filter((s) => s.p99 <= plan.p99LimitMs && s.loss === 0 && s.reordered === 0)
  const sustained = within.reduce<WindowResult | undefined>(
    (acc, s) => (acc === undefined || s.deliveriesPerSec > acc.deliveriesPerSec ? s : acc),
    undefined
  )
  return {
    nextSeq: seq,
    result: {
      steps,
      stopReason,
      sustained,
      peakDeliveriesPerSec: steps.reduce((m, s) => Math.max(m, s.deliveriesPerSec), 0)
    }
  }
}

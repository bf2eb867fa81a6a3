/** Metric handles of the gateway process itself. */
import { Effect, Metric } from "effect"

export const workerInfo = Metric.gauge("wedsync_worker_info", {
  description: "1, labelled with this process's worker number and pid: which process of a WORKERS group answered"
})

/** Sets this process's `wedsync_worker_info` series. */
export const declareWorker = (workerId: number, pid: number): Effect.Effect<void> =>
  Metric.update(Metric.withAttributes(workerInfo, { worker: String(workerId), pid: String(pid) }), 1)

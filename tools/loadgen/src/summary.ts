/** The JSON summary a run writes, and what the HTML report is drawn from. */

export interface Sample {
  /** Seconds since the run started. */
  readonly t: number
  /** Client-measured delivery latency over the sample's window, ms (NaN-free: null when nothing arrived). */
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  /** Sockets the loadgen holds open, and the gateway's `wedsync_connection_open` when it answered. */
  readonly devices: number
  readonly gatewayConnections: number | null
  /** Deliveries the devices received per second over the window. */
  readonly deliveriesPerS: number
  readonly desiredReplicas: number | null
  readonly reason: string | null
  /** Cache hits / (hits + misses) since the start, when the gateway reports cache metrics. */
  readonly cacheHitRatio: number | null
}

export interface Summary {
  readonly startedAt: string
  readonly calendar: string
  readonly weddings: number
  readonly durationS: number
  readonly compression: number
  readonly devicesPlanned: number
  readonly forecastDevices: number
  readonly devicesJoined: number
  readonly joinFailures: number
  readonly firstJoinFailure: string | null
  readonly presenceTracks: number
  readonly broadcastsSent: number
  readonly deliveries: number
  /** Gaps in the sequence each device saw after its first delivery: messages the gateway dropped. */
  readonly lost: number
  readonly latency: { readonly p50Ms: number | null; readonly p99Ms: number | null; readonly maxMs: number | null }
  readonly rate: { readonly basePerWedding: number; readonly growth: number }
  readonly gateway: string
  readonly postgresChanges: string
  /** With `--database-url`: the rows inserted and what the devices received of them. */
  readonly changes: {
    readonly inserted: number
    readonly deliveries: number
    /** Gaps in the per-wedding row sequence a device saw after its first row. */
    readonly lost: number
    readonly latency: { readonly p50Ms: number | null; readonly p99Ms: number | null; readonly maxMs: number | null }
  } | null
  readonly samples: ReadonlyArray<Sample>
}

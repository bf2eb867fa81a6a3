/** Command-line options of `npm run bench`, with defaults sized to finish in under five minutes. */
import { parseArgs } from "node:util"
import { parseScaleOut, SCALE_OUT_USAGE, type ScaleOut } from "./scaleOut.ts"
import { isTargetName, TARGET_NAMES, type TargetName } from "./targets/Target.ts"
import { CLIENT_MODES, type ClientMode } from "./targets/transport.ts"

const SCENARIOS = ["idle", "fanout", "saturate"] as const
type Scenario = (typeof SCENARIOS)[number]

export interface BenchOptions {
  readonly scenarios: ReadonlyArray<Scenario>
  readonly targets: ReadonlyArray<TargetName>
  readonly client: ClientMode
  /** Benchmark the gateway of this git ref (a clean snapshot) instead of the working tree. */
  readonly gatewayRef: string | undefined
  readonly idleConnections: number
  readonly subscribers: number
  readonly rate: number
  readonly durationS: number
  readonly warmupS: number
  readonly payloadBytes: number
  readonly concurrency: number
  readonly stepS: number
  readonly stepWarmupS: number
  readonly stepFactor: number
  readonly maxSteps: number
  readonly p99LimitMs: number
  readonly retries: number
  readonly settleS: number
  readonly idleCpuS: number
  readonly timeoutS: number
  readonly pin: boolean
  readonly write: boolean
  readonly docs: string
  readonly help: boolean
  /** Gateway processes and their Redis (gateway target only). */
  readonly scale: ScaleOut
}

export const USAGE = `Usage: npm run bench -- [options]

  --scenario <list>        idle,fanout,saturate or all                       (default all)
  --targets <list>         gateway,ws-relay,socketio                         (default all three)
  --client <mode>          lean (own frame parser on raw TCP) or library
                           (ws / socket.io-client)                           (default lean)
  --gateway-ref <ref>      run the gateway from a clean snapshot of this commit
                           instead of the working tree                       (default: working tree)
  --idle-connections <n>   idle: connections to open and join                (default 10000)
  --subscribers <n>        fanout/saturate: subscribers on realtime:bench    (default 5000)
  --rate <msg/s>           fanout: publish rate; saturate starts here        (default 8)
  --duration <s>           fanout: measured seconds after warm-up            (default 10)
  --warmup <s>             fanout: warm-up seconds (not measured)            (default 2)
  --payload <bytes>        broadcast payload JSON size                       (default 200)
  --concurrency <n>        connects/joins in flight                          (default 200)
  --step <s>               saturate: measured seconds per step               (default 3)
  --step-warmup <s>        saturate: warm-up seconds per step                (default 1)
  --step-factor <x>        saturate: rate multiplier per step                (default 1.6)
  --max-steps <n>          saturate: at most this many steps                 (default 10)
  --p99-limit <ms>         saturate: stop once p99 exceeds this              (default 1000)
${SCALE_OUT_USAGE}  --retries <n>            re-measure up to n windows per target in which other
                           processes took > 15% of a pinned core             (default 3)
  --settle <s>             idle: wait after forced GC before reading RSS     (default 2)
  --idle-cpu <s>           idle: seconds of idle server CPU measurement      (default 3)
  --timeout <s>            hard limit for the whole run                      (default 290)
  --no-pin                 do not pin server to CPU 0 / bench to CPU 1
  --write                  also replace the results section of --docs
  --docs <path>            markdown file for --write                         (default docs/benchmarks.md)
`

const list = <T extends string>(
  raw: string,
  all: ReadonlyArray<T>,
  valid: (s: string) => s is T,
  what: string
): ReadonlyArray<T> => {
  if (raw === "all") return all
  const items = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  for (const item of items) if (!valid(item)) throw new Error(`unknown ${what} "${item}" (expected ${all.join(", ")})`)
  return items.filter(valid)
}

const positive = (raw: string, name: string): number => {
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got "${raw}"`)
  return n
}

const clientMode = (raw: string): ClientMode => {
  const mode = CLIENT_MODES.find((m) => m === raw)
  if (mode === undefined) throw new Error(`--client must be one of ${CLIENT_MODES.join(", ")}, got "${raw}"`)
  return mode
}

const isScenario = (s: string): s is Scenario => (SCENARIOS as ReadonlyArray<string>).includes(s)

export const parseOptions = (argv: ReadonlyArray<string>): BenchOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowNegative: true,
    options: {
      scenario: { type: "string", default: "all" },
      targets: { type: "string", default: TARGET_NAMES.join(",") },
      client: { type: "string", default: "lean" },
      "gateway-ref": { type: "string" },
      "idle-connections": { type: "string", default: "10000" },
      subscribers: { type: "string", default: "5000" },
      rate: { type: "string", default: "8" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      payload: { type: "string", default: "200" },
      concurrency: { type: "string", default: "200" },
      step: { type: "string", default: "3" },
      "step-warmup": { type: "string", default: "1" },
      "step-factor": { type: "string", default: "1.6" },
      "max-steps": { type: "string", default: "10" },
      "p99-limit": { type: "string", default: "1000" },
      retries: { type: "string", default: "3" },
      settle: { type: "string", default: "2" },
      "idle-cpu": { type: "string", default: "3" },
      timeout: { type: "string", default: "290" },
      pin: { type: "boolean", default: true },
      write: { type: "boolean", default: false },
      docs: { type: "string", default: "docs/benchmarks.md" },
      help: { type: "boolean", short: "h", default: false },
      processes: { type: "string", default: "1" },
      redis: { type: "string" }
    }
  })
  const stepFactor = positive(values["step-factor"], "step-factor")
  if (stepFactor <= 1) throw new Error("--step-factor must be greater than 1")
  const targets = list(values.targets, TARGET_NAMES, isTargetName, "target")
  const scale = parseScaleOut(values.processes, values.redis)
  if ((scale.processes > 1 || scale.redis !== undefined) && targets.some((t) => t !== "gateway")) {
    throw new Error("--processes and --redis apply to the gateway only: add --targets gateway")
  }
  return {
    scenarios: list(values.scenario, SCENARIOS, isScenario, "scenario"),
    targets,
    client: clientMode(values.client),
    gatewayRef: values["gateway-ref"],
    idleConnections: Math.round(positive(values["idle-connections"], "idle-connections")),
    subscribers: Math.round(positive(values.subscribers, "subscribers")),
    rate: positive(values.rate, "rate"),
    durationS: positive(values.duration, "duration"),
    warmupS: Number(values.warmup) >= 0 ? Number(values.warmup) : 0,
    payloadBytes: Math.round(positive(values.payload, "payload")),
    concurrency: Math.round(positive(values.concurrency, "concurrency")),
    stepS: positive(values.step, "step"),
    stepWarmupS: Number(values["step-warmup"]) >= 0 ? Number(values["step-warmup"]) : 0,
    stepFactor,
    maxSteps: Math.round(positive(values["max-steps"], "max-steps")),
    p99LimitMs: positive(values["p99-limit"], "p99-limit"),
    retries: Number(values.retries) >= 0 ? Math.round(Number(values.retries)) : 0,
    settleS: positive(values.settle, "settle"),
    idleCpuS: positive(values["idle-cpu"], "idle-cpu"),
    timeoutS: positive(values.timeout, "timeout"),
    pin: values.pin,
    write: values.write,
    docs: values.docs,
    help: values.help,
    scale
  }
}

/**
 * `npm run bench -- [options]`: runs the same idle / fanout / saturate workload against the gateway,
 * a bare `ws` relay and Socket.IO, one server child process at a time, and prints a markdown report
 * (stdout; progress goes to stderr). `--write` also puts it into docs/benchmarks.md.
 */
import { existsSync } from "node:fs"
import { isAbsolute, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type BenchOptions, parseOptions, USAGE } from "./cli.ts"
import { writeSection } from "./docsFile.ts"
import { type GatewaySource, gatewaySource } from "./gatewaySource.ts"
import { machineFacts, pinSelf } from "./machine.ts"
import { renderReport } from "./report.ts"
import { runTarget, type TargetRun } from "./runTarget.ts"
import { killAllServers } from "./serverProcess.ts"
import { GATEWAY_ENTRY, makeGatewayTarget } from "./targets/gateway.ts"
import { socketIoTarget } from "./targets/socketio.ts"
import type { Target, TargetName } from "./targets/Target.ts"
import type { ClientMode } from "./targets/transport.ts"
import { wsRelayTarget } from "./targets/wsRelay.ts"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

// Scenarios stop starting new work this long before the hard timeout, leaving time to clean up.
const RESERVE_MS = 25_000

const parse = (): BenchOptions => {
  try {
    return parseOptions(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`)
    process.exit(2)
  }
}

const targetFor = (name: TargetName, client: ClientMode, gateway: () => GatewaySource): Promise<Target> =>
  name === "gateway"
    ? makeGatewayTarget(client, gateway())
    : Promise.resolve(name === "ws-relay" ? wsRelayTarget(client) : socketIoTarget(client))

const main = async (): Promise<void> => {
  const options = parse()
  if (options.help) {
    process.stdout.write(USAGE)
    return
  }
  const started = performance.now()
  const facts = machineFacts()
  const pin = options.pin && facts.tasksetAvailable && facts.nproc >= 2
  const benchPinned = pin && pinSelf(1)
  const serverCpu = pin ? 0 : undefined
  const clientCpu = benchPinned ? 1 : undefined
  const notes: Array<string> = [
    options.client === "lean"
      ? "bench clients: `lean` = the bench's own RFC 6455 frame parser on raw TCP sockets speaking each target's protocol (Supabase vsn 2.0.0 frames; Engine.IO 4 / Socket.IO 5 packets), so that one client core can absorb more than one server core sends"
      : "bench clients: `library` = `ws` 8.23.0 (perMessageDeflate off) for gateway and ws-relay, official socket.io-client 4.8.4 (websocket transport, one Manager per connection) for socketio",
    "latency = receive time − send timestamp carried in the payload (publisher and subscribers share one process and clock); every delivery is measured (log histogram, ≤ 1% error)",
    "server RSS = VmRSS of the server process tree; before each reading a full GC is forced through a `--expose-gc` preload hook (SIGUSR2) and memory is left to settle",
    "server CPU from /proc/<pid>/stat (utime+stime of the server process tree); 100% = one core"
  ]
  if (options.scale.processes > 1 || options.scale.redis !== undefined) {
    notes.push(
      `scale-out: ${options.scale.processes} gateway process(es) sharing the server's core (the other core is the bench's, so this measures the cost of going through Redis, not a speed-up); subscribers take the processes in turn, the publisher is on process 1; Redis commands per published message = the difference of \`INFO commandstats\` before and after the measured window (the gateways' background commands in that window included) ÷ messages published; CPU per 1,000 deliveries sums every gateway process`
    )
  }
  if (facts.loadAvg[0] !== undefined && facts.loadAvg[0] > 0.5) {
    notes.push(`load average was ${facts.loadAvg[0].toFixed(2)} at start: other work shared the 2 cores, expect noise`)
  }
  const runs: Array<TargetRun> = []
  // The workspace form works whatever the root script forwards.
  const command = `npm run bench -w @wedsync/tools -- ${process.argv.slice(2).join(" ")}`.trim()

  const finish = (): void => {
    const report = renderReport({ facts, command, options, serverCpu, benchPinned, runs, notes })
    process.stdout.write(report)
    if (options.write) {
      const path = isAbsolute(options.docs) ? options.docs : join(repoRoot, options.docs)
      writeSection(path, report)
      log(`wrote ${path}`)
    }
  }

  const hardTimer = setTimeout(() => {
    log(`hard timeout of ${options.timeoutS} s reached: killing servers and reporting what was measured`)
    killAllServers()
    notes.push(`the run hit the ${options.timeoutS} s hard timeout; missing numbers were not measured`)
    finish()
    process.exit(3)
  }, options.timeoutS * 1000)

  const sourceOfGateway = (): GatewaySource => gatewaySource(repoRoot, options.gatewayRef)
  const deadline = started + options.timeoutS * 1000 - RESERVE_MS
  for (const name of options.targets) {
    const target = await targetFor(name, options.client, sourceOfGateway)
    const entry: TargetRun = { target: name, serverCommand: target.serverCommand }
    runs.push(entry)
    if (name === "gateway" && options.gatewayRef === undefined && !existsSync(join(repoRoot, GATEWAY_ENTRY))) {
      entry.error = `${GATEWAY_ENTRY} does not exist yet`
      log(`[gateway] skipped: ${entry.error}`)
      continue
    }
    if (performance.now() > deadline) {
      entry.error = "skipped: time budget exhausted"
      continue
    }
    await runTarget(target, { options, repoRoot, serverCpu, clientCpu, retries: options.retries, deadline, log }, entry)
  }
  clearTimeout(hardTimer)
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
  finish()
}

process.on("exit", killAllServers)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAllServers()
    process.exit(130)
  })
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    killAllServers()
    process.exit(1)
  }
)

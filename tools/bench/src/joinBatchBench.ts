/**
 * Join batching through the upstream pool (issue 11, item 4): how long one client waits for N channels it joins at
 * once, when each first join of a topic needs the upstream's join. Two gateway processes: the "hosted" one, and a relay
 * in upstream mode reaching it through a TCP proxy that delays every chunk by `--latency` ms each way (hosted Supabase
 * is a network away; on loopback a round trip costs nothing and hides what batching saves).
 *
 * Per run, with fresh topics: the client sends its N joins at once ("together") and the time to the last `ok` is taken;
 * then, on fresh topics again, it sends each join after the previous one's reply ("one by one", what a client that
 * waits for each subscription does, and what every client got before joins were opened together). Reported: both
 * times and the relay's upstream batches (`wedsync_upstream_batches_total`) for each. `--gateway-ref <ref>` runs a
 * committed gateway instead of the working tree (for the figure before the change).
 *
 * Run: `npm run bench:joins -w @wedsync/tools [-- --channels 100 --latency 25 --runs 3 --gateway-ref <ref>]`.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import WebSocket from "ws"
import { gatewaySource } from "./gatewaySource.ts"
import { killAllServers, type ServerHandle } from "./serverProcess.ts"
import { signToken, startGateway } from "./targets/gateway.ts"
import { numberOption } from "./cliOptions.ts"

export interface JoinBatchOptions {
  readonly channels: number
  readonly latencyMs: number
  readonly runs: number
  readonly gatewayRef: string | undefined
}

export const parseJoinBatchOptions = (argv: ReadonlyArray<string>): JoinBatchOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      channels: { type: "string", default: "100" },
      latency: { type: "string", default: "25" },
      runs: { type: "string", default: "3" },
      "gateway-ref": { type: "string" }
    }
  })
  const number = (name: "channels" | "latency" | "runs", min: number): number => numberOption(values, name, min, true)
  return {
    channels: number("channels", 1),
    latencyMs: number("latency", 0),
    runs: number("runs", 1),
    gatewayRef: values["gateway-ref"]
  }
}

/** A TCP proxy to `port` that holds every chunk `delayMs` before passing it on, each direction in order. */
const delayingProxy = (port: number, delayMs: number): Promise<Server> => {
  const pipe = (from: Socket, to: Socket) => {
    from.on("data", (chunk) => setTimeout(() => to.write(chunk), delayMs))
    from.on("close", () => setTimeout(() => to.destroy(), delayMs))
    from.on("error", () => to.destroy())
  }
  const server = createServer((client) => {
    const upstream = tcpConnect(port, "127.0.0.1")
    pipe(client, upstream)
    pipe(upstream, client)
  })
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)))
}

const portOf = (server: Server): number => {
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("the proxy has no port")
  return address.port
}

const metric = async (port: number, name: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN)
}

/** Joins `topics` on one socket, together or one by one; the milliseconds until the last reply, which must be ok. */
const joinAll = (url: string, topics: ReadonlyArray<string>, together: boolean): Promise<number> =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url)
    const pending = new Map<string, number>()
    let next = 0
    let started = 0
    const send = () => {
      const i = next++
      const ref = String(i + 1)
      pending.set(ref, i)
      socket.send(JSON.stringify([ref, ref, `realtime:${topics[i]}`, "phx_join", { config: {} }]))
    }
    socket.on("open", () => {
      started = performance.now()
      if (together) { while (next < topics.length) send() }
      else send()
    })
    socket.on("message", (data: Buffer) => {
      const [, ref, , event, payload] = JSON.parse(data.toString()) as [unknown, string, string, string, unknown]
      if (event !== "phx_reply" || !pending.has(ref)) return
      if ((payload as { status?: string }).status !== "ok") {
        socket.close()
        return reject(new Error(`join ${ref} refused: ${JSON.stringify(payload)}`))
      }
      pending.delete(ref)
      if (!together && next < topics.length) return send()
      if (pending.size === 0 && next === topics.length) {
        const elapsed = performance.now() - started
        socket.close()
        resolve(elapsed)
      }
    })
    socket.on("error", reject)
  })

export interface RunResult {
  readonly togetherMs: number
  readonly togetherBatches: number
  readonly oneByOneMs: number
  readonly oneByOneBatches: number
}

const main = async () => {
  const options = parseJoinBatchOptions(process.argv.slice(2))
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
  const source = gatewaySource(repoRoot, options.gatewayRef)
  const servers: Array<ServerHandle> = []
  const start = (name: string, env: Record<string, string>) =>
    startGateway(source, { name, env }).then((server) => (servers.push(server), server))
  console.log(
    `join batching: one client joins ${options.channels} new topics through a relay, upstream ${options.latencyMs} ms ` +
      `away each way; gateway from the ${source.description}`
  )
  const upstream = await start("upstream", {})
  const proxy = await delayingProxy(upstream.port, options.latencyMs)
  try {
    const relay = await start("relay", {
      SUPABASE_URL: `http://127.0.0.1:${portOf(proxy)}`,
      SUPABASE_SERVICE_ROLE_KEY: await signToken({ role: "service_role" }, 86_400)
    })
    const url = `ws://127.0.0.1:${relay.port}/realtime/v1/websocket?apikey=${await signToken({
      role: "anon"
    })}&vsn=2.0.0`
    const batches = () => metric(relay.port, "wedsync_upstream_batches_total")
    const results: Array<RunResult> = []
    for (let run = 1; run <= options.runs; run++) {
      const topics = (kind: string) =>
        Array.from({ length: options.channels }, (_, i) => `${kind}-${run}-${Date.now()}-${i}`)
      const before = await batches()
      const togetherMs = await joinAll(url, topics("together"), true)
      const middle = await batches()
      const oneByOneMs = await joinAll(url, topics("one-by-one"), false)
      const after = await batches()
      const result = {
        togetherMs,
        togetherBatches: middle - before,
        oneByOneMs,
        oneByOneBatches: after - middle
      }
      results.push(result)
      console.log(
        `run ${run}: together ${togetherMs.toFixed(0)} ms (${result.togetherBatches} upstream batches), ` +
          `one by one ${oneByOneMs.toFixed(0)} ms (${result.oneByOneBatches} upstream batches)`
      )
    }
    const worst = Math.max(...results.map((r) => r.togetherMs))
    console.log(`worst together: ${worst.toFixed(0)} ms for ${options.channels} channels`)
  } finally {
    proxy.close()
    await Promise.all(servers.map((s) => s.stop()))
  }
}

if (import.meta.main) {
  process.on("exit", killAllServers)
  await main()
}

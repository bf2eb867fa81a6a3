/**
 * The victims: ordinary supabase-js clients (vsn 1.0.0 and 2.0.0 alternating) in one public room, receiving a steady
 * broadcast stream from a publisher. Each tick carries its send time and sequence number and is tagged with the phase
 * (baseline, or the attack running) it was sent in, so every attack is measured against the same room: victims' p99
 * publish-to-receive latency and how many of the expected deliveries arrived.
 *
 * `spawn` runs them in a process of their own (`victimsProcess.ts`), as the suite does: on the attacker's event loop a
 * tick would also wait for whatever the attacker's own clients were doing (serializing a 2.9 MB broadcast, opening a
 * thousand sockets), and the victims' latency would measure the attacker's process rather than the gateway. Real
 * victims sit on other devices than the attacker; here they share the machine's two cores, but not an event loop.
 */
import { createClient, REALTIME_SUBSCRIBE_STATES, type SupabaseClient } from "@supabase/supabase-js"
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { percentile } from "../../bench/src/stats.ts"
import { type Client, connect, join, joinPayload, replyStatus } from "./wsClient.ts"

const VICTIM_TOPIC = "victims"
const TICK = "tick"

interface PhaseStats {
  readonly phase: string
  readonly sent: number
  readonly expected: number
  readonly delivered: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

export interface VictimReport {
  readonly victims: number
  readonly phases: ReadonlyArray<PhaseStats>
  /** Deliveries missing over the whole run (expected minus distinct received). */
  readonly lost: number
  readonly duplicates: number
  /** Channel status changes other than the first SUBSCRIBED (errors, closes, timeouts, rejoins). */
  readonly disruptions: ReadonlyArray<string>
}

export interface Victims {
  readonly setPhase: (phase: string) => void
  /** Stops the stream, waits (bounded) for the last tick everywhere, closes the clients and reports. */
  readonly finish: () => Promise<VictimReport>
}

interface Tick {
  readonly t: number
  readonly s: number
}

const now = (): number => performance.timeOrigin + performance.now()

export interface VictimOptions {
  readonly url: string
  readonly wsUrl: string
  readonly anonKey: string
  readonly userToken: (index: number) => Promise<string>
  readonly count: number
  /** Ticks per second from the publisher (stay below MAX_EVENTS_PER_SECOND). */
  readonly ratePerSecond: number
  readonly publisherKey: string
}

export const start = async (options: VictimOptions): Promise<Victims> => {
  const clients: Array<SupabaseClient> = []
  const seen: Array<Uint8Array> = []
  const latencies = new Map<string, Array<number>>()
  const delivered = new Map<string, number>()
  const phaseOfSeq: Array<string> = []
  const disruptions: Array<string> = []
  let duplicates = 0
  let finishing = false
  const maxTicks = 1_000_000
  for (let i = 0; i < options.count; i++) {
    const token = await options.userToken(i)
    const vsn = i % 2 === 0 ? "2.0.0" : "1.0.0"
    const client = createClient(options.url, options.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      realtime: { vsn, params: { vsn } },
      accessToken: () => Promise.resolve(token)
    })
    void client.realtime.setAuth(token)
    clients.push(client)
    const mine = new Uint8Array(maxTicks)
    seen.push(mine)
    const channel = client.channel(VICTIM_TOPIC).on("broadcast", { event: TICK }, (message) => {
      const tick = message["payload"] as Tick
      const at = now()
      if (mine[tick.s] === 1) {
        duplicates++
        return
      }
      mine[tick.s] = 1
      const phase = phaseOfSeq[tick.s] ?? "unknown"
      latencies.get(phase)?.push(at - tick.t)
      delivered.set(phase, (delivered.get(phase) ?? 0) + 1)
    })
    await new Promise<void>((resolve, reject) => {
      let first = true
      const timer = setTimeout(() => reject(new Error(`victim ${i} did not subscribe within 10 s`)), 10_000)
      channel.subscribe((status, error) => {
        if (first) {
          first = false
          clearTimeout(timer)
          if (status === REALTIME_SUBSCRIBE_STATES.SUBSCRIBED) resolve()
          else reject(new Error(`victim ${i} subscribe ended with ${status}: ${error?.message ?? ""}`))
          return
        }
        if (!finishing) disruptions.push(`victim ${i}: ${status}${error === undefined ? "" : ` (${error.message})`}`)
      })
    })
  }

  const publisher: Client = await connect(options.wsUrl, options.publisherKey)
  const topic = `realtime:${VICTIM_TOPIC}`
  const joined = await join(publisher, topic, joinPayload(), 5000)
  if (replyStatus(joined.reply) !== "ok") throw new Error("victims' publisher could not join")

  // Until the suite says "baseline": the first ticks of a fresh process run on cold code and a busy new heap.
  let phase = "warm-up"
  latencies.set(phase, [])
  let seq = 0
  const sentPerPhase = new Map<string, number>([[phase, 0]])
  const send = (): void => {
    if (seq >= maxTicks || !publisher.isOpen()) return
    phaseOfSeq[seq] = phase
    sentPerPhase.set(phase, (sentPerPhase.get(phase) ?? 0) + 1)
    publisher.push(joined.joinRef, null, topic, "broadcast", {
      type: "broadcast",
      event: TICK,
      payload: { t: now(), s: seq }
    })
    seq++
  }
  const timer = setInterval(send, 1000 / options.ratePerSecond)

  return {
    setPhase: (next) => {
      phase = next
      if (!latencies.has(next)) latencies.set(next, [])
      if (!sentPerPhase.has(next)) sentPerPhase.set(next, 0)
    },
    finish: async () => {
      clearInterval(timer)
      const last = seq - 1
      const deadline = Date.now() + 5000
      while (Date.now() < deadline && seen.some((mine) => last >= 0 && mine[last] !== 1)) {
        await new Promise((r) => setTimeout(r, 50))
      }
      finishing = true
      await publisher.close()
      await Promise.allSettled(clients.map(async (c) => {
        await c.removeAllChannels()
        await c.realtime.disconnect()
      }))
      let received = 0
      for (const mine of seen) for (let s = 0; s < seq; s++) received += mine[s]!
      const phases: Array<PhaseStats> = []
      for (const [name, sent] of sentPerPhase) {
        const sample = Float64Array.from(latencies.get(name) ?? []).sort()
        phases.push({
          phase: name,
          sent,
          expected: sent * options.count,
          delivered: delivered.get(name) ?? 0,
          p50Ms: percentile(sample, 0.5),
          p99Ms: percentile(sample, 0.99),
          maxMs: sample.length === 0 ? Number.NaN : sample[sample.length - 1]!
        })
      }
      return { victims: options.count, phases, lost: seq * options.count - received, duplicates, disruptions }
    }
  }
}

/** What the suite tells the victims' process, and what it answers. */
export type Command = { readonly _tag: "Phase"; readonly phase: string } | { readonly _tag: "Finish" }
export type Answer =
  | { readonly _tag: "Ready" }
  | { readonly _tag: "Report"; readonly report: VictimReport }
  | { readonly _tag: "Failed"; readonly message: string }

/** The victims' options that cross to their process: their tokens are made there (`victimsProcess.ts`). */
export type SpawnOptions = Omit<VictimOptions, "userToken">

const ENTRY = fileURLToPath(new URL("./victimsProcess.ts", import.meta.url))

/** The victims in a process of their own, subscribed when this resolves; killed if the suite's process exits. */
export const spawn = (options: SpawnOptions): Promise<Victims> =>
  new Promise((resolve, reject) => {
    const child = fork(ENTRY, [JSON.stringify(options)], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
    const killChild = () => child.kill("SIGKILL")
    process.once("exit", killChild)
    let report: ((answer: VictimReport) => void) | undefined
    let fail: (error: Error) => void = reject
    let exited: Error | undefined
    child.on("message", (answer: Answer) => {
      if (answer._tag === "Ready") {
        resolve({
          setPhase: (phase) => {
            if (exited === undefined) child.send({ _tag: "Phase", phase } satisfies Command)
          },
          finish: () =>
            new Promise<VictimReport>((resolveReport, rejectReport) => {
              if (exited !== undefined) return rejectReport(exited)
              report = resolveReport
              fail = rejectReport
              child.send({ _tag: "Finish" } satisfies Command)
            })
        })
      } else if (answer._tag === "Report") {
        process.off("exit", killChild)
        report?.(answer.report)
      } else fail(new Error(`victims: ${answer.message}`))
    })
    child.once("exit", (code, signal) => {
      exited = new Error(`the victims' process exited (${code ?? signal})`)
      fail(exited)
    })
  })

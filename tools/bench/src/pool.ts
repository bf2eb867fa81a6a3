/**
 * A pool of subscriber connections to one target: opens and joins them in bounded-concurrency
 * batches (measuring connect and join rates separately), keeps them alive with spread-out
 * heartbeats like supabase-js (one per connection every 25 s), and closes them. With several
 * server processes (a scale-out run), connections take the processes in turn; extra connections
 * (the publisher) go to the first.
 */
import { forEachBounded } from "./bounded.ts"
import type { Connection, ConnectionEvents, Target } from "./targets/Target.ts"

interface GrowResult {
  readonly added: number
  readonly connectPerSec: number
  readonly joinPerSec: number
  readonly failures: number
  readonly firstError: string | undefined
}

const HEARTBEAT_INTERVAL_MS = 25_000
const HEARTBEAT_TICK_MS = 1_000

interface Member {
  readonly connection: Connection
  /** Index of the server process (into the pool's ports). */
  readonly process: number
}

export class ClientPool {
  readonly #target: Target
  readonly #ports: ReadonlyArray<number>
  readonly #events: ReadonlyArray<ConnectionEvents>
  readonly #timeoutMs: number
  readonly #connections: Array<Member> = []
  readonly #extra = new Set<Connection>()
  #heartbeatCursor = 0
  #nextProcess = 0
  readonly #ticker: NodeJS.Timeout

  /** `eventsOf(i)` are the events of the connections to `ports[i]`. */
  constructor(
    target: Target,
    ports: ReadonlyArray<number>,
    eventsOf: (process: number) => ConnectionEvents,
    timeoutMs: number
  ) {
    this.#target = target
    this.#ports = ports
    this.#events = ports.map((_, i) => eventsOf(i))
    this.#timeoutMs = timeoutMs
    this.#ticker = setInterval(() => this.#heartbeatSlice(), HEARTBEAT_TICK_MS)
  }

  get size(): number {
    return this.#connections.length
  }

  /** Joined connections per server process. */
  sizes(): ReadonlyArray<number> {
    const out = this.#ports.map(() => 0)
    for (const member of this.#connections) out[member.process]!++
    return out
  }

  /** Opens `count` more connections, then joins them all; returns rates over each phase. */
  async grow(count: number, concurrency: number): Promise<GrowResult> {
    let failures = 0
    let firstError: string | undefined
    const fail = (error: unknown): void => {
      failures++
      firstError ??= error instanceof Error ? error.message : String(error)
    }
    const opened: Array<Member> = []
    const connectStart = performance.now()
    await forEachBounded(count, concurrency, async () => {
      const process = this.#nextProcess++ % this.#ports.length
      try {
        const connection = await this.#target.connect(this.#ports[process]!, this.#events[process]!, this.#timeoutMs)
        opened.push({ connection, process })
      } catch (error) {
        fail(error)
      }
    })
    const connectMs = performance.now() - connectStart
    const joinStart = performance.now()
    await forEachBounded(opened.length, concurrency, async (i) => {
      const member = opened[i]!
      try {
        await member.connection.join()
        this.#connections.push(member)
      } catch (error) {
        member.connection.close()
        fail(error)
      }
    })
    const joinMs = performance.now() - joinStart
    return {
      added: this.#connections.length,
      connectPerSec: (opened.length / connectMs) * 1000,
      joinPerSec: (opened.length / joinMs) * 1000,
      failures,
      firstError
    }
  }

  /** Closes connections until at most `count` remain. */
  shrinkTo(count: number): void {
    while (this.#connections.length > count) this.#connections.pop()!.connection.close()
  }

  /** Opens and joins one connection outside the pool's subscriber count (the publisher). */
  async extra(events: ConnectionEvents): Promise<Connection> {
    const connection = await this.#target.connect(this.#ports[0]!, events, this.#timeoutMs)
    await connection.join()
    this.#extra.add(connection)
    return connection
  }

  closeAll(): void {
    clearInterval(this.#ticker)
    for (const member of this.#connections) member.connection.close()
    for (const connection of this.#extra) connection.close()
    this.#connections.length = 0
    this.#extra.clear()
  }

  // Each tick heartbeats the next 1/25 of the pool, so every connection beats once per 25 s
  // without a synchronized burst that would disturb latency measurements.
  #heartbeatSlice(): void {
    const all = [...this.#connections.map((member) => member.connection), ...this.#extra]
    if (all.length === 0) return
    const perTick = Math.ceil((all.length * HEARTBEAT_TICK_MS) / HEARTBEAT_INTERVAL_MS)
    for (let i = 0; i < perTick; i++) {
      if (this.#heartbeatCursor >= all.length) this.#heartbeatCursor = 0
      all[this.#heartbeatCursor++]!.heartbeat()
    }
  }
}

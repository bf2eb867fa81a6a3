/**
 * The fuzzer: a seeded generator of hostile frames for vsn 1.0.0, 2.0.0 and binary (kind 3), and a runner that sends
 * them over a few long-lived sockets, with a heartbeat round trip after each batch so the gateway must still answer.
 * Frames the `ws` client cannot send (reserved opcodes, bad fragmentation, invalid UTF-8 in text, unmasked frames)
 * go over raw TCP, one connection each. A close of a fuzzing socket is fine (the sender is refused); 1011 is not.
 */
import { encodeKind3 } from "../../bench/src/wire.ts"
import type { Gateway } from "./gateway.ts"
import { encodeFrame, sendRaw } from "./rawSocket.ts"
import { type Client, heartbeat, tryConnect, type Vsn } from "./wsClient.ts"

/** mulberry32: small, fast, reproducible. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Category =
  | "malformed-json"
  | "wrong-arity"
  | "numbers"
  | "prototype-keys"
  | "deep-nesting"
  | "binary"
  | "invalid-utf8"
  | "wrong-opcode"
  | "fragmented"
  | "protocol-mix"

type Fuzzed =
  | { readonly kind: "text"; readonly category: Category; readonly data: string }
  | { readonly kind: "binary"; readonly category: Category; readonly data: Uint8Array }
  | { readonly kind: "raw"; readonly category: Category; readonly frames: ReadonlyArray<Buffer> }

const PROTO = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "__defineGetter__",
  "isPrototypeOf"
]
const EVENTS = [
  "phx_join",
  "phx_leave",
  "broadcast",
  "presence",
  "access_token",
  "heartbeat",
  "postgres_changes",
  "phx_reply",
  "system",
  "x"
]
const NUMBERS = [0, -1, -0, 1e308, -1e308, 2 ** 53 + 1, -(2 ** 63), 4294967296, 0.5, 1e-320]
const NUMBER_TEXT = ["1e999", "-1e999", "123456789012345678901234567890", "-0", "0x10", "NaN", "Infinity", "1e-999"]

const makeGenerator = (seed: number) => {
  const rnd = prng(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[int(xs.length)]!
  const topic = (): string =>
    pick([
      "realtime:fuzz",
      `realtime:fuzz-${int(20)}`,
      `realtime:${pick(PROTO)}`,
      "phoenix",
      "realtime:",
      "",
      `realtime:wedding:${int(5)}`,
      "x".repeat(int(300))
    ])
  const scalar = (): unknown =>
    pick<() => unknown>([
      () => null,
      () => true,
      () => pick(NUMBERS),
      () => pick(PROTO),
      () => "s".repeat(int(40)),
      () => ({}),
      () => []
    ])()
  const value = (depth: number): unknown => {
    if (depth > 3 || rnd() < 0.4) return scalar()
    if (rnd() < 0.5) return Array.from({ length: int(4) }, () => value(depth + 1))
    const o: Record<string, unknown> = Object.create(null) as Record<string, unknown>
    for (let i = 0; i < int(4); i++) o[rnd() < 0.4 ? pick(PROTO) : `k${int(10)}`] = value(depth + 1)
    return o
  }
  const payloadFor = (event: string): unknown => {
    switch (event) {
      case "phx_join":
        return {
          config: {
            broadcast: { self: value(3), ack: value(3) },
            presence: { key: rnd() < 0.5 ? pick(PROTO) : value(3) },
            postgres_changes: rnd() < 0.5
              ? []
              : [{ event: pick(["*", "INSERT", pick(PROTO)]), schema: pick(PROTO), table: value(3) }],
            private: value(3),
            [pick(PROTO)]: value(2)
          },
          access_token: rnd() < 0.3 ? value(3) : undefined
        }
      case "broadcast":
        return { type: pick(["broadcast", pick(PROTO)]), event: pick(PROTO.concat(["e"])), payload: value(0) }
      case "presence":
        return {
          type: "presence",
          event: pick(["track", "untrack", pick(PROTO)]),
          payload: rnd() < 0.5 ? { [pick(PROTO)]: value(2) } : value(1)
        }
      case "access_token":
        return { access_token: rnd() < 0.5 ? "a.b.c" : value(2) }
      default:
        return value(0)
    }
  }
  const frame = (vsn: Vsn, joinRef: unknown, ref: unknown, t: unknown, event: unknown, payload: unknown): string =>
    vsn === "2.0.0"
      ? JSON.stringify([joinRef, ref, t, event, payload])
      : JSON.stringify({ join_ref: joinRef, ref, topic: t, event, payload })
  const deep = (depth: number): string =>
    rnd() < 0.5 ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}0${"}".repeat(depth)}`
  const invalidUtf8 = (): Buffer =>
    Buffer.from([0x5b, 0x22, pick([0xc3, 0xff, 0xed, 0xf8, 0x80]), pick([0x28, 0xa0, 0xbf]), 0x22, 0x5d])

  return (vsn: Vsn): Fuzzed => {
    const r = rnd()
    const ref = String(int(1000))
    if (r < 0.12) {
      const good = frame(vsn, ref, ref, topic(), pick(EVENTS), payloadFor(pick(EVENTS)))
      const data = pick<() => string>([
        () => good.slice(0, int(good.length)),
        () => good + pick(["]", "}", ",", "x"]),
        () => pick(["", "[", "{", "null", "nul", "[]]", '"', '{"topic":}', " "]),
        () => good.replace(/"/g, "'")
      ])()
      return { kind: "text", category: "malformed-json", data }
    }
    if (r < 0.24) {
      const items = Array.from({ length: int(9) }, () => (rnd() < 0.5 ? scalar() : value(1)))
      const data = vsn === "2.0.0"
        ? JSON.stringify(rnd() < 0.5 ? items : { topic: topic(), event: pick(EVENTS) })
        : JSON.stringify(rnd() < 0.5 ? items : { topic: scalar(), event: scalar(), ref: scalar() })
      return { kind: "text", category: "wrong-arity", data }
    }
    if (r < 0.36) {
      const n = (): string => (rnd() < 0.5 ? pick(NUMBER_TEXT) : String(pick(NUMBERS)))
      const data = vsn === "2.0.0"
        ? `[${n()},${n()},"${topic()}","${
          pick(EVENTS)
        }",{"n":${n()},"config":{"presence":{"key":${n()}}},"payload":${n()},"access_token":${n()}}]`
        : `{"join_ref":${n()},"ref":${n()},"topic":"${topic()}","event":"${
          pick(EVENTS)
        }","payload":{"n":${n()},"type":"broadcast","event":${n()},"payload":${n()}}}`
      return { kind: "text", category: "numbers", data }
    }
    if (r < 0.52) {
      const event = pick(EVENTS)
      const key = pick(PROTO)
      const data = frame(
        vsn,
        rnd() < 0.5 ? key : ref,
        ref,
        rnd() < 0.5 ? `realtime:${key}` : topic(),
        rnd() < 0.3 ? key : event,
        payloadFor(event)
      )
        .replace(/"k\d"/, `"${key}"`)
      return { kind: "text", category: "prototype-keys", data }
    }
    if (r < 0.56) {
      const data = frame(vsn, ref, ref, "realtime:fuzz", "broadcast", { type: "broadcast", event: "deep", payload: 0 })
        .replace('"payload":0', `"payload":${deep(500 + int(5000))}`)
      return { kind: "text", category: "deep-nesting", data }
    }
    if (r < 0.70) {
      const t = topic().slice(0, 255)
      const event = pick(PROTO.concat(["e", ""]))
      const payload = pick(["{}", '{"a":1}', "not json", deep(100), "\u0000"])
      const push = encodeKind3(ref, ref, t, event, payload)
      const mutate = int(6)
      if (mutate === 0) push[0] = int(256)
      else if (mutate === 1) push[1 + int(5)] = 255
      else if (mutate === 2) push[6] = int(256)
      else if (mutate === 3 && push.length > 8) push[7 + int(push.length - 8)] = pick([0xff, 0xc3, 0x80])
      const data = mutate === 4 ? push.subarray(0, int(push.length)) : push
      return { kind: "binary", category: "binary", data }
    }
    if (r < 0.95) {
      const event = pick(EVENTS)
      return {
        kind: "text",
        category: "protocol-mix",
        data: frame(vsn, rnd() < 0.8 ? ref : null, ref, topic(), event, payloadFor(event))
      }
    }
    const which = int(3)
    if (which === 0) {
      const opcode = pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
      return { kind: "raw", category: "wrong-opcode", frames: [encodeFrame({ opcode, payload: Buffer.from("[]") })] }
    }
    if (which === 1) {
      const frames = pick<() => ReadonlyArray<Buffer>>([
        () => [encodeFrame({ opcode: 0, payload: Buffer.from("[") })],
        () => [
          encodeFrame({ opcode: 1, payload: Buffer.from("[null,"), fin: false }),
          encodeFrame({ opcode: 1, payload: Buffer.from("null]") })
        ],
        () => [encodeFrame({ opcode: 9, payload: Buffer.from("p"), fin: false })],
        () => [encodeFrame({ opcode: 9, payload: Buffer.alloc(126) })],
        () => [
          encodeFrame({ opcode: 1, payload: Buffer.from('[null,"1","phoenix",'), fin: false }),
          encodeFrame({ opcode: 0, payload: Buffer.from('"heartbeat",{}]') })
        ],
        () => [encodeFrame({ opcode: 1, payload: Buffer.from("[]"), rsv: 1 + int(7) })],
        () => [encodeFrame({ opcode: 1, payload: Buffer.from("[]"), masked: false })]
      ])()
      return { kind: "raw", category: "fragmented", frames }
    }
    return { kind: "raw", category: "invalid-utf8", frames: [encodeFrame({ opcode: 1, payload: invalidUtf8() })] }
  }
}

export interface FuzzReport {
  readonly frames: number
  readonly byCategory: Readonly<Record<string, number>>
  /** Close code (or "refused <status>") → count, over every fuzzing socket. */
  readonly closes: Readonly<Record<string, number>>
  readonly crashes: number
  /** Heartbeats after a batch that got neither a reply nor a close in time. */
  readonly unanswered: number
  readonly ms: number
}

interface FuzzOptions {
  readonly gw: Gateway
  readonly apikey: string
  readonly frames: number
  readonly seed: number
  readonly workers: number
  readonly batch: number
  readonly maxMs: number
}

const bump = (m: Record<string, number>, k: string): void => {
  m[k] = (m[k] ?? 0) + 1
}

export const run = async (options: FuzzOptions): Promise<FuzzReport> => {
  const started = Date.now()
  const deadline = started + options.maxMs
  const generate = makeGenerator(options.seed)
  const byCategory: Record<string, number> = Object.create(null) as Record<string, number>
  const closes: Record<string, number> = Object.create(null) as Record<string, number>
  let sent = 0
  let crashes = 0
  let unanswered = 0
  const record = (code: number): void => {
    bump(closes, String(code))
    if (code === 1011) crashes++
  }
  const worker = async (w: number): Promise<void> => {
    const vsn: Vsn = w % 2 === 0 ? "2.0.0" : "1.0.0"
    let client: Client | undefined
    while (sent < options.frames && Date.now() < deadline) {
      if (client === undefined || !client.isOpen()) {
        const r = await tryConnect(options.gw.wsUrl, options.apikey, { vsn, keep: 64 })
        if (!r.ok) {
          bump(closes, `refused ${r.status ?? r.error}`)
          await new Promise((res) => setTimeout(res, 100))
          continue
        }
        client = r.client
      }
      for (let i = 0; i < options.batch && sent < options.frames; i++) {
        const f = generate(vsn)
        sent++
        bump(byCategory, f.category)
        if (f.kind === "raw") {
          const outcome = await sendRaw(
            options.gw.port,
            `/realtime/v1/websocket?apikey=${options.apikey}&vsn=2.0.0`,
            f.frames,
            5000
          )
          if (outcome.closeCode !== undefined) record(outcome.closeCode)
          else bump(
              closes,
              outcome.answered
                ? "raw survived (heartbeat answered)"
                : outcome.ended
                ? "raw ended without close frame"
                : "raw neither closed nor answered"
            )
        } else {
          client.send(f.data)
        }
      }
      if (!client.isOpen()) {
        record(client.closeInfo()?.code ?? 1006)
        client = undefined
        continue
      }
      const reply = await Promise.race([heartbeat(client, 5000), client.waitClosed(5000)])
      if (!client.isOpen()) {
        record(client.closeInfo()?.code ?? 1006)
        client = undefined
      } else if (reply === undefined) {
        unanswered++
      }
    }
    if (client !== undefined) await client.close()
  }
  await Promise.all(Array.from({ length: options.workers }, (_, w) => worker(w)))
  return { frames: sent, byCategory, closes, crashes, unanswered, ms: Date.now() - started }
}

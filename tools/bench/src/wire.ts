/**
 * The bench's own lean codec for the vsn 2.0.0 frames it needs (spec §1.5-§1.6): join/heartbeat
 * text frames, the kind-3 broadcast push it sends and the kind-4 broadcast it receives. Kept apart
 * from @wedsync/protocol on purpose: the bench must measure the gateway, not share its code paths.
 *
 * The broadcast payload is `{"t":<send time ms>,"s":<seq>,"p":"<padding>"}`; `readStamp` pulls `t`
 * and `s` out of the raw bytes without JSON.parse so that every delivery can be measured cheaply.
 */

export const TOPIC = "realtime:bench"
export const USER_EVENT = "bench"

export const joinPayload = {
  config: {
    broadcast: { ack: false, self: false },
    presence: { key: "", enabled: false },
    postgres_changes: [],
    private: false
  }
} as const

export const joinFrame = (ref: string): string => JSON.stringify([ref, ref, TOPIC, "phx_join", joinPayload])

export const heartbeatFrame = (ref: string): string => JSON.stringify([null, ref, "phoenix", "heartbeat", {}])

/** Wall-clock milliseconds with sub-millisecond resolution; publisher and subscribers share this clock. */
export const nowMs = (): number => performance.timeOrigin + performance.now()

/** JSON payload text of about `targetBytes` bytes carrying the send time and sequence number. */
export const stampPayload = (t: number, seq: number, targetBytes: number): string => {
  const head = `{"t":${t},"s":${seq},"p":"`
  const pad = Math.max(0, targetBytes - head.length - 2)
  return `${head}${"x".repeat(pad)}"}`
}

/** Kind-3 user broadcast push: `03 J R T E M enc | join_ref | ref | topic | event | meta | payload`. */
export const encodeKind3 = (
  joinRef: string,
  ref: string,
  topic: string,
  event: string,
  payloadJson: string
): Buffer => {
  const j = Buffer.byteLength(joinRef)
  const r = Buffer.byteLength(ref)
  const t = Buffer.byteLength(topic)
  const e = Buffer.byteLength(event)
  const p = Buffer.byteLength(payloadJson)
  const buf = Buffer.allocUnsafe(7 + j + r + t + e + p)
  buf[0] = 3
  buf[1] = j
  buf[2] = r
  buf[3] = t
  buf[4] = e
  buf[5] = 0
  buf[6] = 1
  let o = 7
  o += buf.write(joinRef, o)
  o += buf.write(ref, o)
  o += buf.write(topic, o)
  o += buf.write(event, o)
  buf.write(payloadJson, o)
  return buf
}

/** Turns a kind-3 push into the kind-4 frame subscribers receive (what a bare relay does). */
export const kind3ToKind4 = (push: Buffer): Buffer | undefined => {
  if (push.length < 7 || push[0] !== 3) return undefined
  const skip = 7 + push[1]! + push[2]!
  if (skip > push.length) return undefined
  const out = Buffer.allocUnsafe(5 + push.length - skip)
  out[0] = 4
  out[1] = push[3]!
  out[2] = push[4]!
  out[3] = push[5]!
  out[4] = push[6]!
  push.copy(out, 5, skip)
  return out
}

/** Offset of the payload of a kind-4 frame held in `frame[start, end)`, or -1 when it is not kind 4. */
export const kind4PayloadOffset = (frame: Uint8Array, start: number, end: number): number => {
  if (end - start < 5 || frame[start] !== 4) return -1
  const offset = start + 5 + frame[start + 1]! + frame[start + 2]! + frame[start + 3]!
  return offset <= end ? offset : -1
}

/** The metadata JSON text of a kind-4 frame in `frame[start, end)` (`{"id":…}`, `{"replayed":true,"id":…}`), if any. */
export const kind4Meta = (frame: Buffer, start: number, end: number): string | undefined => {
  if (end - start < 5 || frame[start] !== 4 || frame[start + 3] === 0) return undefined
  const metaStart = start + 5 + frame[start + 1]! + frame[start + 2]!
  const metaEnd = metaStart + frame[start + 3]!
  return metaEnd <= end ? frame.toString("utf8", metaStart, metaEnd) : undefined
}

/** Result slot reused by `readStamp` so the hot path allocates nothing. */
export interface Stamp {
  t: number
  s: number
}

const OPEN_BRACE = 0x7b
const QUOTE = 0x22
const COLON = 0x3a
const COMMA = 0x2c
const DOT = 0x2e
const ZERO = 0x30
const NINE = 0x39

// Parses an unsigned decimal at `i`; returns the index after it, or -1. Result goes to `numberOut`.
let numberOut = 0
const readNumber = (b: Uint8Array, start: number, end: number): number => {
  let i = start
  let int = 0
  while (i < end && b[i]! >= ZERO && b[i]! <= NINE) int = int * 10 + (b[i++]! - ZERO)
  if (i === start || i >= end) return -1
  if (b[i] === DOT) {
    i++
    let frac = 0
    let scale = 1
    while (i < end && b[i]! >= ZERO && b[i]! <= NINE) {
      frac = frac * 10 + (b[i++]! - ZERO)
      scale *= 10
    }
    numberOut = int + frac / scale
  } else {
    numberOut = int
  }
  return i
}

// Matches `"<key>":` at `i` for a one-letter key; returns the index after the colon, or -1.
const readKey = (b: Uint8Array, i: number, key: number): number =>
  b[i] === QUOTE && b[i + 1] === key && b[i + 2] === QUOTE && b[i + 3] === COLON ? i + 4 : -1

const T = 0x74
const S = 0x73

/**
 * Reads `t` and `s` from the JSON payload in `b[offset, end)`. Fast path for the exact shape
 * `stampPayload` writes; falls back to JSON.parse when a server re-serialised the payload.
 */
export const readStamp = (b: Uint8Array, offset: number, end: number, out: Stamp): boolean => {
  if (end - offset > 12 && b[offset] === OPEN_BRACE) {
    let i = readKey(b, offset + 1, T)
    if (i >= 0) i = readNumber(b, i, end)
    if (i >= 0 && b[i] === COMMA) {
      const t = numberOut
      i = readKey(b, i + 1, S)
      if (i >= 0) i = readNumber(b, i, end)
      if (i >= 0) {
        out.t = t
        out.s = numberOut
        return true
      }
    }
  }
  return stampFromJson(Buffer.from(b.buffer, b.byteOffset + offset, end - offset).toString("utf8"), out)
}

/** Pulls `t`/`s` out of JSON text holding either the stamp object or a broadcast wrapper around it. */
export const stampFromJson = (text: string, out: Stamp): boolean => {
  try {
    return stampFromValue(JSON.parse(text), out)
  } catch {
    return false
  }
}

export const stampFromValue = (value: unknown, out: Stamp): boolean => {
  if (typeof value !== "object" || value === null) return false
  if ("t" in value && "s" in value && typeof value.t === "number" && typeof value.s === "number") {
    out.t = value.t
    out.s = value.s
    return true
  }
  return "payload" in value ? stampFromValue(value.payload, out) : false
}

/** A decoded vsn 2.0.0 text frame, enough to follow join and heartbeat replies. */
interface TextMessage {
  readonly joinRef: string | null
  readonly ref: string | null
  readonly topic: string
  readonly event: string
  readonly payload: unknown
}

export const decodeText = (text: string): TextMessage | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!Array.isArray(parsed) || parsed.length < 5) return undefined
  const [joinRef, ref, topic, event, payload] = parsed as ReadonlyArray<unknown>
  if (typeof topic !== "string" || typeof event !== "string") return undefined
  return {
    joinRef: typeof joinRef === "string" ? joinRef : null,
    ref: typeof ref === "string" ? ref : null,
    topic,
    event,
    payload
  }
}

/** `"ok"`, the error reason text, or undefined when `payload` is not a reply payload. */
export const replyStatus = (payload: unknown): { readonly ok: boolean; readonly detail: string } | undefined => {
  if (typeof payload !== "object" || payload === null || !("status" in payload)) return undefined
  const detail = "response" in payload ? JSON.stringify(payload.response) : ""
  return { ok: payload.status === "ok", detail }
}

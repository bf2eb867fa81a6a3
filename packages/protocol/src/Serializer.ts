/**
 * Serializers 1.0.0 (JSON object) and 2.0.0 (JSON array + binary kinds 3 and 4).
 *
 * Decoders are total: any string or byte sequence yields a frame or a `ProtocolError`, never a
 * throw. Encoders for fan-out take payloads that are already JSON text so that one publication is
 * stringified once, not once per subscriber.
 */
import { Result } from "effect"
import type { Inbound, Message, PayloadEncoding, ServerBroadcast, UserBroadcast, Vsn } from "./Frame.ts"
import { MAX_FIELD_BYTES, V1 } from "./Frame.ts"
import { lastElementText } from "./Json.ts"
import { malformed, type ProtocolError } from "./ProtocolError.ts"

const KIND_USER_BROADCAST_PUSH = 3
const KIND_USER_BROADCAST = 4

const isRef = (u: unknown): u is string | null => u === null || typeof u === "string"
const refOf = (u: unknown): string | null => (typeof u === "number" ? String(u) : (u as string | null))
const isRefLike = (u: unknown): boolean => isRef(u) || (typeof u === "number" && Number.isFinite(u))

const parseJson = (text: string): Result.Result<unknown, ProtocolError> => {
  try {
    return Result.succeed(JSON.parse(text) as unknown)
  } catch {
    return Result.fail(malformed("Expected a valid JSON text frame"))
  }
}

/** Decodes one text frame. v2 expects an array of at least five elements; v1 an object. */
export const decodeText = (vsn: Vsn, text: string): Result.Result<Message, ProtocolError> => {
  const parsed = parseJson(text)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const json = parsed.success
  if (vsn === V1) {
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return Result.fail(malformed("Expected a JSON object with topic, event, payload and ref"))
    }
    const o = json as Record<string, unknown>
    const joinRef = o["join_ref"] ?? null
    const ref = o["ref"] ?? null
    if (typeof o["topic"] !== "string" || typeof o["event"] !== "string" || !isRefLike(joinRef) || !isRefLike(ref)) {
      return Result.fail(malformed("Expected string topic and event, and string or null refs"))
    }
    return Result.succeed({
      joinRef: refOf(joinRef),
      ref: refOf(ref),
      topic: o["topic"],
      event: o["event"],
      payload: o["payload"] ?? {}
    })
  }
  if (!Array.isArray(json) || json.length < 5) {
    return Result.fail(malformed("Expected an array [join_ref, ref, topic, event, payload]"))
  }
  const [joinRef, ref, topic, event, payload] = json as [unknown, unknown, unknown, unknown, unknown]
  if (typeof topic !== "string" || typeof event !== "string" || !isRefLike(joinRef) || !isRefLike(ref)) {
    return Result.fail(malformed("Expected string topic and event, and string or null refs"))
  }
  const message = { joinRef: refOf(joinRef), ref: refOf(ref), topic, event, payload }
  if (
    text.length < RAW_PAYLOAD_MIN || json.length !== 5 || typeof payload !== "object" || payload === null ||
    Array.isArray(payload)
  ) {
    return Result.succeed(message)
  }
  const payloadJson = lastElementText(text, 4)
  // The slice keeps the whole frame text alive wherever it is kept (the replay history): only when the frame is
  // (nearly) all payload, so a small payload padded with megabytes of spaces cannot hold its frame.
  return Result.succeed(
    payloadJson === undefined || text.length - payloadJson.length > RAW_ENVELOPE_MAX
      ? message
      : { ...message, payloadJson }
  )
}

/**
 * Text frames at least this long keep their payload's JSON as sent (`Message.payloadJson`). Below it, stringifying
 * the parsed payload again costs less than the scan that finds it.
 */
export const RAW_PAYLOAD_MIN = 65_536

/** Most characters of a frame around the payload (refs, topic, event, spaces) for the payload to be kept as sent. */
export const RAW_ENVELOPE_MAX = 1_024

// ignoreBOM: a leading U+FEFF belongs to the field the client sent; dropping it would change the topic or event.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const text = (bytes: Uint8Array, start: number, length: number): string | undefined => {
  try {
    return utf8.decode(bytes.subarray(start, start + length))
  } catch {
    return undefined
  }
}

/**
 * Decodes a binary frame. Only kind 3 (client user broadcast) is valid from a client; a JSON
 * payload must parse, so that no subscriber is ever sent a payload its client cannot decode.
 */
export const decodeBinary = (bytes: Uint8Array): Result.Result<UserBroadcast, ProtocolError> => {
  if (bytes.length < 7) return Result.fail(malformed("Binary frame shorter than its 7-byte header"))
  if (bytes[0] !== KIND_USER_BROADCAST_PUSH) {
    return Result.fail(malformed(`Unsupported binary frame kind ${bytes[0]}`))
  }
  const joinRefLength = bytes[1]!
  const refLength = bytes[2]!
  const topicLength = bytes[3]!
  const eventLength = bytes[4]!
  const metaLength = bytes[5]!
  const encodingByte = bytes[6]!
  if (encodingByte !== 0 && encodingByte !== 1) {
    return Result.fail(malformed(`Unknown payload encoding ${encodingByte}`))
  }
  const headerEnd = 7 + joinRefLength + refLength + topicLength + eventLength + metaLength
  if (headerEnd > bytes.length) return Result.fail(malformed("Binary frame field lengths exceed the frame"))
  let offset = 7
  const joinRef = text(bytes, offset, joinRefLength)
  offset += joinRefLength
  const ref = text(bytes, offset, refLength)
  offset += refLength
  const topic = text(bytes, offset, topicLength)
  offset += topicLength
  const userEvent = text(bytes, offset, eventLength)
  offset += eventLength
  const meta = text(bytes, offset, metaLength)
  if (
    joinRef === undefined || ref === undefined || topic === undefined || userEvent === undefined || meta === undefined
  ) {
    return Result.fail(malformed("Binary frame fields are not valid UTF-8"))
  }
  if (metaLength > 0 && !isJsonObjectText(meta))
    return Result.fail(malformed("Broadcast metadata is not a JSON object"))
  const payload = bytes.subarray(headerEnd)
  const encoding: PayloadEncoding = encodingByte === 1 ? "json" : "binary"
  if (encoding === "json") {
    const payloadText = text(payload, 0, payload.length)
    if (payloadText === undefined || Result.isFailure(parseJson(payloadText))) {
      return Result.fail(malformed("Broadcast payload is not valid JSON"))
    }
  }
  return Result.succeed({
    joinRef: joinRefLength === 0 ? null : joinRef,
    ref: refLength === 0 ? null : ref,
    topic,
    userEvent,
    meta: metaLength === 0 ? undefined : meta,
    encoding,
    payload
  })
}

const isJsonObjectText = (s: string): boolean => {
  const parsed = parseJson(s)
  return Result.isSuccess(parsed) && typeof parsed.success === "object" && parsed.success !== null &&
    !Array.isArray(parsed.success)
}

/** Decodes any WebSocket data frame from a client. */
export const decode = (vsn: Vsn, data: string | Uint8Array): Result.Result<Inbound, ProtocolError> => {
  if (typeof data === "string") {
    const message = decodeText(vsn, data)
    return Result.isSuccess(message)
      ? Result.succeed({ _tag: "Message", message: message.success })
      : Result.fail(message.failure)
  }
  if (vsn === V1) return Result.fail(malformed("Binary frames are not part of serializer 1.0.0"))
  const broadcast = decodeBinary(data)
  return Result.isSuccess(broadcast)
    ? Result.succeed({ _tag: "UserBroadcast", broadcast: broadcast.success })
    : Result.fail(broadcast.failure)
}

const json = JSON.stringify

/** Encodes a message whose payload is a JS value. v1 never carries `join_ref` (as Phoenix V1). */
export const encode = (vsn: Vsn, message: Message): string =>
  vsn === V1
    ? json({ topic: message.topic, event: message.event, payload: message.payload, ref: message.ref })
    : json([message.joinRef, message.ref, message.topic, message.event, message.payload])

/**
 * Encodes a message whose payload is already JSON text, without parsing it again: the fan-out
 * path builds one string per serializer for every subscriber.
 */
export const encodeRaw = (
  vsn: Vsn,
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payloadJson: string
): string =>
  vsn === V1
    ? `{"topic":${json(topic)},"event":${json(event)},"payload":${payloadJson},"ref":${json(ref)}}`
    : `[${json(joinRef)},${json(ref)},${json(topic)},${json(event)},${payloadJson}]`

/** The `broadcast` payload of a JSON-origin broadcast: `{"type":"broadcast","event":…,"payload":…}`. */
export const broadcastPayloadJson = (userEvent: string, payloadJson: string, metaJson?: string): string =>
  metaJson === undefined
    ? `{"type":"broadcast","event":${json(userEvent)},"payload":${payloadJson}}`
    : `{"type":"broadcast","event":${json(userEvent)},"payload":${payloadJson},"meta":${metaJson}}`

const encoder = new TextEncoder()

/**
 * Encodes a kind-4 user broadcast (server → v2 client). Fails when topic, event or metadata
 * exceed the one-byte length fields.
 */
export const encodeUserBroadcast = (
  topic: string,
  userEvent: string,
  encoding: PayloadEncoding,
  payload: Uint8Array,
  metaJson?: string
): Result.Result<Uint8Array, ProtocolError> => {
  const topicBytes = encoder.encode(topic)
  const eventBytes = encoder.encode(userEvent)
  const metaBytes = metaJson === undefined ? new Uint8Array(0) : encoder.encode(metaJson)
  if (
    topicBytes.length > MAX_FIELD_BYTES || eventBytes.length > MAX_FIELD_BYTES || metaBytes.length > MAX_FIELD_BYTES
  ) {
    return Result.fail(malformed("Topic, event and metadata must each be at most 255 bytes"))
  }
  const out = new Uint8Array(5 + topicBytes.length + eventBytes.length + metaBytes.length + payload.length)
  out[0] = KIND_USER_BROADCAST
  out[1] = topicBytes.length
  out[2] = eventBytes.length
  out[3] = metaBytes.length
  out[4] = encoding === "json" ? 1 : 0
  let offset = 5
  out.set(topicBytes, offset)
  offset += topicBytes.length
  out.set(eventBytes, offset)
  offset += eventBytes.length
  out.set(metaBytes, offset)
  offset += metaBytes.length
  out.set(payload, offset)
  return Result.succeed(out)
}

/**
 * Decodes a kind-4 user broadcast (server → v2 client), as realtime-js does: for clients, tests and
 * tools that read what the server sent. The payload is a view into `bytes`, not a copy.
 */
export const decodeUserBroadcast = (bytes: Uint8Array): Result.Result<ServerBroadcast, ProtocolError> => {
  if (bytes.length < 5) return Result.fail(malformed("Binary frame shorter than its 5-byte header"))
  if (bytes[0] !== KIND_USER_BROADCAST) return Result.fail(malformed(`Unsupported binary frame kind ${bytes[0]}`))
  const topicLength = bytes[1]!
  const eventLength = bytes[2]!
  const metaLength = bytes[3]!
  const encodingByte = bytes[4]!
  if (encodingByte !== 0 && encodingByte !== 1)
    return Result.fail(malformed(`Unknown payload encoding ${encodingByte}`))
  const headerEnd = 5 + topicLength + eventLength + metaLength
  if (headerEnd > bytes.length) return Result.fail(malformed("Binary frame field lengths exceed the frame"))
  const topic = text(bytes, 5, topicLength)
  const userEvent = text(bytes, 5 + topicLength, eventLength)
  const meta = text(bytes, 5 + topicLength + eventLength, metaLength)
  if (topic === undefined || userEvent === undefined || meta === undefined) {
    return Result.fail(malformed("Binary frame fields are not valid UTF-8"))
  }
  return Result.succeed({
    topic,
    userEvent,
    meta: metaLength === 0 ? undefined : meta,
    encoding: encodingByte === 1 ? "json" : "binary",
    payload: bytes.subarray(headerEnd)
  })
}

/**
 * Encodes a kind-3 user broadcast push, as realtime-js does (used by tools and tests). Throws a
 * `RangeError` when a field exceeds 255 bytes: a one-byte length would silently wrap and produce
 * a frame that decodes to different fields.
 */
export const encodeUserBroadcastPush = (broadcast: UserBroadcast): Uint8Array => {
  const fields = [
    broadcast.joinRef ?? "",
    broadcast.ref ?? "",
    broadcast.topic,
    broadcast.userEvent,
    broadcast.meta ?? ""
  ]
    .map((s) => encoder.encode(s))
  if (fields.some((f) => f.length > MAX_FIELD_BYTES)) {
    throw new RangeError("Kind-3 refs, topic, event and metadata must each be at most 255 bytes")
  }
  const headerLength = 7 + fields.reduce((n, f) => n + f.length, 0)
  const out = new Uint8Array(headerLength + broadcast.payload.length)
  out[0] = KIND_USER_BROADCAST_PUSH
  fields.forEach((f, i) => (out[1 + i] = f.length))
  out[6] = broadcast.encoding === "json" ? 1 : 0
  let offset = 7
  for (const f of fields) {
    out.set(f, offset)
    offset += f.length
  }
  out.set(broadcast.payload, offset)
  return out
}

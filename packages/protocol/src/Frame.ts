/**
 * The frames of the Supabase Realtime (Phoenix channels) protocol as the gateway sees them.
 *
 * A `Message` is the five-field Phoenix message carried by text frames in both serializer
 * versions. A `UserBroadcast` is the binary kind-3 push a vsn 2.0.0 client sends for
 * `channel.send({ type: "broadcast" })`. Decoding never throws: see `Serializer`.
 */

/** Serializer version chosen by the client with the `vsn` query parameter. */
export type Vsn = "1.0.0" | "2.0.0"

export const V1: Vsn = "1.0.0"
export const V2: Vsn = "2.0.0"

/** Phoenix message: `[join_ref, ref, topic, event, payload]` (v2) or the equivalent object (v1). */
export interface Message {
  readonly joinRef: string | null
  readonly ref: string | null
  readonly topic: string
  readonly event: string
  readonly payload: unknown
  /**
   * The payload's JSON as the client sent it, for a v2 frame of `Serializer.RAW_PAYLOAD_MIN` characters or more that
   * is nearly all payload (`RAW_ENVELOPE_MAX`) and whose payload is an object: a broadcast forwards it instead of
   * stringifying the parsed payload again. It parses to the same value in JavaScript. It is the client's spelling, so
   * whitespace inside the payload counts toward the payload limit, and numbers such as `1e400` or `-0` and duplicate
   * keys reach receivers as written, where a smaller frame's payload is normalized by `JSON.stringify`.
   */
  readonly payloadJson?: string
}

/** How a binary broadcast payload is encoded (byte 6 of kind 3, byte 4 of kind 4). */
export type PayloadEncoding = "binary" | "json"

/** Kind 3: a user broadcast pushed by a v2 client as a binary frame. */
export interface UserBroadcast {
  readonly joinRef: string | null
  readonly ref: string | null
  readonly topic: string
  readonly userEvent: string
  /** Metadata JSON object text, or `undefined` when absent. */
  readonly meta: string | undefined
  readonly encoding: PayloadEncoding
  /** Raw payload bytes; JSON text when `encoding` is `"json"` (already validated). */
  readonly payload: Uint8Array
}

/** Kind 4: a user broadcast the server sends to a v2 client as a binary frame. */
export interface ServerBroadcast {
  readonly topic: string
  readonly userEvent: string
  /** Metadata JSON object text, or `undefined` when absent. */
  readonly meta: string | undefined
  readonly encoding: PayloadEncoding
  readonly payload: Uint8Array
}

/** Bytes a topic, event or metadata field of a binary broadcast may hold: its length travels in one byte. */
export const MAX_FIELD_BYTES = 255

/** Everything a client can send, after decoding. */
export type Inbound =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "UserBroadcast"; readonly broadcast: UserBroadcast }

/** Prefix realtime-js puts in front of every channel name. */
export const TOPIC_PREFIX = "realtime:"

/** The sub-topic after `realtime:`, or `undefined` when the topic is not a realtime channel. */
export const subtopicOf = (topic: string): string | undefined =>
  topic.startsWith(TOPIC_PREFIX) ? topic.slice(TOPIC_PREFIX.length) : undefined

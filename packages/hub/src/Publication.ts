/**
 * A message for every subscriber of a topic, in a form that can cross nodes (the `Broker`) and be
 * encoded once per serializer version. Topic keys keep public and private channels of the same
 * name apart, as Supabase does.
 */
import { Frame, ProtocolError, Serializer, WsFrame } from "@wedsync/protocol"
import { Result } from "effect"

export type Body =
  /** A payload that is JSON text; every serializer gets a text frame `[null,null,topic,event,payload]`. */
  | { readonly _tag: "Json"; readonly json: string }
  /** A user broadcast (kind 4 for v2); v1 sockets get the JSON equivalent, or nothing for binary payloads. */
  | {
    readonly _tag: "UserBroadcast"
    readonly userEvent: string
    readonly encoding: Frame.PayloadEncoding
    readonly payload: Uint8Array
    readonly meta: string | undefined
  }

export interface Publication {
  readonly topic: string
  readonly isPrivate: boolean
  /** Phoenix event name: `broadcast`, `presence_diff`, `postgres_changes`... */
  readonly event: string
  readonly body: Body
}

/** Identity of a room: `realtime:x` public and `realtime:x` private are different rooms. */
export type TopicKey = string

export const topicKey = (
  topic: string,
  isPrivate: boolean
): TopicKey => (isPrivate ? `private|${topic}` : `public|${topic}`)

/** The topic and privacy a key was made from (`topicKey`'s inverse). */
export const topicOfKey = (key: TopicKey): { readonly topic: string; readonly isPrivate: boolean } =>
  key.startsWith("private|")
    ? { topic: key.slice("private|".length), isPrivate: true }
    : { topic: key.slice("public|".length), isPrivate: false }

export const keyOf = (publication: Publication): TopicKey => topicKey(publication.topic, publication.isPrivate)

export const json = (topic: string, isPrivate: boolean, event: string, payloadJson: string): Publication => ({
  topic,
  isPrivate,
  event,
  body: { _tag: "Json", json: payloadJson }
})

const byteLength = (s: string): number => Buffer.byteLength(s, "utf8")

/** A user broadcast; fails when topic, event or metadata do not fit the kind-4 length fields. */
export const userBroadcast = (
  topic: string,
  isPrivate: boolean,
  userEvent: string,
  encoding: Frame.PayloadEncoding,
  payload: Uint8Array,
  meta?: string
): Result.Result<Publication, ProtocolError.ProtocolError> => {
  if (
    byteLength(topic) > Frame.MAX_FIELD_BYTES || byteLength(userEvent) > Frame.MAX_FIELD_BYTES ||
    (meta !== undefined && byteLength(meta) > Frame.MAX_FIELD_BYTES)
  ) {
    return Result.fail(ProtocolError.malformed("Topic, event and metadata must each be at most 255 bytes"))
  }
  return Result.succeed({
    topic,
    isPrivate,
    event: "broadcast",
    body: { _tag: "UserBroadcast", userEvent, encoding, payload, meta }
  })
}

const decoder = new TextDecoder()

/**
 * The complete WebSocket frame for one serializer version, or `undefined` when that version cannot
 * carry the publication (a binary broadcast to a 1.0.0 socket is not delivered, as in Supabase).
 */
export const frameFor = (publication: Publication, vsn: Frame.Vsn): Uint8Array | undefined => {
  const body = publication.body
  if (body._tag === "Json") {
    return WsFrame.text(Serializer.encodeRaw(vsn, null, null, publication.topic, publication.event, body.json))
  }
  if (vsn === Frame.V2) {
    const encoded = Serializer.encodeUserBroadcast(
      publication.topic,
      body.userEvent,
      body.encoding,
      body.payload,
      body.meta
    )
    return Result.isSuccess(encoded) ? WsFrame.binary(encoded.success) : undefined
  }
  if (body.encoding === "binary") return undefined
  const payload = Serializer.broadcastPayloadJson(body.userEvent, decoder.decode(body.payload), body.meta)
  return WsFrame.text(Serializer.encodeRaw(vsn, null, null, publication.topic, publication.event, payload))
}

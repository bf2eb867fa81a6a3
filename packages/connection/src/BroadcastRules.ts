/**
 * The rules every client broadcast obeys, whether it arrives on a socket (text push or binary kind 3) or through the
 * REST API: the payload bound (`MAX_PAYLOAD_BYTES`) and the field lengths a binary broadcast can carry. Both paths
 * ask here and answer the reason through `ErrorReply`, so the limits cannot drift apart.
 */
import { Publication } from "@wedsync/hub"
import { Frame } from "@wedsync/protocol"
import { Result } from "effect"
import * as ConnectionError from "./ConnectionError.ts"

/** `PayloadTooLarge` when `bytes` exceed `max`. */
export const payloadSize = (bytes: number, max: number): ConnectionError.PayloadTooLarge | undefined =>
  bytes > max ? ConnectionError.payloadTooLarge() : undefined

/**
 * `PayloadTooLarge` when the UTF-8 form of `json` exceeds `max`. A UTF-16 unit takes at most 3 UTF-8 bytes, so the
 * common small payload is decided without counting; the bytes are counted only near the bound (the string length
 * alone is not enough: a million 3-byte characters are 3 MB).
 */
export const jsonPayloadSize = (json: string, max: number): ConnectionError.PayloadTooLarge | undefined =>
  json.length * 3 <= max ? undefined : payloadSize(Buffer.byteLength(json), max)

/** A user broadcast publication, or why it may not be published (payload size, then field lengths). */
export const userBroadcast = (
  topic: string,
  isPrivate: boolean,
  event: string,
  encoding: Frame.PayloadEncoding,
  payload: Uint8Array,
  maxPayloadBytes: number,
  meta?: string
): Result.Result<Publication.Publication, ConnectionError.PayloadTooLarge | ConnectionError.FieldTooLong> => {
  const tooLarge = payloadSize(payload.length, maxPayloadBytes)
  if (tooLarge !== undefined) return Result.fail(tooLarge)
  const publication = Publication.userBroadcast(topic, isPrivate, event, encoding, payload, meta)
  return Result.mapError(publication, () => ConnectionError.fieldTooLong(Frame.MAX_FIELD_BYTES))
}

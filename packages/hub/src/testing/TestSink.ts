/**
 * A `Sink` that records every frame the hub hands it, and the decoding of those frames back into
 * what a client would see: text frames as JSON, binary frames as kind-4 user broadcasts.
 */
import { type Frame, Serializer, WsFrame } from "@wedsync/protocol"
import { Result } from "effect"
import type { Sink } from "../Sink.ts"

type Decoded =
  | { readonly _tag: "Text"; readonly text: string; readonly json: unknown }
  | { readonly _tag: "Binary"; readonly bytes: Uint8Array; readonly broadcast: Frame.ServerBroadcast }

export interface TestSink extends Sink {
  /** Every complete WebSocket frame enqueued, in order and by identity (not copied). */
  readonly frames: Array<Uint8Array>
  /** The frames decoded; each enqueued chunk may hold several frames. */
  readonly decoded: () => Array<Decoded>
}

const text = new TextDecoder()

/** Splits a kind-4 frame; throws on anything else, which a test should treat as a failure. */
const parseUserBroadcast = (bytes: Uint8Array): Frame.ServerBroadcast => {
  const decoded = Serializer.decodeUserBroadcast(bytes)
  if (Result.isFailure(decoded)) throw new Error(`${decoded.failure.message}: ${Array.from(bytes.subarray(0, 8))}`)
  return decoded.success
}

/** Decodes the frames of one or more concatenated WebSocket frames. */
export const decodeFrames = (bytes: Uint8Array): Array<Decoded> =>
  WsFrame.parseAll(bytes).map(({ opcode, payload }): Decoded => {
    if (opcode === WsFrame.OPCODE_TEXT) {
      const s = text.decode(payload)
      return { _tag: "Text", text: s, json: JSON.parse(s) as unknown }
    }
    return { _tag: "Binary", bytes: payload, broadcast: parseUserBroadcast(payload) }
  })

export const make = (vsn: Frame.Vsn): TestSink => {
  const frames: Array<Uint8Array> = []
  return {
    vsn,
    frames,
    enqueue: (frame) => void frames.push(frame),
    decoded: () => frames.flatMap(decodeFrames)
  }
}

/**
 * A `Sink` that records every frame the hub hands it, and the decoding of those frames back into
 * what a client would see: text frames as JSON, binary frames as kind-4 user broadcasts.
 */
import type { Frame } from "@wedsync/protocol"
import { WsFrame } from "@wedsync/protocol"
import type { Sink } from "../Sink.ts"

/** A kind-4 user broadcast, split into its fields (spec §1.6). */
export interface UserBroadcastFrame {
  readonly kind: number
  readonly topic: string
  readonly userEvent: string
  readonly meta: string | undefined
  readonly encoding: Frame.PayloadEncoding
  readonly payload: Uint8Array
}

export type Decoded =
  | { readonly _tag: "Text"; readonly text: string; readonly json: unknown }
  | { readonly _tag: "Binary"; readonly bytes: Uint8Array; readonly broadcast: UserBroadcastFrame }

export interface TestSink extends Sink {
  /** Every complete WebSocket frame enqueued, in order and by identity (not copied). */
  readonly frames: Array<Uint8Array>
  /** The frames decoded; each enqueued chunk may hold several frames. */
  readonly decoded: () => Array<Decoded>
}

const text = new TextDecoder()

/** Splits a kind-4 frame; throws on anything else, which a test should treat as a failure. */
export const parseUserBroadcast = (bytes: Uint8Array): UserBroadcastFrame => {
  if (bytes.length < 5 || bytes[0] !== 4) throw new Error(`not a kind-4 frame: ${Array.from(bytes.subarray(0, 8))}`)
  const topicLength = bytes[1]!
  const eventLength = bytes[2]!
  const metaLength = bytes[3]!
  let offset = 5
  const field = (length: number) => {
    const s = text.decode(bytes.subarray(offset, offset + length))
    offset += length
    return s
  }
  const topic = field(topicLength)
  const userEvent = field(eventLength)
  const meta = metaLength === 0 ? undefined : field(metaLength)
  return { kind: 4, topic, userEvent, meta, encoding: bytes[4] === 1 ? "json" : "binary", payload: bytes.subarray(offset) }
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

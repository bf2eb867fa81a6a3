/**
 * A `Sink` is one subscription's way out to its socket. The hub calls `enqueue` synchronously
 * for every matching publication; the sink owns buffering, coalescing and the slow-consumer
 * policy, so the hub never awaits a subscriber.
 */
import type { Frame } from "@wedsync/protocol"
import type { Publication } from "./Publication.ts"

export interface Sink {
  /** The serializer of the socket behind this sink; the hub picks the pre-encoded frame by it. */
  readonly vsn: Frame.Vsn
  /**
   * Appends one complete WebSocket frame. Must not throw and must not block. The hub also passes the publication
   * the frame was made from (other senders may not), for a sink that holds frames back and must know what they are.
   */
  enqueue(frame: Uint8Array, publication?: Publication): void
}

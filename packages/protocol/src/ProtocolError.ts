/**
 * Why an inbound frame could not be decoded. The connection keeps running after any of these:
 * Supabase logs `MalformedWebSocketMessage` and drops the frame, and so does the gateway.
 */
import { Schema } from "effect"

export class MalformedWebSocketMessage extends Schema.TaggedError<MalformedWebSocketMessage>()(
  "MalformedWebSocketMessage",
  { message: Schema.String }
) {}

export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: MalformedWebSocketMessage
}) {
  override get message(): string {
    return this.reason.message
  }
}

export const malformed = (message: string): ProtocolError =>
  new ProtocolError({ reason: new MalformedWebSocketMessage({ message }) })

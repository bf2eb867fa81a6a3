/**
 * The pool's WebSocket for realtime-js: the platform WebSocket whose message handler cannot throw out of the socket.
 *
 * Why: realtime-js handles each upstream frame inside the WebSocket's `onmessage`, and what the upstream relays is
 * written by anyone connected to the project. A frame it cannot handle (a broadcast whose payload has a top-level
 * `ids` field is taken for a Postgres change, and reading its missing `data` throws) would leave the handler as an
 * uncaught exception and end the whole gateway. Here it ends that frame only: it is dropped and reported, and the
 * socket and every other channel go on.
 */
import type { RealtimeClient } from "@supabase/supabase-js"

/** What `RealtimeClient` takes as its `transport`. */
export type Transport = NonNullable<NonNullable<ConstructorParameters<typeof RealtimeClient>[1]>["transport"]>

type MessageHandler = ((this: WebSocket, event: MessageEvent) => unknown) | null

const platformOnMessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage")

/** A WebSocket class (for `RealtimeClient`'s `transport`) whose `onmessage` handler's failures go to `onFailure`. */
export const guardedWebSocket = (onFailure: (error: unknown) => void): Transport => {
  const setHandler = platformOnMessage?.set
  if (setHandler === undefined) throw new Error("this platform's WebSocket has no onmessage property to guard")
  class GuardedWebSocket extends WebSocket {}
  Object.defineProperty(GuardedWebSocket.prototype, "onmessage", {
    configurable: true,
    get(this: WebSocket) {
      return platformOnMessage?.get?.call(this)
    },
    set(this: WebSocket, handler: MessageHandler) {
      setHandler.call(
        this,
        handler === null ? null : function(this: WebSocket, event: MessageEvent) {
          try {
            handler.call(this, event)
          } catch (error) {
            onFailure(error)
          }
        }
      )
    }
  })
  // realtime-js types its transport's `onerror` with a plain `Event` where the platform's says `ErrorEvent`: the same
  // WebSocket at run time (realtime-js uses the platform's own when no transport is given).
  return GuardedWebSocket as unknown as Transport
}

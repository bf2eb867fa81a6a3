/**
 * Unmodified supabase-js clients pointed at the gateway, plus promise helpers so tests await events instead of sleeping.
 *
 * `makeSupabaseClient` only chooses options a real app would set (protocol `vsn`, heartbeat, push timeout, a fixed or
 * rotating access token) and turns off session persistence, so what passes here passes for users. `subscribe` turns
 * the status callback into a promise; `waitFor` and `inbox` turn event callbacks into awaitable values with a timeout
 * that names what never arrived. These are Promise helpers for vitest, not Effect code.
 */
import { createClient, REALTIME_SUBSCRIBE_STATES } from "@supabase/supabase-js"
import type { RealtimeChannel, RealtimeClientOptions, SupabaseClient } from "@supabase/supabase-js"
import { makeInbox } from "./internal/inbox.ts"

/** Client options the tests vary. */
export interface ClientOptions {
  /** Phoenix serializer: "1.0.0" (JSON objects) or "2.0.0" (JSON arrays and binary broadcasts). Default "2.0.0". */
  readonly vsn?: "1.0.0" | "2.0.0" | undefined
  /**
   * A user JWT, or a callback returning the current one (called on connect and on every heartbeat). A string is in the
   * first join; a callback's token may only follow in an `access_token` push, as with supabase-js in an app.
   */
  readonly accessToken?: string | (() => Promise<string | null>) | undefined
  /** Heartbeat interval. supabase-js default 25 000 ms. */
  readonly heartbeatIntervalMs?: number | undefined
  /** Push (join, leave, broadcast ack) timeout. supabase-js default 10 000 ms. */
  readonly timeoutMs?: number | undefined
  /** Extra query parameters on the socket URL (`apikey` and `vsn` are set already). */
  readonly params?: Record<string, string> | undefined
}

/** Builds a supabase-js client for `baseUrl` (http://host:port; the socket goes to ws://host:port/realtime/v1). */
export const makeSupabaseClient = (baseUrl: string, apiKey: string, options: ClientOptions = {}): SupabaseClient => {
  const vsn = options.vsn ?? "2.0.0"
  const realtime: RealtimeClientOptions = {
    vsn,
    params: { ...options.params, vsn },
    ...(options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs })
  }
  const token = options.accessToken
  const client = createClient(baseUrl, apiKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime,
    // supabase-js's third-party-auth hook: realtime calls it on connect and heartbeats and sends the token on join.
    ...(token === undefined ? {} : { accessToken: typeof token === "string" ? () => Promise.resolve(token) : token })
  })
  // supabase-js hands the hook's first token to realtime a few microtasks later, but a join pushed before the socket
  // opens is encoded right away, so a subscribe straight after creation would go out without it. `setAuth(token)` is
  // the documented call for apps that hold a token, and with a string it takes effect synchronously.
  if (typeof token === "string") void client.realtime.setAuth(token)
  return client
}

/** A subscribe that ended in anything but SUBSCRIBED. */
export class SubscribeError extends Error {
  readonly status: `${REALTIME_SUBSCRIBE_STATES}`
  override readonly cause: Error | undefined
  constructor(topic: string, status: `${REALTIME_SUBSCRIBE_STATES}`, cause: Error | undefined) {
    super(`subscribe to ${topic} ended with ${status}${cause === undefined ? "" : `: ${cause.message}`}`)
    this.name = "SubscribeError"
    this.status = status
    this.cause = cause
  }
}

/**
 * Subscribes and resolves on SUBSCRIBED; rejects with a `SubscribeError` carrying the status (CHANNEL_ERROR, TIMED_OUT,
 * CLOSED) and the server's error otherwise. Register `.on(...)` listeners before calling this.
 */
export const subscribe = (channel: RealtimeChannel, timeoutMs?: number): Promise<void> =>
  new Promise((resolve, reject) => {
    let settled = false
    channel.subscribe((status, error) => {
      if (settled) return
      settled = true
      if (status === REALTIME_SUBSCRIBE_STATES.SUBSCRIBED) resolve()
      else reject(new SubscribeError(channel.topic, status, error))
    }, timeoutMs)
  })

/**
 * Turns a callback registration into a promise: `register` receives `resolve`; the promise rejects with a message naming
 * `what` if nothing arrives within `timeoutMs`.
 */
export const waitFor = <T>(
  register: (resolve: (value: T) => void, reject: (error: Error) => void) => void,
  timeoutMs = 5000,
  what = "an event"
): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)
    register(
      (value) => (clearTimeout(timer), resolve(value)),
      (error) => (clearTimeout(timer), reject(error))
    )
  })

/** Collects callback values; `next` awaits the first unconsumed one matching a predicate. */
export interface Inbox<T> {
  /** Pass this as the event callback. */
  readonly push: (value: T) => void
  /** Resolves with the first not yet consumed value matching `predicate`. */
  readonly next: (predicate?: (value: T) => boolean, timeoutMs?: number) => Promise<T>
  /** Every value received so far. */
  readonly received: ReadonlyArray<T>
}

/**
 * An inbox for a stream of events, e.g. `channel.on("broadcast", { event: "msg" }, box.push)` then
 * `await box.next((m) => m.payload.n === 3)`. Events that arrive before the test asks are kept, not lost.
 */
export const inbox = <T>(what = "an event"): Inbox<T> => {
  const box = makeInbox<T>()
  return {
    push: box.push,
    received: box.received,
    next: (predicate = () => true, timeoutMs = 5000) => box.next(predicate, timeoutMs, what)
  }
}

/**
 * Tears clients down: leaves every channel, then closes the socket. Never rejects and gives up on a leave after
 * `timeoutMs`, so it is safe in `afterEach` even when the gateway is already gone.
 */
export const closeAll = async (clients: Iterable<SupabaseClient>, timeoutMs = 2000): Promise<void> => {
  const giveUp = () => new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref())
  await Promise.allSettled(
    Array.from(clients, async (client) => {
      await Promise.race([client.removeAllChannels().catch(() => undefined), giveUp()])
      await Promise.race([client.realtime.disconnect().catch(() => undefined), giveUp()])
    })
  )
}

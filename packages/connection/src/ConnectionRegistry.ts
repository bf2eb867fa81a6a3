/**
 * The registry of live connections on this node: admission caps (total, per user, per IP), the
 * shared sweep that replaces per-socket timers (idle sockets and token expiry), and
 * the graceful drain.
 *
 * The sweep only compares two numbers per connection and mails the actor when a deadline has
 * passed, so idle sockets cost no timers and almost no CPU.
 */
import { Clock, Context, Deferred, Effect, Layer, Schedule, Scope } from "effect"
import { ConnectionConfig } from "./ConnectionConfig.ts"
import * as ConnectionError from "./ConnectionError.ts"
import type { ConnectionHandle } from "./ConnectionActor.ts"

/** A reserved connection slot. Registering through it costs no second finalizer: the slot's own undoes both. */
export interface Admission {
  register(handle: ConnectionHandle): void
  /**
   * Counts the socket against one more user (the `sub` of a join's token, which supabase-js sends in joins while
   * it connects with the anon key). True when counted now or before; false when the user is at
   * `maxConnectionsPerUser`. Released with the slot.
   */
  claimUser(userKey: string): boolean
}

export interface ConnectionRegistryShape {
  /** Reserves a connection slot, released when the scope closes; fails when a cap is reached or the node drains. */
  readonly admit: (
    ip: string,
    userKey: string | undefined
  ) => Effect.Effect<Admission, ConnectionError.ConnectionError, Scope.Scope>
  readonly count: () => number
  readonly isDraining: () => boolean
  /** Refuses new connections and joins, then asks every actor to leave, in batches, and waits for them. */
  readonly drain: (timeoutMs: number) => Effect.Effect<void>
  /** One pass of the sweep (exposed for tests). */
  readonly sweep: Effect.Effect<void>
  /**
   * Asks every socket of `userId` (its connect token's `sub`, or one of its joins') to decide its private channels on
   * `subtopic` again and shut down those it may no longer read: a membership was revoked.
   */
  readonly recheck: (userId: string, subtopic: string) => void
}

const bump = (counts: Map<string, number>, key: string, delta: number) => {
  const next = (counts.get(key) ?? 0) + delta
  if (next <= 0) counts.delete(key)
  else counts.set(key, next)
}

export const make = Effect.gen(function*() {
  const config = yield* ConnectionConfig
  const handles = new Set<ConnectionHandle>()
  const perIp = new Map<string, number>()
  const perUser = new Map<string, number>()
  // The sockets of each user, for revocations: a few entries per socket, kept in step with the per-user counts.
  const byUser = new Map<string, Set<ConnectionHandle>>()
  const index = (key: string, handle: ConnectionHandle) => {
    let handles = byUser.get(key)
    if (handles === undefined) byUser.set(key, handles = new Set())
    handles.add(handle)
  }
  const unindex = (key: string, handle: ConnectionHandle) => {
    const handles = byUser.get(key)
    if (handles?.delete(handle) === true && handles.size === 0) byUser.delete(key)
  }
  let admitted = 0
  let draining = false
  let drained: Deferred.Deferred<void> | undefined

  const refuse = (reason: ConnectionError.Reason) => Effect.fail(new ConnectionError.ConnectionError({ reason }))

  const admit: ConnectionRegistryShape["admit"] = (ip, userKey) =>
    Effect.suspend(() => {
      if (draining) return refuse(ConnectionError.restarting())
      if (admitted >= config.maxConnections) return refuse(ConnectionError.tooManyConnections(""))
      if ((perIp.get(ip) ?? 0) >= config.maxConnectionsPerIp) {
        return refuse(ConnectionError.tooManyConnections(" from this address"))
      }
      if (userKey !== undefined && (perUser.get(userKey) ?? 0) >= config.maxConnectionsPerUser) {
        return refuse(ConnectionError.tooManyConnections(" for this user"))
      }
      admitted++
      bump(perIp, ip, 1)
      if (userKey !== undefined) bump(perUser, userKey, 1)
      let registered: ConnectionHandle | undefined
      // Users counted through joins; allocated on the first, most sockets have none.
      let claimed: Set<string> | undefined
      const admission: Admission = {
        register: (handle) => {
          registered = handle
          if (userKey !== undefined) index(userKey, handle)
          if (claimed !== undefined) { for (const key of claimed) index(key, handle) }
          add(handle)
        },
        claimUser: (key) => {
          if (key === userKey || claimed?.has(key)) return true
          if ((perUser.get(key) ?? 0) >= config.maxConnectionsPerUser) return false
          bump(perUser, key, 1)
          ;(claimed ??= new Set()).add(key)
          if (registered !== undefined) index(key, registered)
          return true
        }
      }
      // One bare finalizer per socket rather than acquireRelease pairs: an idle socket should hold as
      // few objects as possible.
      return Effect.flatMap(Effect.scope, (scope) =>
        Effect.as(
          Scope.addFinalizer(
            scope,
            Effect.suspend(() => {
              admitted--
              bump(perIp, ip, -1)
              if (userKey !== undefined) bump(perUser, userKey, -1)
              if (claimed !== undefined) { for (const key of claimed) bump(perUser, key, -1) }
              if (registered !== undefined) {
                if (userKey !== undefined) unindex(userKey, registered)
                if (claimed !== undefined) { for (const key of claimed) unindex(key, registered) }
              }
              return registered === undefined ? Effect.void : remove(registered)
            })
          ),
          admission
        ))
    })

  const add = (handle: ConnectionHandle) => {
    handles.add(handle)
    // A socket admitted before the drain began can finish its handshake after the drain took
    // its list; without this it would be left open until the drain times out.
    if (draining) handle.offer({ _tag: "Drain" })
  }

  const remove = (handle: ConnectionHandle) =>
    Effect.suspend(() => {
      handles.delete(handle)
      return handles.size === 0 && drained !== undefined ? Deferred.succeed(drained, undefined) : Effect.void
    })

  const sweep = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const idleBefore = now - config.idleTimeoutMs
    for (const handle of handles) {
      if (handle.lastSeenMs <= idleBefore || handle.nextExpiryMs <= now) handle.offer({ _tag: "Deadline" })
    }
  })

  const drain: ConnectionRegistryShape["drain"] = (timeoutMs) =>
    Effect.gen(function*() {
      draining = true
      const done = yield* Deferred.make<void>()
      drained = done
      const all = [...handles]
      if (all.length === 0) return
      for (let i = 0; i < all.length; i += config.drainBatchSize) {
        for (const handle of all.slice(i, i + config.drainBatchSize)) handle.offer({ _tag: "Drain" })
        if (i + config.drainBatchSize < all.length) yield* Effect.sleep(config.drainIntervalMs)
      }
      yield* Deferred.await(done).pipe(Effect.timeoutOption(timeoutMs), Effect.asVoid)
    })

  yield* Effect.forkScoped(sweep.pipe(Effect.repeat(Schedule.spaced(config.sweepIntervalMs))))

  return {
    admit,
    count: () => handles.size,
    isDraining: () => draining,
    drain,
    sweep,
    recheck: (userId, subtopic) => {
      const handles = byUser.get(userId)
      if (handles === undefined) return
      for (const handle of handles) handle.offer({ _tag: "Recheck", userId, subtopic })
    }
  } satisfies ConnectionRegistryShape
})

export class ConnectionRegistry extends Context.Service<ConnectionRegistry, ConnectionRegistryShape>()(
  "@wedsync/connection/ConnectionRegistry"
) {
  static readonly layer: Layer.Layer<ConnectionRegistry, never, ConnectionConfig> = Layer.effect(
    ConnectionRegistry,
    make
  )
}

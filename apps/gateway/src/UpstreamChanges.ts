/**
 * Postgres Changes from the upstream (hosted Supabase) when this gateway has no `DATABASE_URL`: the `ChangeFeed` the
 * connections subscribe through, over `UpstreamPool.changes`.
 *
 * Every binding of every local channel asks the pool for its (schema, table, event, filter); the pool keeps one
 * upstream channel per distinct binding, joined with the service-role key, so the upstream sends every matching row
 * whole. The gateway's own row policy (`RowPolicy`: the row's `wedding_id` / `supplier_id` against the subscriber's
 * token, `UNSCOPED_TABLES` for the rest) then decides per local subscriber, as it does for its own replication stream.
 * It lives in the app because it joins two packages of one row (`upstream` and `changes`).
 *
 * Differences from the local stream, all on the side of showing less: the upstream's frames say nothing of the primary
 * key, so a DELETE (or the old image of an UPDATE that moved a row to another wedding) reaches a non-service
 * subscriber with `id` only; `select` is applied to the columns the upstream sent (plus `id`); membership-table
 * grants are not consulted (they need the database). And the upstream does not send again what was committed while
 * its channel was down (the local stream resumes from its slot): once the channel receives again (the upstream said
 * "Subscribed to PostgreSQL"), each subscriber gets the `system` message `Reply.CHANGES_MAY_HAVE_BEEN_MISSED`
 * (extension `postgres_changes`, status `error`), on which a client refetches.
 */
import { RowPolicy } from "@wedsync/changes"
import { ChangeFeed } from "@wedsync/hub"
import { Frame, Reply, Serializer, WsFrame } from "@wedsync/protocol"
import { UpstreamPool } from "@wedsync/upstream"
import { Effect, Exit, Layer, Scope } from "effect"

/** The `data` of an upstream `postgres_changes` frame. */
interface RawChange {
  readonly schema: string
  readonly table: string
  readonly commit_timestamp: string
  readonly type: "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE"
  readonly columns?: ReadonlyArray<{ readonly name: string; readonly type: string }>
  readonly record?: Readonly<Record<string, unknown>>
  readonly old_record?: Readonly<Record<string, unknown>>
  readonly errors: unknown
}

const KEY_COLUMN = "id"

const pick = (row: Readonly<Record<string, unknown>> | undefined, keep: (column: string) => boolean) => {
  const out: Record<string, unknown> = Object.create(null)
  if (row === undefined) return out
  for (const column of Object.keys(row)) if (keep(column)) out[column] = row[column]
  return out
}

const isKey = (column: string) => column === KEY_COLUMN

/**
 * How much of a change a subscriber may see: `undefined` (nothing), `full` (service role: every image whole),
 * `restricted` (its row: the new image whole, an old image of the same scope whole, of another scope or a DELETE's
 * key only).
 */
export type Variant = "full" | "restricted" | "restricted-moved"

export const variantOf = (
  change: RawChange,
  access: ChangeFeed.Access,
  policy: RowPolicy.RowPolicy
): Variant | undefined => {
  const columnNames = new Set((change.columns ?? []).map((c) => c.name))
  const image = change.type === "DELETE" ? change.old_record : change.record
  const scope = RowPolicy.scopeOf(columnNames, image)
  const decision = policy.decide(access, scope)
  if (decision !== "restricted") return decision === "full" ? "full" : undefined
  // An old image in another scope than the new one (a moved row) may belong to a wedding this subscriber may not see.
  return change.type === "UPDATE" && !RowPolicy.sameScope(scope, RowPolicy.scopeOf(columnNames, change.old_record))
    ? "restricted-moved"
    : "restricted"
}

/** The `data` of the frame for one variant and binding (`select`). */
export const render = (
  change: RawChange,
  binding: Pick<ChangeFeed.Binding, "select">,
  variant: Variant
): Record<string, unknown> => {
  const selected = binding.select === undefined ? undefined : new Set([...binding.select, KEY_COLUMN])
  const shown = (column: string) => selected === undefined || selected.has(column)
  const columns = (change.columns ?? []).filter((c) => shown(c.name))
  const head = {
    schema: change.schema,
    table: change.table,
    commit_timestamp: change.commit_timestamp,
    type: change.type
  }
  switch (change.type) {
    case "INSERT":
      return { ...head, columns, record: pick(change.record, shown), errors: change.errors ?? null }
    case "UPDATE":
      return {
        ...head,
        columns,
        record: pick(change.record, shown),
        old_record: pick(change.old_record, variant === "restricted-moved" ? isKey : shown),
        errors: change.errors ?? null
      }
    default:
      return {
        ...head,
        columns,
        old_record: pick(change.old_record, variant === "full" ? shown : isKey),
        errors: change.errors ?? null
      }
  }
}

const upstreamBinding = (binding: ChangeFeed.Binding): UpstreamPool.ChangesBinding => ({
  schema: binding.schema,
  table: binding.table,
  event: binding.event.toUpperCase() as UpstreamPool.ChangesBinding["event"],
  filter: binding.filter
})

export const make = (
  unscopedTables: RowPolicy.UnscopedRule
): Effect.Effect<ChangeFeed.ChangeFeedShape, never, UpstreamPool.UpstreamPool | Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* UpstreamPool.UpstreamPool
    const feedScope = yield* Effect.scope
    const runFork = Effect.runForkWith(yield* Effect.context<never>())
    const policy = new RowPolicy.RowPolicy(unscopedTables)
    const subscriptions = new Map<ChangeFeed.ChangeSubscriber["sink"], Scope.Closeable>()

    const unsubscribe = (sink: ChangeFeed.ChangeSubscriber["sink"]) => {
      const scope = subscriptions.get(sink)
      if (scope === undefined) return
      subscriptions.delete(sink)
      runFork(Scope.close(scope, Exit.void))
    }

    // One change reaches every subscriber of a binding in one synchronous loop with the same `data` object: its frame
    // is built once per (variant, binding id, select, topic, serializer), not once per subscriber.
    const frames = new WeakMap<object, Map<string, Uint8Array>>()

    const listener = (subscriber: ChangeFeed.ChangeSubscriber, binding: ChangeFeed.Binding): UpstreamPool.Listener => {
      const select = binding.select?.join(",") ?? ""
      return {
        onMessage: (message) => {
          if (message._tag !== "PostgresChange" || typeof message.data !== "object" || message.data === null) return
          const change = message.data as RawChange
          policy.setNow(Date.now())
          const variant = variantOf(change, subscriber.access, policy)
          if (variant === undefined) return
          let byKey = frames.get(change)
          if (byKey === undefined) frames.set(change, byKey = new Map())
          const key = `${variant}|${binding.id}|${select}|${subscriber.topic}|${subscriber.sink.vsn}`
          let frame = byKey.get(key)
          if (frame === undefined) {
            const payload = `{"ids":[${binding.id}],"data":${JSON.stringify(render(change, binding, variant))}}`
            frame = WsFrame.text(
              Serializer.encodeRaw(subscriber.sink.vsn, null, null, subscriber.topic, "postgres_changes", payload)
            )
            byKey.set(key, frame)
          }
          subscriber.sink.enqueue(frame)
        },
        // Changes committed while the upstream channel was down are not sent again: the subscriber is told once it
        // receives again, with the `system` message a client can refetch on.
        onSignal: (signal) => {
          if (signal._tag !== "Rejoined") return
          const payload = Reply.system(
            "postgres_changes",
            "error",
            Reply.CHANGES_MAY_HAVE_BEEN_MISSED,
            Frame.subtopicOf(subscriber.topic) ?? subscriber.topic
          )
          subscriber.sink.enqueue(WsFrame.text(Serializer.encode(subscriber.sink.vsn, {
            joinRef: null,
            ref: null,
            topic: subscriber.topic,
            event: Reply.SYSTEM,
            payload
          })))
        }
      }
    }

    return {
      subscribe: (subscriber) =>
        Effect.gen(function*() {
          unsubscribe(subscriber.sink)
          const scope = Scope.forkUnsafe(feedScope)
          subscriptions.set(subscriber.sink, scope)
          return yield* Effect.forEach(
            subscriber.bindings,
            (binding) =>
              pool.changes(upstreamBinding(binding), listener(subscriber, binding)).pipe(
                Scope.provide(scope),
                Effect.match({
                  onFailure: (error): ChangeFeed.BindingResult => ({
                    _tag: "Refused",
                    reason: ChangeFeed.unableToSubscribe(binding, `The upstream refused it (${error.message})`)
                  }),
                  onSuccess: (): ChangeFeed.BindingResult => ({ _tag: "Subscribed" })
                })
              ),
            { concurrency: "unbounded" }
          )
        }),
      unsubscribe
    }
  })

export const layer = (
  unscopedTables: RowPolicy.UnscopedRule
): Layer.Layer<ChangeFeed.ChangeFeed, never, UpstreamPool.UpstreamPool> =>
  Layer.effect(ChangeFeed.ChangeFeed, make(unscopedTables))

/**
 * Postgres Changes for every channel of this process, over one replication stream.
 *
 * Bindings with the same (schema, table, event, filter, select) share one matcher entry: a change
 * is matched against each distinct entry once, authorized once per (token, wedding), and turned
 * into at most one encoded frame per (topic, binding ids, payload variant, serializer) however
 * many sockets receive it. A transaction is acknowledged to Postgres only after its frames were
 * handed to every subscriber's outbox, so a restart resumes where delivery stopped.
 *
 * This is the `ChangeFeed` implementation of a gateway with `DATABASE_URL`.
 */
import { ChangeFeed, type Sink } from "@wedsync/hub"
import { Serializer, WsFrame } from "@wedsync/protocol"
import { Config, Effect, Layer, Result } from "effect"
import type { ChangeEvent, Column, Transaction } from "./ChangeEvent.ts"
import * as ChangeFilter from "./ChangeFilter.ts"
import * as ChangePayload from "./ChangePayload.ts"
import type { ChangesError } from "./ChangesError.ts"
import { Replication } from "./Replication.ts"
import { RowPolicy, type RowScope, scopeOf, type UnscopedRule } from "./RowPolicy.ts"

interface Member {
  readonly subscriber: ChangeFeed.ChangeSubscriber
  /** Ids of this subscriber's bindings that resolved to this entry. */
  readonly ids: Array<number>
}

interface Entry {
  readonly key: string
  /** `*` or the upper-cased action. */
  readonly action: string
  readonly filter: ChangeFilter.TypedFilter | undefined
  readonly select: ReadonlyArray<string> | undefined
  readonly members: Map<Sink.Sink, Member>
}

/** What one subscriber gets for one change. */
interface Target {
  readonly topic: string
  readonly ids: Array<number>
  readonly restricted: boolean
  readonly select: ReadonlyArray<string> | undefined
}

interface Table {
  readonly columns: ReadonlyArray<Column>
  readonly columnNames: ReadonlySet<string>
  readonly entries: Map<string, Entry>
}

const ACTIONS = new Set(["INSERT", "UPDATE", "DELETE"])

const actionOf = (event: string): string => {
  const upper = event.toUpperCase()
  return ACTIONS.has(upper) ? upper : "*"
}

const unableToSubscribe = (binding: ChangeFeed.Binding, why: string) =>
  `Unable to subscribe to changes with given parameters. ${why}: ${ChangeFeed.describe(binding)}`

export interface Options {
  /** Who sees rows of tables without `wedding_id`/`supplier_id` (besides `service_role`). */
  readonly unscopedTables: UnscopedRule
}

/** `UNSCOPED_TABLES`: `service_role` (default), `authenticated` or `all`. */
export const config: Config.Config<Options> = Config.all({
  unscopedTables: Config.Literals(["service_role", "authenticated", "all"] as const, "UNSCOPED_TABLES").pipe(
    Config.withDefault("service_role" as const)
  )
})

export const make = (options: Options) => Effect.gen(function*() {
  const replication = yield* Replication
  const policy = new RowPolicy(options.unscopedTables)
  const tables = new Map<string, Table>()
  const subscriptions = new Map<Sink.Sink, Array<Entry>>()

  const tableOf = (schema: string, name: string, columns: ReadonlyArray<Column>): Table => {
    const key = `${schema}.${name}`
    let table = tables.get(key)
    if (table === undefined) {
      table = { columns, columnNames: new Set(columns.map((c) => c.name)), entries: new Map() }
      tables.set(key, table)
    }
    return table
  }

  const unsubscribe = (sink: Sink.Sink) => {
    const entries = subscriptions.get(sink)
    if (entries === undefined) return
    subscriptions.delete(sink)
    for (const entry of entries) entry.members.delete(sink)
    for (const [key, table] of tables) {
      for (const [entryKey, entry] of table.entries) if (entry.members.size === 0) table.entries.delete(entryKey)
      if (table.entries.size === 0) tables.delete(key)
    }
  }

  /** Resolves one binding to its entry, or the reason it cannot be honoured. */
  const resolve = (binding: ChangeFeed.Binding): Effect.Effect<Result.Result<Entry, string>, ChangesError> =>
    Effect.gen(function*() {
      if (binding.table === undefined || binding.table === "*" || binding.schema === "*") {
        return Result.fail(unableToSubscribe(binding, "This gateway needs an explicit schema and table for each binding"))
      }
      const relation = yield* replication.relation(binding.schema, binding.table)
      if (relation === undefined) {
        return Result.fail(unableToSubscribe(binding, "Please check Realtime is enabled for the given connect parameters"))
      }
      let filter: ChangeFilter.TypedFilter | undefined
      if (binding.filter !== undefined && binding.filter !== "") {
        const parsed = ChangeFilter.parse(binding.filter)
        if (Result.isFailure(parsed)) return Result.fail(parsed.failure.message)
        const typed = ChangeFilter.validate(parsed.success, relation.columns)
        if (Result.isFailure(typed)) return Result.fail(unableToSubscribe(binding, typed.failure.message))
        filter = typed.success
      }
      if (binding.select !== undefined) {
        const unknown = binding.select.find((column) => !relation.columns.some((c) => c.name === column))
        if (unknown !== undefined) return Result.fail(unableToSubscribe(binding, `invalid column for select ${unknown}`))
      }
      const table = tableOf(binding.schema, binding.table, relation.columns)
      const action = actionOf(binding.event)
      const key = JSON.stringify([action, binding.filter ?? "", binding.select ?? null])
      let entry = table.entries.get(key)
      if (entry === undefined) {
        entry = { key, action, filter, select: binding.select, members: new Map() }
        table.entries.set(key, entry)
      }
      return Result.succeed(entry)
    })

  const subscribe: ChangeFeed.ChangeFeedShape["subscribe"] = (subscriber) =>
    Effect.gen(function*() {
      unsubscribe(subscriber.sink)
      const results: Array<ChangeFeed.BindingResult> = []
      const joined: Array<Entry> = []
      for (const binding of subscriber.bindings) {
        const resolved: Result.Result<Entry, string> = yield* Effect.orElseSucceed(
          resolve(binding),
          () => Result.fail(unableToSubscribe(binding, "Realtime was unable to read the table definition"))
        )
        if (Result.isFailure(resolved)) {
          results.push({ _tag: "Refused", message: resolved.failure })
          continue
        }
        const entry = resolved.success
        let member = entry.members.get(subscriber.sink)
        if (member === undefined) entry.members.set(subscriber.sink, (member = { subscriber, ids: [] }))
        if (!member.ids.includes(binding.id)) member.ids.push(binding.id)
        if (!joined.includes(entry)) joined.push(entry)
        results.push({ _tag: "Subscribed" })
      }
      if (joined.length > 0) subscriptions.set(subscriber.sink, joined)
      // "Subscribed to PostgreSQL" only once the stream delivers.
      if (joined.length > 0) yield* replication.ready
      return results
    })

  /** Frames built for one change, reused for every subscriber with the same key. */
  const deliver = (change: ChangeEvent, table: Table) => {
    const row = change.action === "DELETE" ? change.oldRecord : change.record
    const scope: RowScope = scopeOf(table.columnNames, change.record ?? change.oldRecord)
    // Per subscriber: the matched binding ids and the payload variant it gets.
    const matched = new Map<Sink.Sink, Target>()
    for (const entry of table.entries.values()) {
      if (entry.action !== "*" && entry.action !== change.action) continue
      if (entry.filter !== undefined && !ChangeFilter.matches(entry.filter, row)) continue
      for (const [sink, member] of entry.members) {
        const decision = policy.decide(member.subscriber.access, scope)
        if (decision === "denied") continue
        const found = matched.get(sink)
        if (found === undefined) {
          matched.set(sink, {
            topic: member.subscriber.topic,
            ids: [...member.ids],
            restricted: decision === "restricted",
            select: entry.select
          })
        } else {
          for (const id of member.ids) if (!found.ids.includes(id)) found.ids.push(id)
        }
      }
    }
    if (matched.size === 0) return 0
    const data = new Map<string, string>()
    const frames = new Map<string, Uint8Array>()
    for (const [sink, target] of matched) {
      const variant = target.restricted && change.action === "DELETE" ? "restricted" : "full"
      const dataKey = `${variant}|${target.select?.join(",") ?? ""}`
      let dataJson = data.get(dataKey)
      if (dataJson === undefined) {
        dataJson = ChangePayload.dataJson(change, { variant, select: target.select })
        data.set(dataKey, dataJson)
      }
      const frameKey = `${sink.vsn}|${target.topic}|${target.ids.join(",")}|${dataKey}`
      let frame = frames.get(frameKey)
      if (frame === undefined) {
        const payload = ChangePayload.frameJson(target.ids, dataJson)
        frame = WsFrame.text(Serializer.encodeRaw(sink.vsn, null, null, target.topic, "postgres_changes", payload))
        frames.set(frameKey, frame)
      }
      sink.enqueue(frame)
    }
    return matched.size
  }

  const consume = (transaction: Transaction) =>
    Effect.sync(() => {
      for (const change of transaction.changes) {
        if (change.action === "TRUNCATE") continue
        const table = tables.get(`${change.schema}.${change.table}`)
        if (table !== undefined) deliver(change, table)
      }
    })

  yield* Effect.forkScoped(replication.run(consume))

  return ChangeFeed.ChangeFeed.of({ subscribe, unsubscribe })
})

/** The change feed of a gateway with a database: `ChangeFeed` over `Replication`. */
export const layer = (options: Options) => Layer.effect(ChangeFeed.ChangeFeed, make(options))

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
  /** Subscribers of this entry with the same topic, serializer and ids share frames; set once subscribed. */
  group: Group | undefined
}

/**
 * The sockets of one entry that receive byte-identical frames (same topic, serializer and binding
 * ids), e.g. the 200 devices of a wedding on its channel. Frames are cached for the change being
 * delivered, so the per-recipient work is a policy lookup and an enqueue.
 */
interface Group {
  readonly key: string
  readonly topic: string
  readonly vsn: Sink.Sink["vsn"]
  readonly ids: ReadonlyArray<number>
  size: number
  change: ChangeEvent | undefined
  full: Uint8Array | undefined
  restricted: Uint8Array | undefined
}

interface Entry {
  readonly key: string
  /** `schema.table` of the table holding this entry, to drop it when its last member leaves. */
  readonly tableKey: string
  /** `*` or the upper-cased action. */
  readonly action: string
  readonly filter: ChangeFilter.TypedFilter | undefined
  readonly select: ReadonlyArray<string> | undefined
  readonly members: Map<Sink.Sink, Member>
  readonly groups: Map<string, Group>
  /** Data JSON of the change being delivered, per variant. */
  change: ChangeEvent | undefined
  dataFull: string | undefined
  dataRestricted: string | undefined
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
    // Only this sink's entries are touched: a drain of 10,000 sockets must not scan every table each time.
    for (const entry of entries) {
      const group = entry.members.get(sink)?.group
      if (group !== undefined && --group.size === 0) entry.groups.delete(group.key)
      entry.members.delete(sink)
      if (entry.members.size > 0) continue
      const table = tables.get(entry.tableKey)
      table?.entries.delete(entry.key)
      if (table?.entries.size === 0) tables.delete(entry.tableKey)
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
        entry = {
          key,
          tableKey: `${binding.schema}.${binding.table}`,
          action,
          filter,
          select: binding.select,
          members: new Map(),
          groups: new Map(),
          change: undefined,
          dataFull: undefined,
          dataRestricted: undefined
        }
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
        if (member === undefined) entry.members.set(subscriber.sink, (member = { subscriber, ids: [], group: undefined }))
        if (!member.ids.includes(binding.id)) member.ids.push(binding.id)
        if (!joined.includes(entry)) joined.push(entry)
        results.push({ _tag: "Subscribed" })
      }
      for (const entry of joined) {
        const member = entry.members.get(subscriber.sink)!
        const key = `${subscriber.topic}\u0000${subscriber.sink.vsn}\u0000${member.ids.join(",")}`
        let group = entry.groups.get(key)
        if (group === undefined) {
          group = { key, topic: subscriber.topic, vsn: subscriber.sink.vsn, ids: [...member.ids], size: 0, change: undefined, full: undefined, restricted: undefined }
          entry.groups.set(key, group)
        }
        group.size++
        member.group = group
      }
      if (joined.length > 0) subscriptions.set(subscriber.sink, joined)
      // "Subscribed to PostgreSQL" only once the stream delivers.
      if (joined.length > 0) yield* replication.ready
      return results
    })

  const groupFrame = (entry: Entry, group: Group, change: ChangeEvent, restricted: boolean): Uint8Array => {
    if (group.change !== change) {
      group.change = change
      group.full = undefined
      group.restricted = undefined
    }
    const cached = restricted ? group.restricted : group.full
    if (cached !== undefined) return cached
    if (entry.change !== change) {
      entry.change = change
      entry.dataFull = undefined
      entry.dataRestricted = undefined
    }
    const data = restricted
      ? (entry.dataRestricted ??= ChangePayload.dataJson(change, { variant: "restricted", select: entry.select }))
      : (entry.dataFull ??= ChangePayload.dataJson(change, { variant: "full", select: entry.select }))
    const frame = WsFrame.text(
      Serializer.encodeRaw(group.vsn, null, null, group.topic, "postgres_changes", ChangePayload.frameJson(group.ids, data))
    )
    if (restricted) group.restricted = frame
    else group.full = frame
    return frame
  }

  /** The common case: one entry matched, so every recipient's frame is its group's. No per-recipient allocation. */
  const deliverOne = (change: ChangeEvent, entry: Entry, scope: RowScope) => {
    let delivered = 0
    for (const [sink, member] of entry.members) {
      const decision = policy.decide(member.subscriber.access, scope)
      if (decision === "denied" || member.group === undefined) continue
      sink.enqueue(groupFrame(entry, member.group, change, decision === "restricted" && change.action === "DELETE"))
      delivered++
    }
    return delivered
  }

  /** Frames built for one change, reused for every subscriber with the same key. */
  const deliver = (change: ChangeEvent, table: Table) => {
    const row = change.action === "DELETE" ? change.oldRecord : change.record
    const scope: RowScope = scopeOf(table.columnNames, change.record ?? change.oldRecord)
    let only: Entry | undefined
    let matchedEntries = 0
    for (const entry of table.entries.values()) {
      if (entry.action !== "*" && entry.action !== change.action) continue
      if (entry.filter !== undefined && !ChangeFilter.matches(entry.filter, row)) continue
      only = entry
      if (++matchedEntries > 1) break
    }
    if (matchedEntries === 0) return 0
    if (matchedEntries === 1) return deliverOne(change, only!, scope)
    // Several entries matched: a socket may be in more than one and must get one frame with all its ids.
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

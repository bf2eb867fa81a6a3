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
import { Memberships } from "@wedsync/auth"
import { ChangeFeed, type Sink } from "@wedsync/hub"
import { Serializer, WsFrame } from "@wedsync/protocol"
import { Clock, Config, Effect, Layer, Metric, Result } from "effect"
import type { ChangeEvent, Column, Transaction } from "./ChangeEvent.ts"
import * as ChangeFilter from "./ChangeFilter.ts"
import * as ChangePayload from "./ChangePayload.ts"
import type { ChangesError } from "./ChangesError.ts"
import * as ChangesMetrics from "./ChangesMetrics.ts"
import { Replication } from "./Replication.ts"
import { idOf, RowPolicy, type RowScope, sameScope, scopeOf, type UnscopedRule } from "./RowPolicy.ts"

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
  /** Where this entry is registered (a table's or a whole schema's entries), to drop it when its last member leaves. */
  readonly home: Map<string, Watched>
  readonly homeKey: string
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

/**
 * What one subscriber gets for one change: the event (the change itself, or the side of a moved row
 * it may see), its payload variant, and the ids of its matched bindings.
 */
interface Target {
  readonly topic: string
  readonly ids: Array<number>
  /** Names the event and variant in frame-sharing keys. */
  readonly kind: string
  readonly event: ChangeEvent
  readonly variant: ChangePayload.Variant["variant"]
  readonly select: ReadonlyArray<string> | undefined
}

/** The entries of one table, or of a whole schema (bindings without a table). */
interface Watched {
  readonly entries: Map<string, Entry>
}

const ACTIONS = new Set(["INSERT", "UPDATE", "DELETE"])

const actionOf = (event: string): string => {
  const upper = event.toUpperCase()
  return ACTIONS.has(upper) ? upper : "*"
}

const { unableToSubscribe } = ChangeFeed

const takes = (entry: Entry, action: string) => entry.action === "*" || entry.action === action

/** The old image's primary key where the new image has the same values: what may be shown beside the new row. */
const sharedIdentity = (change: ChangeEvent): Record<string, unknown> => {
  const out: Record<string, unknown> = Object.create(null)
  const before = change.oldRecord
  const after = change.record
  if (before === undefined || after === undefined) return out
  for (const column of change.primaryKey) {
    if (Object.hasOwn(before, column) && Object.hasOwn(after, column) && before[column] === after[column]) {
      out[column] = before[column]
    }
  }
  return out
}

const UNKNOWN: RowScope = { _tag: "Unknown" }

const columnNames = new WeakMap<ReadonlyArray<Column>, ReadonlySet<string>>()
/** Column names of a relation, once per relation (the stream keeps one columns array per relation). */
const namesOf = (columns: ReadonlyArray<Column>): ReadonlySet<string> => {
  let names = columnNames.get(columns)
  if (names === undefined) columnNames.set(columns, names = new Set(columns.map((c) => c.name)))
  return names
}

export interface Options {
  /** Who sees rows of tables without `wedding_id`/`supplier_id` (besides `service_role`). */
  readonly unscopedTables: UnscopedRule
  /**
   * The membership table (`MEMBERSHIP_TABLE`), followed in the stream: its inserts grant, its deletes and moves
   * revoke (`Memberships`). Must be in the publication, with `REPLICA IDENTITY FULL` for deletes to be seen.
   */
  readonly membershipTable?: { readonly schema: string; readonly table: string } | undefined
}

/** The grants a membership row carries: (user, wedding) and/or (user, supplier); none without a `user_id`. */
export const grantsOf = (row: Readonly<Record<string, unknown>> | undefined): ReadonlyArray<Memberships.Grant> => {
  const userId = idOf(row?.["user_id"])
  if (userId === undefined) return []
  const grants: Array<Memberships.Grant> = []
  const wedding = idOf(row?.["wedding_id"])
  if (wedding !== undefined) grants.push({ userId, scope: "wedding", id: wedding })
  const supplier = idOf(row?.["supplier_id"])
  if (supplier !== undefined) grants.push({ userId, scope: "supplier", id: supplier })
  return grants
}

const sameGrant = (a: Memberships.Grant, b: Memberships.Grant) =>
  a.userId === b.userId && a.scope === b.scope && a.id === b.id

/** `UNSCOPED_TABLES`: `service_role` (default), `authenticated` or `all`. */
export const config: Config.Config<Options> = Config.all({
  unscopedTables: Config.Literals(["service_role", "authenticated", "all"] as const, "UNSCOPED_TABLES").pipe(
    Config.withDefault("service_role" as const)
  )
})

export const make = (options: Options) =>
  Effect.gen(function*() {
    const replication = yield* Replication
    const memberships = yield* Memberships.Memberships
    const policy = new RowPolicy(options.unscopedTables, memberships)
    const membershipTable = memberships.enabled ? options.membershipTable : undefined
    // Keyed `schema\u0000table` (a dot could be part of either name) and by schema.
    const tables = new Map<string, Watched>()
    const schemas = new Map<string, Watched>()
    const subscriptions = new Map<Sink.Sink, Array<Entry>>()

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
        const watched = entry.home.get(entry.homeKey)
        watched?.entries.delete(entry.key)
        if (watched?.entries.size === 0) entry.home.delete(entry.homeKey)
      }
    }

    const entryOf = (
      home: Map<string, Watched>,
      homeKey: string,
      binding: ChangeFeed.Binding,
      filter: ChangeFilter.TypedFilter | undefined
    ): Entry => {
      let watched = home.get(homeKey)
      if (watched === undefined) home.set(homeKey, watched = { entries: new Map() })
      const action = actionOf(binding.event)
      const key = JSON.stringify([action, binding.filter ?? "", binding.select ?? null])
      let entry = watched.entries.get(key)
      if (entry === undefined) {
        entry = {
          key,
          home,
          homeKey,
          action,
          filter,
          select: binding.select,
          members: new Map(),
          groups: new Map(),
          change: undefined,
          dataFull: undefined,
          dataRestricted: undefined
        }
        watched.entries.set(key, entry)
      }
      return entry
    }

    /** Resolves one binding to its entry, or the reason it cannot be honoured. */
    const resolve = (
      binding: ChangeFeed.Binding
    ): Effect.Effect<Result.Result<Entry, ChangeFeed.RefusalReason>, ChangesError> =>
      Effect.gen(function*() {
        if (binding.schema === "*" || binding.schema === "") {
          return Result.fail(unableToSubscribe(binding, "This gateway needs an explicit schema for each binding"))
        }
        const publication = replication.publication
        if (binding.table === undefined || binding.table === "*") {
          // A whole schema: every published table of it, each row under its own table's policy.
          if ((binding.filter !== undefined && binding.filter !== "") || binding.select !== undefined) {
            return Result.fail(unableToSubscribe(binding, "A filter or select needs a table"))
          }
          const published = yield* replication.publishedTables(binding.schema)
          if (published.length === 0) {
            return Result.fail(
              unableToSubscribe(binding, `No table of schema ${binding.schema} is in publication ${publication}`)
            )
          }
          return Result.succeed(entryOf(schemas, binding.schema, binding, undefined))
        }
        const relation = yield* replication.relation(binding.schema, binding.table)
        if (relation === undefined) {
          return Result.fail(unableToSubscribe(
            binding,
            `Table ${binding.schema}.${binding.table} does not exist or is not in publication ${publication}`
          ))
        }
        let filter: ChangeFilter.TypedFilter | undefined
        if (binding.filter !== undefined && binding.filter !== "") {
          const parsed = ChangeFilter.parse(binding.filter)
          if (Result.isFailure(parsed))
            return Result.fail(new ChangeFeed.InvalidFilter({ message: parsed.failure.message }))
          const typed = ChangeFilter.validate(parsed.success, relation.columns)
          if (Result.isFailure(typed))
            return Result.fail(unableToSubscribe(binding, typed.failure.message))
          filter = typed.success
        }
        if (binding.select !== undefined) {
          const unknown = binding.select.find((column) => !relation.columns.some((c) => c.name === column))
          if (unknown !== undefined)
            return Result.fail(unableToSubscribe(binding, `invalid column for select ${unknown}`))
        }
        return Result.succeed(entryOf(tables, `${binding.schema}\u0000${binding.table}`, binding, filter))
      })

    const subscribe: ChangeFeed.ChangeFeedShape["subscribe"] = (subscriber) =>
      Effect.gen(function*() {
        unsubscribe(subscriber.sink)
        const results: Array<ChangeFeed.BindingResult> = []
        const joined: Array<Entry> = []
        for (const binding of subscriber.bindings) {
          const resolved: Result.Result<Entry, ChangeFeed.RefusalReason> = yield* Effect.orElseSucceed(
            resolve(binding),
            () => Result.fail(unableToSubscribe(binding, "Realtime was unable to read the table definition"))
          )
          if (Result.isFailure(resolved)) {
            results.push({ _tag: "Refused", reason: resolved.failure })
            continue
          }
          const entry = resolved.success
          let member = entry.members.get(subscriber.sink)
          if (member === undefined)
            entry.members.set(subscriber.sink, member = { subscriber, ids: [], group: undefined })
          if (!member.ids.includes(binding.id))
            member.ids.push(binding.id)
          if (!joined.includes(entry))
            joined.push(entry)
          results.push({ _tag: "Subscribed" })
        }
        for (const entry of joined) {
          const member = entry.members.get(subscriber.sink)!
          const key = `${subscriber.topic}\u0000${subscriber.sink.vsn}\u0000${member.ids.join(",")}`
          let group = entry.groups.get(key)
          if (group === undefined) {
            group = {
              key,
              topic: subscriber.topic,
              vsn: subscriber.sink.vsn,
              ids: [...member.ids],
              size: 0,
              change: undefined,
              full: undefined,
              restricted: undefined
            }
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
        Serializer.encodeRaw(
          group.vsn,
          null,
          null,
          group.topic,
          "postgres_changes",
          ChangePayload.frameJson(group.ids, data)
        )
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

    /** Adds a subscriber's matched ids to its target, creating the target on first match. */
    const addTarget = (
      targets: Map<Sink.Sink, Target>,
      sink: Sink.Sink,
      member: Member,
      entry: Entry,
      kind: string,
      event: ChangeEvent,
      variant: Target["variant"]
    ) => {
      const found = targets.get(sink)
      if (found === undefined) {
        targets.set(sink, {
          topic: member.subscriber.topic,
          ids: [...member.ids],
          kind,
          event,
          variant,
          select: entry.select
        })
      } else {
        for (const id of member.ids) if (!found.ids.includes(id)) found.ids.push(id)
      }
    }

    /** Adds the members of one matched entry that may see the change. */
    const addTargets = (targets: Map<Sink.Sink, Target>, entry: Entry, change: ChangeEvent, scope: RowScope) => {
      for (const [sink, member] of entry.members) {
        const decision = policy.decide(member.subscriber.access, scope)
        if (decision === "denied") continue
        const variant = decision === "restricted" && change.action === "DELETE" ? "restricted" : "full"
        addTarget(targets, sink, member, entry, "change", change, variant)
      }
    }

    /** Encodes each distinct (event, variant, select) once and each distinct frame once, then enqueues. */
    const send = (targets: Map<Sink.Sink, Target>) => {
      if (targets.size === 0) return 0
      const data = new Map<string, string>()
      const frames = new Map<string, Uint8Array>()
      for (const [sink, target] of targets) {
        const dataKey = `${target.kind}|${target.variant}|${target.select?.join(",") ?? ""}`
        let dataJson = data.get(dataKey)
        if (dataJson === undefined) {
          dataJson = ChangePayload.dataJson(target.event, { variant: target.variant, select: target.select })
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
      return targets.size
    }

    /**
     * An UPDATE that moved the row to another wedding or supplier (or out of one). Each image is authorized
     * on its own: a subscriber who may see the new row but not the old one gets the UPDATE with `old_record`
     * cut to the primary key both images share; one who may see the old row but not the new one gets a
     * DELETE with the old primary key (the row left its view), for its `*`/`DELETE` bindings whose filter
     * matches the old image; `service_role` and subscribers of both sides get the UPDATE as it is.
     */
    const deliverMoved = (change: ChangeEvent, watched: ReadonlyArray<Watched>, before: RowScope, after: RowScope) => {
      let entered: ChangeEvent | undefined
      let left: ChangeEvent | undefined
      const targets = new Map<Sink.Sink, Target>()
      for (const { entries } of watched) {
        for (const entry of entries.values()) {
          const matchesNew = takes(entry, "UPDATE") &&
            (entry.filter === undefined || ChangeFilter.matches(entry.filter, change.record))
          const matchesOld = takes(entry, "DELETE") &&
            (entry.filter === undefined || ChangeFilter.matches(entry.filter, change.oldRecord))
          if (!matchesNew && !matchesOld) continue
          for (const [sink, member] of entry.members) {
            const access = member.subscriber.access
            const now = policy.decide(access, after)
            if (now === "full" || (now === "restricted" && policy.decide(access, before) !== "denied")) {
              if (matchesNew) addTarget(targets, sink, member, entry, "update", change, "full")
            } else if (now === "restricted") {
              entered ??= { ...change, oldRecord: sharedIdentity(change) }
              if (matchesNew) addTarget(targets, sink, member, entry, "entered", entered, "full")
            } else if (policy.decide(access, before) !== "denied") {
              left ??= { ...change, action: "DELETE", record: undefined }
              if (matchesOld) addTarget(targets, sink, member, entry, "left", left, "restricted")
            }
          }
        }
      }
      return send(targets)
    }

    /** Frames built for one change, reused for every subscriber with the same key. */
    const deliver = (change: ChangeEvent, watched: ReadonlyArray<Watched>): Delivery => {
      const names = namesOf(change.columns)
      const scope: RowScope = change.scopeHidden === true ? UNKNOWN : scopeOf(names, change.record ?? change.oldRecord)
      if (change.action === "UPDATE" && change.oldRecord !== undefined && change.scopeHidden !== true) {
        const before = scopeOf(names, change.oldRecord)
        if (!sameScope(before, scope))
          return { delivered: deliverMoved(change, watched, before, scope), withheld: false }
      }
      const row = change.action === "DELETE" ? change.oldRecord : change.record
      // The first matching entry is kept aside: when it stays the only one, its groups' frames serve every member.
      let only: Entry | undefined
      let targets: Map<Sink.Sink, Target> | undefined
      for (const { entries } of watched) {
        for (const entry of entries.values()) {
          if (!takes(entry, change.action))
            continue
          if (entry.filter !== undefined && !ChangeFilter.matches(entry.filter, row))
            continue
          if (only === undefined) {
            only = entry
            continue
          }
          // Several entries matched: a socket may be in more than one and must get one frame with all its ids.
          if (targets === undefined) addTargets(targets = new Map(), only, change, scope)
          addTargets(targets, entry, change, scope)
        }
      }
      // A scoped table's DELETE without the scope column in its old image reaches service_role only.
      const withheld = only !== undefined && change.action === "DELETE" && scope._tag === "Unknown" &&
        change.scopeHidden !== true
      if (only === undefined) return { delivered: 0, withheld }
      if (targets === undefined) return { delivered: deliverOne(change, only, scope), withheld }
      return { delivered: send(targets), withheld }
    }

    /**
     * What a change of the membership table grants and revokes. An update revokes the grants of its old image that
     * its new image does not carry (a row moved to another wedding, or to another user).
     */
    let identityWarned = false
    const followMembership = (change: ChangeEvent) =>
      Effect.gen(function*() {
        const after = change.action === "DELETE" ? [] : grantsOf(change.record)
        const before = change.action === "INSERT" ? [] : grantsOf(change.oldRecord)
        if ((change.action === "DELETE" && before.length === 0) || change.action === "TRUNCATE") {
          if (!identityWarned) {
            identityWarned = true
            yield* Effect.logWarning(
              `a ${change.action} on the membership table ${change.schema}.${change.table} carries no user_id: ` +
                `its revocations wait for the cache TTL. Set REPLICA IDENTITY FULL on it.`
            )
          }
        }
        for (const grant of before) {
          if (!after.some((kept) => sameGrant(kept, grant))) yield* memberships.revoked(grant)
        }
        for (const grant of after) {
          if (!before.some((had) => sameGrant(had, grant))) yield* memberships.granted(grant)
        }
      })

    /** Runs the decisions `deliver` will make for `change`, so that `policy.missing` holds those L1 cannot answer. */
    const probe = (change: ChangeEvent, watched: ReadonlyArray<Watched>) => {
      const names = namesOf(change.columns)
      if (change.scopeHidden === true) return
      const scope = scopeOf(names, change.record ?? change.oldRecord)
      const before = change.action === "UPDATE" && change.oldRecord !== undefined
        ? scopeOf(names, change.oldRecord)
        : scope
      const moved = !sameScope(before, scope)
      if (!moved && scope._tag !== "Wedding" && scope._tag !== "Supplier") return
      const row = change.action === "DELETE" ? change.oldRecord : change.record
      for (const { entries } of watched) {
        for (const entry of entries.values()) {
          const matches = moved
            ? (takes(entry, "UPDATE") &&
              (entry.filter === undefined || ChangeFilter.matches(entry.filter, change.record))) ||
              (takes(entry, "DELETE") &&
                (entry.filter === undefined || ChangeFilter.matches(entry.filter, change.oldRecord)))
            : takes(entry, change.action) && (entry.filter === undefined || ChangeFilter.matches(entry.filter, row))
          if (!matches) continue
          for (const member of entry.members.values()) {
            policy.decide(member.subscriber.access, scope)
            if (moved) policy.decide(member.subscriber.access, before)
          }
        }
      }
    }

    /** Loads the membership decisions `probe` found missing (one query per decision, shared through the cache). */
    const resolveMissing = Effect.suspend(() =>
      Effect.forEach(
        [...policy.missing],
        ([key, grant]) => Effect.map(memberships.isMember(grant), (member) => policy.resolve(key, member)),
        { concurrency: 16, discard: true }
      )
    )

    const consume = (transaction: Transaction) =>
      Effect.gen(function*() {
        // One clock reading per transaction: a subscriber whose token expired gets no row of it.
        policy.setNow(yield* Clock.currentTimeMillis)
        if (membershipTable !== undefined) {
          // Revocations first: no row of this transaction reaches a member it removed.
          for (const change of transaction.changes) {
            if (change.schema === membershipTable.schema && change.table === membershipTable.table) {
              yield* followMembership(change)
            }
          }
        }
        let withheld = 0
        for (const change of transaction.changes) {
          if (change.action === "TRUNCATE") continue
          const table = tables.get(`${change.schema}\u0000${change.table}`)
          const schema = schemas.get(change.schema)
          if (table === undefined && schema === undefined) continue
          const watched = table === undefined ? [schema!] : schema === undefined ? [table] : [table, schema]
          if (policy.usesMemberships) {
            probe(change, watched)
            if (policy.missing.size > 0) yield* resolveMissing
          }
          if (deliver(change, watched).withheld) withheld++
        }
        if (withheld > 0) yield* Metric.update(ChangesMetrics.deletesWithheld, withheld)
      })

    yield* Effect.forkScoped(replication.run(consume))

    return ChangeFeed.ChangeFeed.of({ subscribe, unsubscribe })
  })

interface Delivery {
  readonly delivered: number
  /** A DELETE that matched bindings but could be shown to no one but service_role (no scope column in its image). */
  readonly withheld: boolean
}

/** The change feed of a gateway with a database: `ChangeFeed` over `Replication` and `Memberships`. */
export const layer = (options: Options) => Layer.effect(ChangeFeed.ChangeFeed, make(options))

/**
 * Presence: who is in a room, as Phoenix.Presence shows it to realtime-js.
 *
 * Each owner (one joined channel) holds at most one entry per room, under its presence key.
 * `track` and `untrack` publish a `presence_diff` through the hub to every member, including the
 * owner; a re-track with a changed payload is a leave of the old ref plus a join of a new ref
 * carrying `phx_ref_prev`, exactly as Supabase emits it. `phx_ref` and `phx_ref_prev` are ours: a
 * meta's own keys of those names are dropped.
 *
 * A room's state is bounded (`Limits`: distinct keys and bytes of its `presence_state`), so the
 * state a joiner is sent always fits a socket's outbox; a track past a bound is refused with a
 * `PresenceLimitExceeded` and changes nothing. Presence keys are client strings: they are only
 * ever keys of `Map`s or of null-prototype records, so `__proto__` or `constructor` are keys like any other.
 *
 * Across processes (`layerRedis`) a room is the union of every node's entries:
 * - each node writes its own entries to the room's hash in Redis (`PresenceStore`) before it publishes their diff,
 *   on the same connection as the broker's publications, so Redis has the entry before anyone receives the diff;
 * - a node keeps a replica of the other nodes' entries of each room that has local subscribers: a snapshot of the
 *   hash read once the broker's subscription to the topic is live, then the other nodes' diffs, including those
 *   received while the snapshot was read (a join or leave of a ref applies once, so replaying them converges);
 * - a node refreshes a heartbeat key every `heartbeatMs` (life: `heartbeatTtlMs`); each node checks the
 *   heartbeats of the nodes in its replicas just as often and, for a node whose heartbeat expired, drops its
 *   entries and sends their leaves to its own subscribers only (every node does the same for its own, so no
 *   client gets a leave twice). A node that finds its own heartbeat had expired (it was too slow, and the others
 *   dropped it) writes and announces its entries again;
 * - after an outage of the broker's subscriber connection (`Broker.onGap`) a node reads each replica's room again
 *   as the snapshot was read, and sends the net joins and leaves it had missed to its own subscribers only
 *   (`PresenceResync`);
 * - a write of a node's own entry that failed is redone at the next heartbeat, and its diff published again (it
 *   went out on the same failing connection): a node that missed it learns it either from that diff or, when its
 *   own subscriber was down too, from the read after its outage.
 * The bounds apply to the union a node sees; tracks racing on two nodes may pass a bound by one entry each.
 */
import { Reply } from "@wedsync/protocol"
import { RedisClient } from "@wedsync/redis"
import { Clock, Context, Deferred, Effect, Fiber, Layer, Metric, Queue, Schema, type Scope } from "effect"
import { Broker } from "./Broker.ts"
import { Hub } from "./Hub.ts"
import * as HubMetrics from "./HubMetrics.ts"
import * as Publication from "./Publication.ts"
import * as PresenceResync from "./PresenceResync.ts"
import * as PresenceStore from "./PresenceStore.ts"
import type { Sink } from "./Sink.ts"

type Meta = Readonly<Record<string, unknown>>
type Metas = Record<string, { metas: Array<Meta> }>

interface Entry {
  readonly key: string
  readonly ref: string
  /** The meta without `phx_ref`/`phx_ref_prev`: the same object on every node that learns the entry. */
  readonly meta: Meta
  readonly metaJson: string
  /** What this entry adds to the room's `presence_state` (an upper bound, see `entryBytes`). */
  readonly bytes: number
}

/** Another node's entries of a room, known while the room has local subscribers. */
interface Replica {
  /** Until the snapshot is in: the other nodes' diffs received meanwhile, replayed over it. */
  pending: Array<Diff> | undefined
  readonly loaded: Deferred.Deferred<void>
  /** While the room is read again after an outage: the other nodes' diffs applied meanwhile, replayed over the read. */
  recording: Array<Diff> | undefined
}

interface Room {
  readonly topic: string
  readonly isPrivate: boolean
  readonly local: Map<object, Entry>
  /** Other nodes' entries by ref. */
  readonly remote: Map<string, Entry>
  /** Entries per presence key, local and remote (several owners may share one key). */
  readonly keys: Map<string, number>
  bytes: number
  replica: Replica | undefined
}

type Diff = PresenceResync.RefDiff<Entry>

/** Changes of this node's entries in one room that Redis may have missed: redone at the next heartbeat. */
interface Unsent {
  readonly topic: string
  readonly isPrivate: boolean
  /** Refs whose write failed. */
  readonly written: Set<string>
  /** Entries whose removal failed. */
  readonly removed: Map<string, Entry>
}

/** Bounds of one room's state; a track that would pass either is refused. */
export interface Limits {
  /** Distinct presence keys. */
  readonly maxKeys: number
  /** Bytes of the `presence_state` JSON (keys, metas and refs). */
  readonly maxBytes: number
}

export const unbounded: Limits = { maxKeys: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY }

/**
 * Bytes an entry adds to `presence_state` beyond its key and meta JSON, at most: the quotes and
 * `{"metas":[…]}` around them, `"phx_ref":"…"` (16 chars) and `"phx_ref_prev":"…"` of a diff.
 */
const ENTRY_OVERHEAD_BYTES = 80

/** Bytes an entry adds to `presence_state` (an upper bound). */
export const entryBytes = (key: string, metaJson: string): number =>
  Buffer.byteLength(key) + Buffer.byteLength(metaJson) + ENTRY_OVERHEAD_BYTES

/** A track refused because the room would pass one of its `Limits`; nothing was changed. */
export class PresenceLimitExceeded extends Schema.TaggedError<PresenceLimitExceeded>()("PresenceLimitExceeded", {
  limit: Schema.Literals(["keys", "bytes"]),
  max: Schema.Number
}) {}

export interface PresenceShape {
  /** Tracks or updates the owner's entry; refused (and nothing changed) when the room would pass `limits`. */
  readonly track: (
    topic: string,
    isPrivate: boolean,
    key: string,
    owner: object,
    meta: Meta,
    limits?: Limits
  ) => Effect.Effect<void, PresenceLimitExceeded>
  /**
   * Removes the owner's entry; a no-op when it has none. `except` keeps the diff from one sink: a
   * channel that is closing untracks itself and must not be sent its own leave after `phx_close`.
   */
  readonly untrack: (topic: string, isPrivate: boolean, owner: object, except?: Sink) => Effect.Effect<void>
  /**
   * The `presence_state` payload as JSON text. Across processes it waits, the first time for a room, until the
   * other nodes' entries are read; call it once subscribed to the topic, so the diffs that follow complete it.
   */
  readonly state: (topic: string, isPrivate: boolean) => Effect.Effect<string>
}

const REF_KEYS = new Set(["phx_ref", "phx_ref_prev"])

/** A copy of a client meta without our reserved keys; null-prototype, so `__proto__` stays an ordinary key. */
const withoutRefs = (meta: Meta): Meta => {
  const out: Record<string, unknown> = Object.create(null)
  for (const key of Object.keys(meta)) if (!REF_KEYS.has(key)) out[key] = meta[key]
  return out
}

// Spreads define own properties; Object.assign would run the `__proto__` setter for a meta key of that name.
const metaWithRef = (entry: Entry, prev?: string): Meta =>
  prev === undefined
    ? { phx_ref: entry.ref, ...entry.meta }
    : { phx_ref: entry.ref, phx_ref_prev: prev, ...entry.meta }

/** A null-prototype record, so that any client string is an ordinary own key. */
const record = (): Metas => Object.create(null) as Metas

const single = (key: string, meta: Meta): Metas => {
  const out = record()
  out[key] = { metas: [meta] }
  return out
}

/** Entries grouped by presence key, each meta with its ref: one side of a `presence_diff`. */
const metasOf = (entries: Iterable<Entry>): Metas => {
  const out = record()
  for (const entry of entries) (out[entry.key] ??= { metas: [] }).metas.push(metaWithRef(entry))
  return out
}

const newRoom = (topic: string, isPrivate: boolean): Room => ({
  topic,
  isPrivate,
  local: new Map(),
  remote: new Map(),
  keys: new Map(),
  bytes: 0,
  replica: undefined
})

const count = (room: Room, entry: Entry, by: 1 | -1): void => {
  const n = (room.keys.get(entry.key) ?? 0) + by
  if (n <= 0) room.keys.delete(entry.key)
  else room.keys.set(entry.key, n)
  room.bytes += by * entry.bytes
}

const makeEntry = (key: string, ref: string, meta: Meta): Entry => {
  const metaJson = JSON.stringify(meta)
  return { key, ref, meta, metaJson, bytes: entryBytes(key, metaJson) }
}

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** The entries of one side (`joins` or `leaves`) of a `presence_diff` payload. */
const entriesOf = (side: unknown): Array<Entry> => {
  const out: Array<Entry> = []
  if (!isRecord(side)) return out
  for (const key of Object.keys(side)) {
    const group = side[key]
    const metas = isRecord(group) ? group["metas"] : undefined
    if (!Array.isArray(metas)) continue
    for (const meta of metas) {
      if (!isRecord(meta) || typeof meta["phx_ref"] !== "string") continue
      out.push(makeEntry(key, meta["phx_ref"], withoutRefs(meta)))
    }
  }
  return out
}

/** A `presence_diff` from another node as entries; `undefined` for any other publication. */
const diffOf = (publication: Publication.Publication): Diff | undefined => {
  if (publication.event !== Reply.PRESENCE_DIFF || publication.body._tag !== "Json") return undefined
  let payload: unknown
  try {
    payload = JSON.parse(publication.body.json)
  } catch {
    return undefined
  }
  if (!isRecord(payload)) return undefined
  return { joins: entriesOf(payload["joins"]), leaves: entriesOf(payload["leaves"]).map((entry) => entry.ref) }
}

/** The node's view of the other nodes; absent for a single node. */
interface Cluster {
  readonly store: PresenceStore.PresenceStoreShape
  /** Completes once this node receives the topic from the other nodes: `true`, or `false` when it does not. */
  readonly subscribed: (key: Publication.TopicKey) => Effect.Effect<boolean>
  /** Sends to the other nodes only. */
  readonly broadcast: (publication: Publication.Publication) => Effect.Effect<void>
  /** Registers, for the scope, a listener of the topics whose publications from other nodes may have been missed. */
  readonly onGap: (
    listener: (keys: ReadonlyArray<Publication.TopicKey>) => void
  ) => Effect.Effect<void, never, Scope.Scope>
}

export interface ClusterOptions {
  /** How often a node refreshes its heartbeat and checks the others'. */
  readonly heartbeatMs: number
  /** Life of a heartbeat: a node silent for this long is dead. Default: 3 × `heartbeatMs`. */
  readonly heartbeatTtlMs?: number
}

const ROOM_TTL_MS = 24 * 60 * 60 * 1000

/** How long a room's first joiner on a node waits for the other nodes' entries at most. */
const LOAD_TIMEOUT_MS = 3_000

/** Rooms read again at once after an outage. */
const RESYNC_CONCURRENCY = 16

/** Pause before the rooms whose read failed after an outage are read again. */
const RESYNC_RETRY_MS = 1_000

const make = (nodeId: string, cluster: Cluster | undefined) =>
  Effect.gen(function*() {
    const hub = yield* Hub
    // The series exists from the first scrape, at 0, with or without Redis.
    yield* Metric.update(HubMetrics.presenceSweptEntries, 0)
    const rooms = new Map<Publication.TopicKey, Room>()
    /** For each other node, its entries in this node's replicas: what to drop when it dies. */
    const byNode = new Map<string, Map<string, Room>>()
    /** Changes of our own entries whose write failed, by room: the next heartbeat redoes them. */
    let unsent = new Map<Publication.TopicKey, Unsent>()

    const diffPublication = (room: Pick<Room, "topic" | "isPrivate">, joins: Metas, leaves: Metas) =>
      Publication.json(room.topic, room.isPrivate, Reply.PRESENCE_DIFF, JSON.stringify({ joins, leaves }))

    const roomOf = (topic: string, isPrivate: boolean): [Publication.TopicKey, Room] => {
      const roomKey = Publication.topicKey(topic, isPrivate)
      let room = rooms.get(roomKey)
      if (room === undefined) rooms.set(roomKey, room = newRoom(topic, isPrivate))
      return [roomKey, room]
    }

    const forgetIfEmpty = (roomKey: Publication.TopicKey, room: Room) => {
      if (room.local.size === 0 && room.replica === undefined && rooms.get(roomKey) === room) rooms.delete(roomKey)
    }

    // --- replicas of the other nodes' entries ------------------------------------------------------------------

    const addRemote = (room: Room, entry: Entry) => {
      const node = PresenceStore.nodeOfRef(entry.ref)
      if (node === nodeId) return
      const previous = room.remote.get(entry.ref)
      if (previous !== undefined) count(room, previous, -1)
      room.remote.set(entry.ref, entry)
      count(room, entry, 1)
      let refs = byNode.get(node)
      if (refs === undefined) byNode.set(node, refs = new Map())
      refs.set(entry.ref, room)
    }

    const removeRemote = (room: Room, ref: string): Entry | undefined => {
      const entry = room.remote.get(ref)
      if (entry === undefined) return undefined
      room.remote.delete(ref)
      count(room, entry, -1)
      const node = PresenceStore.nodeOfRef(ref)
      const refs = byNode.get(node)
      refs?.delete(ref)
      if (refs?.size === 0) byNode.delete(node)
      return entry
    }

    const applyDiff = (room: Room, diff: Diff) => {
      for (const ref of diff.leaves) removeRemote(room, ref)
      for (const entry of diff.joins) addRemote(room, entry)
    }

    const dropReplica = (room: Room) => {
      const replica = room.replica
      if (replica === undefined) return
      room.replica = undefined
      for (const ref of [...room.remote.keys()]) removeRemote(room, ref)
      Deferred.doneUnsafe(replica.loaded, Effect.void)
    }

    const runFork = Effect.runForkWith(yield* Effect.context<never>())
    const scope = yield* Effect.scope

    /** The room's stored entries of the other live nodes, and the refs of dead nodes' (for `removeDead`). */
    const readOthers = (cluster: Cluster, roomKey: Publication.TopicKey) =>
      Effect.gen(function*() {
        const stored = yield* cluster.store.entries(roomKey)
        const others = [...new Set(stored.map((e) => PresenceStore.nodeOfRef(e.ref)))].filter((n) => n !== nodeId)
        const alive = yield* cluster.store.alive(others)
        const live = new Set(others.filter((_, i) => alive[i]))
        const entries: Array<Entry> = []
        const dead: Array<string> = []
        for (const entry of stored) {
          const node = PresenceStore.nodeOfRef(entry.ref)
          if (live.has(node)) entries.push(makeEntry(entry.key, entry.ref, withoutRefs(entry.meta)))
          else if (node !== nodeId) dead.push(entry.ref)
        }
        return { entries, dead }
      })

    /** Deletes dead nodes' fields once the replica is served: nobody waits for it, and a failure is harmless. */
    const removeDead = (cluster: Cluster, roomKey: Publication.TopicKey, dead: ReadonlyArray<string>) =>
      dead.length === 0 ? Effect.void : Effect.ignore(cluster.store.remove(roomKey, dead))

    /** Reads the room's stored entries of live nodes, then replays what arrived meanwhile. */
    const load = (cluster: Cluster, roomKey: Publication.TopicKey, room: Room, replica: Replica) =>
      Effect.gen(function*() {
        // This room only: waiting for every topic of the broker (`settled`) would hold rooms up in a join storm.
        if (!(yield* cluster.subscribed(roomKey))) return yield* Effect.fail("the room's subscription is not live")
        const stored = yield* readOthers(cluster, roomKey)
        if (room.replica !== replica) return
        for (const entry of stored.entries) addRemote(room, entry)
        for (const diff of replica.pending ?? []) applyDiff(room, diff)
        replica.pending = undefined
        yield* removeDead(cluster, roomKey, stored.dead)
      }).pipe(
        // Joiners wait for this: with Redis or the subscription away they get what this node knows instead.
        Effect.timeoutOrElse({
          duration: LOAD_TIMEOUT_MS,
          orElse: () => Effect.fail(`no snapshot within ${LOAD_TIMEOUT_MS} ms`)
        }),
        Effect.catch((error) =>
          Effect.gen(function*() {
            yield* Effect.logWarning(
              `Presence: reading ${roomKey} from Redis failed; retried by the next joiner`,
              error
            )
            // Its joiners get this node's entries and the diffs seen so far; the next `state` reads again.
            if (room.replica === replica) dropReplica(room)
          })
        ),
        Effect.ensuring(Deferred.succeed(replica.loaded, undefined))
      )

    /** The room's replica, started when the room has local subscribers (only then does this node get its diffs). */
    const replicaOf = (roomKey: Publication.TopicKey, room: Room): Replica | undefined => {
      if (cluster === undefined || room.replica !== undefined || hub.subscriberCount(roomKey) === 0) {
        return room.replica
      }
      const replica: Replica = { pending: [], loaded: Deferred.makeUnsafe<void>(), recording: undefined }
      room.replica = replica
      runFork(Effect.forkIn(load(cluster, roomKey, room, replica), scope))
      return replica
    }

    const awaitReplica = (roomKey: Publication.TopicKey, room: Room): Effect.Effect<void> => {
      const replica = replicaOf(roomKey, room)
      return replica === undefined || replica.pending === undefined ? Effect.void : Deferred.await(replica.loaded)
    }

    // --- after an outage of the subscription ------------------------------------------------------------------

    /**
     * Reads the room again, as `load` does, and sends this node's subscribers the joins and leaves its replica had
     * missed (the other nodes do the same for their own). Their clients saw what the replica saw, so the replica's
     * difference is theirs too.
     */
    const resyncRoom = (cluster: Cluster, roomKey: Publication.TopicKey) =>
      Effect.gen(function*() {
        const room = rooms.get(roomKey)
        const replica = room?.replica
        if (room === undefined || replica === undefined) return
        // A snapshot still being read may have been read during the outage: it is checked once in.
        yield* Deferred.await(replica.loaded)
        if (room.replica !== replica) return
        const seen: Array<Diff> = []
        replica.recording = seen
        const stored = yield* readOthers(cluster, roomKey).pipe(
          Effect.ensuring(Effect.sync(() => (replica.recording = undefined)))
        )
        if (room.replica !== replica) return
        const change = PresenceResync.difference(room.remote, PresenceResync.replay(stored.entries, seen))
        const joins = change.joins.filter((entry) => PresenceStore.nodeOfRef(entry.ref) !== nodeId)
        for (const entry of change.leaves) removeRemote(room, entry.ref)
        for (const entry of joins) addRemote(room, entry)
        const changes = joins.length + change.leaves.length
        if (changes > 0) hub.publishLocal(diffPublication(room, metasOf(joins), metasOf(change.leaves)))
        yield* Metric.update(HubMetrics.presenceResyncChanges, changes)
        yield* Metric.update(HubMetrics.presenceResyncedRooms, 1)
        yield* removeDead(cluster, roomKey, stored.dead)
      })

    /** One worker reads the rooms named by gaps, each once however many gaps named it meanwhile. */
    const resyncAfterGaps = (cluster: Cluster) =>
      Effect.gen(function*() {
        const dirty = new Set<Publication.TopicKey>()
        const wake = yield* Queue.make<void>({ capacity: 1, strategy: "dropping" })
        yield* cluster.onGap((keys) => {
          for (const key of keys) if (rooms.get(key)?.replica !== undefined) dirty.add(key)
          if (dirty.size > 0) Queue.offerUnsafe(wake, undefined)
        })
        const pass = Effect.gen(function*() {
          const keys = [...dirty]
          dirty.clear()
          const failed: Array<Publication.TopicKey> = []
          yield* Effect.forEach(
            keys,
            (key) => resyncRoom(cluster, key).pipe(Effect.catch(() => Effect.sync(() => failed.push(key)))),
            { concurrency: RESYNC_CONCURRENCY, discard: true }
          )
          if (failed.length === 0) return
          yield* Effect.logWarning(
            `Presence: reading ${failed.length} rooms from Redis after an outage failed; retried in ${RESYNC_RETRY_MS} ms`
          )
          yield* Effect.sleep(RESYNC_RETRY_MS)
          for (const key of failed) dirty.add(key)
          Queue.offerUnsafe(wake, undefined)
        })
        yield* Queue.take(wake).pipe(Effect.andThen(pass), Effect.forever, Effect.forkScoped)
      })

    if (cluster !== undefined) {
      yield* hub.watch({
        remote: (publication) => {
          const diff = diffOf(publication)
          if (diff === undefined) return
          const [roomKey, room] = roomOf(publication.topic, publication.isPrivate)
          const replica = replicaOf(roomKey, room)
          if (replica === undefined) return forgetIfEmpty(roomKey, room)
          if (replica.pending !== undefined) return void replica.pending.push(diff)
          applyDiff(room, diff)
          replica.recording?.push(diff)
        },
        vacated: (roomKey) => {
          const room = rooms.get(roomKey)
          if (room === undefined) return
          dropReplica(room)
          forgetIfEmpty(roomKey, room)
        }
      })
      yield* resyncAfterGaps(cluster)
    }

    // --- this node's entries -----------------------------------------------------------------------------------

    const unsentOf = (roomKey: Publication.TopicKey, room: Room): Unsent => {
      let out = unsent.get(roomKey)
      if (out === undefined) {
        unsent.set(
          roomKey,
          out = { topic: room.topic, isPrivate: room.isPrivate, written: new Set(), removed: new Map() }
        )
      }
      return out
    }

    /** Writes `entry` in place of `previous`; should it fail, the next heartbeat redoes both. */
    const writeLocal = (roomKey: Publication.TopicKey, room: Room, entry: Entry, previous: Entry | undefined) =>
      cluster === undefined ? Effect.void : cluster.store.put(
        roomKey,
        [[entry.ref, entry.key, entry.metaJson]],
        previous?.ref
      ).pipe(
        Effect.catch((error) =>
          Effect.andThen(
            Effect.sync(() => {
              const behind = unsentOf(roomKey, room)
              behind.written.add(entry.ref)
              if (previous !== undefined) behind.removed.set(previous.ref, previous)
            }),
            Effect.logWarning("Presence: writing an entry to Redis failed; redone with the next heartbeat", error)
          )
        )
      )

    const removeLocal = (roomKey: Publication.TopicKey, room: Room, entry: Entry) =>
      cluster === undefined ? Effect.void : cluster.store.remove(roomKey, [entry.ref]).pipe(
        Effect.catch((error) =>
          Effect.andThen(
            Effect.sync(() => unsentOf(roomKey, room).removed.set(entry.ref, entry)),
            Effect.logWarning("Presence: removing an entry from Redis failed; redone with the next heartbeat", error)
          )
        )
      )

    const track: PresenceShape["track"] = (topic, isPrivate, key, owner, clientMeta, limits = unbounded) =>
      Effect.suspend(() => {
        const [roomKey, loading] = roomOf(topic, isPrivate)
        return Effect.andThen(awaitReplica(roomKey, loading), () => {
          // Looked up again: a failed load may have let the room go meanwhile.
          const [, room] = roomOf(topic, isPrivate)
          const previous = room.local.get(owner)
          const meta = withoutRefs(clientMeta)
          const entry = makeEntry(key, PresenceStore.newRef(nodeId), meta)
          if (previous !== undefined && previous.key === key && previous.metaJson === entry.metaJson) {
            return Effect.void
          }
          const samekey = previous !== undefined && previous.key === key
          // A bound only refuses growth: an update that does not add a key or bytes always passes.
          const previousKeyGoes = previous !== undefined && room.keys.get(previous.key) === 1
          const keysAfter = room.keys.size - (previousKeyGoes ? 1 : 0) +
            (!room.keys.has(key) || (previousKeyGoes && samekey) ? 1 : 0)
          if (keysAfter > limits.maxKeys && keysAfter > room.keys.size) {
            forgetIfEmpty(roomKey, room)
            return Effect.fail(new PresenceLimitExceeded({ limit: "keys", max: limits.maxKeys }))
          }
          const bytesAfter = room.bytes + entry.bytes - (previous?.bytes ?? 0)
          if (bytesAfter > limits.maxBytes && bytesAfter > room.bytes) {
            forgetIfEmpty(roomKey, room)
            return Effect.fail(new PresenceLimitExceeded({ limit: "bytes", max: limits.maxBytes }))
          }
          if (previous !== undefined) count(room, previous, -1)
          room.local.set(owner, entry)
          count(room, entry, 1)
          const joins = single(key, metaWithRef(entry, samekey ? previous.ref : undefined))
          const leaves = previous === undefined ? record() : single(previous.key, metaWithRef(previous))
          // Uninterruptible: the entry is in the room already, so its diff must go out.
          return writeLocal(roomKey, room, entry, previous).pipe(
            Effect.andThen(hub.publish(diffPublication(room, joins, leaves))),
            Effect.asVoid,
            Effect.uninterruptible
          )
        })
      })

    const untrack: PresenceShape["untrack"] = (topic, isPrivate, owner, except) =>
      Effect.suspend(() => {
        const roomKey = Publication.topicKey(topic, isPrivate)
        const room = rooms.get(roomKey)
        const previous = room?.local.get(owner)
        if (room === undefined || previous === undefined) return Effect.void
        room.local.delete(owner)
        count(room, previous, -1)
        forgetIfEmpty(roomKey, room)
        return removeLocal(roomKey, room, previous).pipe(
          Effect.andThen(
            hub.publish(diffPublication(room, record(), single(previous.key, metaWithRef(previous))), except)
          ),
          Effect.asVoid,
          Effect.uninterruptible
        )
      })

    const stateJson = (room: Room | undefined): string => {
      const out = record()
      if (room !== undefined) {
        for (const entry of room.local.values()) (out[entry.key] ??= { metas: [] }).metas.push(metaWithRef(entry))
        for (const entry of room.remote.values()) (out[entry.key] ??= { metas: [] }).metas.push(metaWithRef(entry))
      }
      return JSON.stringify(out)
    }

    const state: PresenceShape["state"] = (topic, isPrivate) =>
      Effect.suspend(() => {
        const roomKey = Publication.topicKey(topic, isPrivate)
        if (cluster === undefined || hub.subscriberCount(roomKey) === 0) {
          return Effect.succeed(stateJson(rooms.get(roomKey)))
        }
        const [, loading] = roomOf(topic, isPrivate)
        return Effect.map(awaitReplica(roomKey, loading), () => {
          const room = rooms.get(roomKey)
          const json = stateJson(room)
          if (room !== undefined) forgetIfEmpty(roomKey, room)
          return json
        })
      })

    // --- heartbeats --------------------------------------------------------------------------------------------

    /** Drops the entries of dead nodes from the replicas, telling this node's subscribers only. */
    const sweep = (cluster: Cluster) =>
      Effect.gen(function*() {
        const nodes = [...byNode.keys()]
        const alive = yield* cluster.store.alive(nodes)
        for (const [i, node] of nodes.entries()) {
          if (alive[i]) continue
          const refs = byNode.get(node)
          if (refs === undefined) continue
          const perRoom = new Map<Room, Array<Entry>>()
          for (const [ref, room] of [...refs]) {
            const entry = removeRemote(room, ref)
            if (entry === undefined) continue
            const gone = perRoom.get(room)
            if (gone === undefined) perRoom.set(room, [entry])
            else gone.push(entry)
          }
          byNode.delete(node)
          let removed = 0
          for (const [room, gone] of perRoom) {
            hub.publishLocal(diffPublication(room, record(), metasOf(gone)))
            removed += gone.length
            const roomKey = Publication.topicKey(room.topic, room.isPrivate)
            yield* Effect.ignore(cluster.store.remove(roomKey, gone.map((e) => e.ref)))
          }
          yield* Metric.update(HubMetrics.presenceSweptEntries, removed)
          yield* Effect.logInfo(`Presence: node ${node} stopped its heartbeat; entries removed: ${removed}`)
        }
      })

    /**
     * Writes every local entry again and redoes the removals that failed, then tells the other nodes what they may
     * have missed: every entry when they had dropped this node (`revived`), otherwise the changes whose write failed
     * (their diffs were sent on the same failing connection). A node that receives one it already had applies it
     * once; a node whose subscriber was down too reads the room after its outage, so it learns them either way.
     */
    const rewriteLocal = (cluster: Cluster, revived: boolean) =>
      Effect.suspend(() => {
        const missed = unsent
        unsent = new Map()
        return redo(cluster, revived, missed).pipe(Effect.onError(() => Effect.sync(() => keepUnsent(missed))))
      })

    const redo = (cluster: Cluster, revived: boolean, missed: ReadonlyMap<Publication.TopicKey, Unsent>) =>
      Effect.gen(function*() {
        const keys = new Set(missed.keys())
        for (const [roomKey, room] of rooms) if (room.local.size > 0) keys.add(roomKey)
        for (const roomKey of keys) {
          const room = rooms.get(roomKey)
          const behind = missed.get(roomKey)
          const entries = room === undefined ? [] : [...room.local.values()]
          if (entries.length > 0) yield* cluster.store.put(roomKey, entries.map((e) => [e.ref, e.key, e.metaJson]))
          if (behind !== undefined) yield* cluster.store.remove(roomKey, [...behind.removed.keys()])
          const joins = revived ? entries : entries.filter((entry) => behind?.written.has(entry.ref) === true)
          const leaves = revived || behind === undefined ? [] : [...behind.removed.values()]
          const where = room ?? behind
          if (where === undefined || (joins.length === 0 && leaves.length === 0)) continue
          yield* cluster.broadcast(diffPublication(where, metasOf(joins), metasOf(leaves)))
        }
      })

    /** Puts back what a failed rewrite was to redo (redoing a write that did land changes nothing). */
    const keepUnsent = (missed: ReadonlyMap<Publication.TopicKey, Unsent>) => {
      for (const [roomKey, behind] of missed) {
        const current = unsent.get(roomKey)
        if (current === undefined) {
          unsent.set(roomKey, behind)
          continue
        }
        for (const ref of behind.written) current.written.add(ref)
        for (const [ref, entry] of behind.removed) current.removed.set(ref, entry)
      }
    }

    let lastRoomRefresh = 0
    const keepRooms = (cluster: Cluster) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - lastRoomRefresh < ROOM_TTL_MS / 4) return
        lastRoomRefresh = now
        const keys = [...rooms].filter(([, room]) => room.local.size > 0).map(([roomKey]) => roomKey)
        yield* cluster.store.keepRooms(keys)
      })

    const beat = (cluster: Cluster) =>
      Effect.gen(function*() {
        const wasAlive = yield* cluster.store.beat
        if (!wasAlive)
          yield* Effect.logWarning("Presence: this node's heartbeat had expired; announcing its entries again")
        if (!wasAlive || unsent.size > 0)
          yield* rewriteLocal(cluster, !wasAlive)
        yield* keepRooms(cluster)
        yield* sweep(cluster)
      }).pipe(Effect.catch((error) => Effect.logWarning("Presence: heartbeat failed", error)))

    return {
      service: { track, untrack, state } satisfies PresenceShape,
      beat,
      /** On a clean stop: every local entry leaves, as if each owner had untracked. */
      leaveAll: Effect.gen(function*() {
        for (const room of [...rooms.values()]) {
          for (const owner of [...room.local.keys()]) yield* untrack(room.topic, room.isPrivate, owner)
        }
      })
    }
  })

const makeRedis = (options: ClusterOptions) =>
  Effect.gen(function*() {
    const nodeId = PresenceStore.newNodeId()
    const store = yield* PresenceStore.make({
      nodeId,
      heartbeatTtlMs: options.heartbeatTtlMs ?? options.heartbeatMs * 3,
      roomTtlMs: ROOM_TTL_MS
    })
    const broker = yield* Broker
    const cluster: Cluster = { store, subscribed: broker.subscribed, broadcast: broker.publish, onGap: broker.onGap }
    // Alive before any entry exists, so that no other node finds an entry of ours without our heartbeat. Should
    // this fail, the next heartbeat finds none before it and writes and announces our entries again.
    yield* store.beat.pipe(
      Effect.catch((error) => Effect.logWarning("Presence: first heartbeat failed; retried every interval", error))
    )
    const presence = yield* make(nodeId, cluster)
    const heartbeat = yield* presence.beat(cluster).pipe(
      Effect.delay(options.heartbeatMs),
      Effect.forever,
      Effect.forkScoped
    )
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Fiber.interrupt(heartbeat)
        yield* presence.leaveAll
        // The others drop whatever of ours they still hold at their next check.
        yield* Effect.ignore(store.forget)
      })
    )
    return presence.service
  })

export class Presence extends Context.Service<Presence, PresenceShape>()("@wedsync/hub/Presence") {
  /** One node: the state is this process's entries. */
  static readonly layerMemory: Layer.Layer<Presence, never, Hub> = Layer.effect(
    Presence,
    Effect.suspend(() => make(PresenceStore.newNodeId(), undefined)).pipe(Effect.map((presence) => presence.service))
  )

  /**
   * Every process's entries, through Redis (see the module comment); needs the hub's broker to be
   * `Broker.layerRedis` on the same client, so that entries and diffs are ordered on one connection.
   */
  static readonly layerRedis = (
    options: ClusterOptions
  ): Layer.Layer<Presence, never, Hub | Broker | RedisClient.RedisClient> => Layer.effect(Presence, makeRedis(options))
}

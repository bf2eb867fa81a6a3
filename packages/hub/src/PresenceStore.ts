/**
 * How presence is kept in Redis, so that every process sees the entries of the others.
 *
 * - A node (one process) announces itself with a heartbeat key, `presence-node:<id>`, written with a time to live
 *   and refreshed more often than it expires: while the key exists the node counts as alive.
 * - A room's entries are one hash per topic, `presence:{<topic key>}`, field = the entry's ref (whose first
 *   `NODE_ID_CHARS` characters are its node's id), value = `[key, meta]` as JSON. The topic is the hash tag, as in
 *   the broker's shard channel (`Broker.channelOf`), so both sit in one slot.
 *
 * This module only reads and writes; `Presence` decides what the entries mean.
 */
import { RedisClient, type RedisError, RedisKey } from "@wedsync/redis"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import type { TopicKey } from "./Publication.ts"

/** Length of a node id, and of the node part at the start of every ref. */
export const NODE_ID_CHARS = 8

/** A fresh node id: 6 random bytes in base64 (8 characters). */
export const newNodeId = (): string => randomBytes(6).toString("base64")

/** A fresh ref of an entry of `nodeId`: the node id, then 6 random bytes in base64 (16 characters in all). */
export const newRef = (nodeId: string): string => nodeId + randomBytes(6).toString("base64")

/** The node that owns the entry of `ref`. */
export const nodeOfRef = (ref: string): string => ref.slice(0, NODE_ID_CHARS)

export const roomKey = (key: TopicKey): RedisKey.RedisKey => RedisKey.tagged("presence", key.toWellFormed())

export const nodeKey = (nodeId: string): RedisKey.RedisKey => RedisKey.make("presence-node", nodeId)

/** An entry as stored; `metaJson` is the meta without refs. */
export interface StoredEntry {
  readonly ref: string
  readonly key: string
  readonly meta: Readonly<Record<string, unknown>>
}

const isMeta = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** The value of a hash field; `metaJson` is already JSON, so it is not encoded twice. */
export const encodeValue = (key: string, metaJson: string): string => `[${JSON.stringify(key)},${metaJson}]`

/** The entry of one hash field, or `undefined` for a value this module did not write. */
export const decodeValue = (ref: string, value: string): StoredEntry | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch {
    return undefined
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) return undefined
  const [key, meta] = parsed as [unknown, unknown]
  return typeof key === "string" && isMeta(meta) ? { ref, key, meta } : undefined
}

export interface PresenceStoreShape {
  readonly nodeId: string
  /** Writes this node's heartbeat; `false` when the previous one had expired (or there was none). */
  readonly beat: Effect.Effect<boolean, RedisError.RedisError>
  /** Deletes this node's heartbeat: the others then treat its entries as gone. */
  readonly forget: Effect.Effect<void, RedisError.RedisError>
  /** Adds entries to a room (and removes `replaced` refs) in one round trip; keeps the room's hash alive. */
  readonly put: (
    key: TopicKey,
    entries: ReadonlyArray<readonly [ref: string, key: string, metaJson: string]>,
    replaced?: string
  ) => Effect.Effect<void, RedisError.RedisError>
  /** Removes refs from a room. */
  readonly remove: (key: TopicKey, refs: ReadonlyArray<string>) => Effect.Effect<void, RedisError.RedisError>
  /** Every stored entry of a room, of every node, alive or not. */
  readonly entries: (key: TopicKey) => Effect.Effect<Array<StoredEntry>, RedisError.RedisError>
  /** Which of `nodeIds` have a live heartbeat, in order. */
  readonly alive: (nodeIds: ReadonlyArray<string>) => Effect.Effect<Array<boolean>, RedisError.RedisError>
  /** Extends the life of the rooms' hashes (rooms where this node has entries). */
  readonly keepRooms: (keys: ReadonlyArray<TopicKey>) => Effect.Effect<void, RedisError.RedisError>
}

export interface StoreOptions {
  readonly nodeId: string
  /** Life of a heartbeat. */
  readonly heartbeatTtlMs: number
  /**
   * Life of a room's hash after its last write or refresh: it only collects the fields of nodes that died in rooms
   * nobody joins again, so it is long, and live nodes refresh their rooms well within it.
   */
  readonly roomTtlMs: number
}

export const make = (
  options: StoreOptions
): Effect.Effect<PresenceStoreShape, never, RedisClient.RedisClient> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const heartbeat = client.key(nodeKey(options.nodeId))
    const room = (key: TopicKey) => client.key(roomKey(key))
    return {
      nodeId: options.nodeId,
      beat: client.command("SET", (redis) => redis.set(heartbeat, "1", "PX", options.heartbeatTtlMs, "GET")).pipe(
        Effect.map((previous) => previous !== null)
      ),
      forget: Effect.asVoid(client.del(nodeKey(options.nodeId))),
      put: (key, entries, replaced) =>
        client.command("HSET", (redis) => {
          const name = room(key)
          const multi = redis.multi()
          if (replaced !== undefined) multi.hdel(name, replaced)
          const fields: Array<string> = []
          for (const [ref, presenceKey, metaJson] of entries) fields.push(ref, encodeValue(presenceKey, metaJson))
          if (fields.length > 0) multi.hset(name, ...fields)
          multi.pexpire(name, options.roomTtlMs)
          return multi.exec()
        }).pipe(Effect.asVoid),
      remove: (key, refs) =>
        refs.length === 0
          ? Effect.void
          : Effect.asVoid(client.command("HDEL", (redis) => redis.hdel(room(key), ...refs))),
      entries: (key) =>
        client.command("HGETALL", (redis) => redis.hgetall(room(key))).pipe(
          Effect.map((fields) => {
            const out: Array<StoredEntry> = []
            // ioredis builds this object with plain assignment: a field named `__proto__` cannot be one of ours.
            for (const [ref, value] of Object.entries(fields)) {
              const entry = decodeValue(ref, value)
              if (entry !== undefined) out.push(entry)
            }
            return out
          })
        ),
      alive: (nodeIds) =>
        nodeIds.length === 0
          ? Effect.succeed([])
          : Effect.map(client.mget(nodeIds.map(nodeKey)), (values) => values.map(Option.isSome)),
      keepRooms: (keys) =>
        keys.length === 0 ? Effect.void : client.command("PEXPIRE", (redis) => {
          const pipeline = redis.pipeline()
          for (const key of keys) pipeline.pexpire(room(key), options.roomTtlMs)
          return pipeline.exec()
        }).pipe(Effect.asVoid)
    } satisfies PresenceStoreShape
  })

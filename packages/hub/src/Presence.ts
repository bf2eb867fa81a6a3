/**
 * Presence: who is in a room, as Phoenix.Presence shows it to realtime-js.
 *
 * Each owner (one joined channel) holds at most one entry per room, under its presence key.
 * `track` and `untrack` publish a `presence_diff` through the hub to every member, including the
 * owner; a re-track with a changed payload is a leave of the old ref plus a join of a new ref
 * carrying `phx_ref_prev`, exactly as Supabase emits it. This implementation is node-local.
 *
 * A room's state is bounded (`Limits`: distinct keys and bytes of its `presence_state`), so the
 * state a joiner is sent always fits a socket's outbox; a track past a bound is refused with a
 * `PresenceLimitExceeded` and changes nothing. Presence keys are client strings: they are only
 * ever keys of `Map`s or of null-prototype records, so `__proto__` or `constructor` are keys like any other.
 */
import { Reply } from "@wedsync/protocol"
import { Context, Effect, Layer, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { Hub } from "./Hub.ts"
import * as Publication from "./Publication.ts"
import type { Sink } from "./Sink.ts"

type Meta = Readonly<Record<string, unknown>>
type Metas = Record<string, { metas: Array<Meta> }>

interface Entry {
  readonly key: string
  readonly ref: string
  readonly meta: Meta
  readonly metaJson: string
  /** What this entry adds to the room's `presence_state` (an upper bound, see `entryBytes`). */
  readonly bytes: number
}

interface Room {
  readonly entries: Map<object, Entry>
  /** Entries per presence key (several owners may share one key). */
  readonly keys: Map<string, number>
  bytes: number
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
  /** The `presence_state` payload as JSON text. */
  readonly state: (topic: string, isPrivate: boolean) => string
}

const newRef = (): string => randomBytes(12).toString("base64")

// Spreads define own properties; Object.assign would run the `__proto__` setter for a meta key of that name.
const metaWithRef = (entry: Entry, prev?: string): Meta => ({
  ...(prev === undefined ? { phx_ref: entry.ref } : { phx_ref: entry.ref, phx_ref_prev: prev }),
  ...entry.meta,
  ...{ phx_ref: entry.ref }
})

/** A null-prototype record, so that any client string is an ordinary own key. */
const record = (): Metas => Object.create(null) as Metas

const single = (key: string, meta: Meta): Metas => {
  const out = record()
  out[key] = { metas: [meta] }
  return out
}

const addEntry = (room: Room, owner: object, entry: Entry): void => {
  room.entries.set(owner, entry)
  room.keys.set(entry.key, (room.keys.get(entry.key) ?? 0) + 1)
  room.bytes += entry.bytes
}

const removeEntry = (room: Room, owner: object, entry: Entry): void => {
  room.entries.delete(owner)
  const count = room.keys.get(entry.key) ?? 0
  if (count <= 1) room.keys.delete(entry.key)
  else room.keys.set(entry.key, count - 1)
  room.bytes -= entry.bytes
}

export const make: Effect.Effect<PresenceShape, never, Hub> = Effect.gen(function*() {
  const hub = yield* Hub
  const rooms = new Map<Publication.TopicKey, Room>()

  const publishDiff = (topic: string, isPrivate: boolean, joins: Metas, leaves: Metas, except?: Sink) =>
    hub.publish(Publication.json(topic, isPrivate, Reply.PRESENCE_DIFF, JSON.stringify({ joins, leaves })), except)

  const track: PresenceShape["track"] = (topic, isPrivate, key, owner, meta, limits = unbounded) =>
    Effect.suspend(() => {
      const roomKey = Publication.topicKey(topic, isPrivate)
      const room = rooms.get(roomKey) ?? { entries: new Map(), keys: new Map(), bytes: 0 }
      const previous = room.entries.get(owner)
      const metaJson = JSON.stringify(meta)
      if (previous !== undefined && previous.key === key && previous.metaJson === metaJson) return Effect.void
      const entry: Entry = { key, ref: newRef(), meta, metaJson, bytes: entryBytes(key, metaJson) }
      const samekey = previous !== undefined && previous.key === key
      // A bound only refuses growth: an update that does not add a key or bytes always passes.
      const previousKeyGoes = previous !== undefined && room.keys.get(previous.key) === 1
      const keysAfter = room.keys.size - (previousKeyGoes ? 1 : 0) +
        (!room.keys.has(key) || (previousKeyGoes && samekey) ? 1 : 0)
      if (keysAfter > limits.maxKeys && keysAfter > room.keys.size) {
        return Effect.fail(new PresenceLimitExceeded({ limit: "keys", max: limits.maxKeys }))
      }
      const bytesAfter = room.bytes + entry.bytes - (previous?.bytes ?? 0)
      if (bytesAfter > limits.maxBytes && bytesAfter > room.bytes) {
        return Effect.fail(new PresenceLimitExceeded({ limit: "bytes", max: limits.maxBytes }))
      }
      if (room.entries.size === 0) rooms.set(roomKey, room)
      if (previous !== undefined) removeEntry(room, owner, previous)
      addEntry(room, owner, entry)
      const joins = single(key, metaWithRef(entry, samekey ? previous.ref : undefined))
      const leaves = previous === undefined ? record() : single(previous.key, metaWithRef(previous))
      return Effect.asVoid(publishDiff(topic, isPrivate, joins, leaves))
    })

  const untrack: PresenceShape["untrack"] = (topic, isPrivate, owner, except) =>
    Effect.suspend(() => {
      const roomKey = Publication.topicKey(topic, isPrivate)
      const room = rooms.get(roomKey)
      const previous = room?.entries.get(owner)
      if (room === undefined || previous === undefined) return Effect.void
      removeEntry(room, owner, previous)
      if (room.entries.size === 0) rooms.delete(roomKey)
      return Effect.asVoid(publishDiff(topic, isPrivate, record(), single(previous.key, metaWithRef(previous)), except))
    })

  const state: PresenceShape["state"] = (topic, isPrivate) => {
    const room = rooms.get(Publication.topicKey(topic, isPrivate))
    const out = record()
    if (room !== undefined) {
      for (const entry of room.entries.values()) (out[entry.key] ??= { metas: [] }).metas.push(metaWithRef(entry))
    }
    return JSON.stringify(out)
  }

  return { track, untrack, state }
})

export class Presence extends Context.Service<Presence, PresenceShape>()("@wedsync/hub/Presence") {
  static readonly layerMemory: Layer.Layer<Presence, never, Hub> = Layer.effect(Presence, make)
}

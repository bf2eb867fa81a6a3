/**
 * Presence: who is in a room, as Phoenix.Presence shows it to realtime-js.
 *
 * Each owner (one joined channel) holds at most one entry per room, under its presence key.
 * `track` and `untrack` publish a `presence_diff` through the hub to every member, including the
 * owner; a re-track with a changed payload is a leave of the old ref plus a join of a new ref
 * carrying `phx_ref_prev`, exactly as Supabase emits it. This implementation is node-local.
 */
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { Hub } from "./Hub.ts"
import * as Publication from "./Publication.ts"
import type { Sink } from "./Sink.ts"

type Meta = Readonly<Record<string, unknown>>

interface Entry {
  readonly key: string
  readonly ref: string
  readonly meta: Meta
  readonly metaJson: string
}

export interface PresenceShape {
  readonly track: (topic: string, isPrivate: boolean, key: string, owner: object, meta: Meta) => Effect.Effect<void>
  /**
   * Removes the owner's entry; a no-op when it has none. `except` keeps the diff from one sink: a
   * channel that is closing untracks itself and must not be sent its own leave after `phx_close`.
   */
  readonly untrack: (topic: string, isPrivate: boolean, owner: object, except?: Sink) => Effect.Effect<void>
  /** The `presence_state` payload as JSON text. */
  readonly state: (topic: string, isPrivate: boolean) => string
}

const newRef = (): string => randomBytes(12).toString("base64")

const metaWithRef = (entry: Entry, prev?: string): Meta =>
  Object.assign({ phx_ref: entry.ref }, prev === undefined ? {} : { phx_ref_prev: prev }, entry.meta, {
    phx_ref: entry.ref
  })

export const make: Effect.Effect<PresenceShape, never, Hub> = Effect.gen(function*() {
  const hub = yield* Hub
  const rooms = new Map<Publication.TopicKey, Map<object, Entry>>()

  const publishDiff = (topic: string, isPrivate: boolean, joins: object, leaves: object, except?: Sink) =>
    hub.publish(Publication.json(topic, isPrivate, "presence_diff", JSON.stringify({ joins, leaves })), except)

  const track: PresenceShape["track"] = (topic, isPrivate, key, owner, meta) =>
    Effect.suspend(() => {
      const roomKey = Publication.topicKey(topic, isPrivate)
      let room = rooms.get(roomKey)
      if (room === undefined) rooms.set(roomKey, (room = new Map()))
      const previous = room.get(owner)
      const metaJson = JSON.stringify(meta)
      if (previous !== undefined && previous.key === key && previous.metaJson === metaJson) return Effect.void
      const entry: Entry = { key, ref: newRef(), meta, metaJson }
      room.set(owner, entry)
      const samekey = previous !== undefined && previous.key === key
      const joins = { [key]: { metas: [metaWithRef(entry, samekey ? previous.ref : undefined)] } }
      const leaves = previous === undefined ? {} : { [previous.key]: { metas: [metaWithRef(previous)] } }
      return Effect.asVoid(publishDiff(topic, isPrivate, joins, leaves))
    })

  const untrack: PresenceShape["untrack"] = (topic, isPrivate, owner, except) =>
    Effect.suspend(() => {
      const roomKey = Publication.topicKey(topic, isPrivate)
      const room = rooms.get(roomKey)
      const previous = room?.get(owner)
      if (room === undefined || previous === undefined) return Effect.void
      room.delete(owner)
      if (room.size === 0) rooms.delete(roomKey)
      return Effect.asVoid(publishDiff(topic, isPrivate, {}, { [previous.key]: { metas: [metaWithRef(previous)] } }, except))
    })

  const state: PresenceShape["state"] = (topic, isPrivate) => {
    const room = rooms.get(Publication.topicKey(topic, isPrivate))
    const out: Record<string, { metas: Array<Meta> }> = {}
    if (room !== undefined) {
      for (const entry of room.values()) (out[entry.key] ??= { metas: [] }).metas.push(metaWithRef(entry))
    }
    return JSON.stringify(out)
  }

  return { track, untrack, state }
})

export class Presence extends Context.Service<Presence, PresenceShape>()("@wedsync/hub/Presence") {
  static readonly layerMemory: Layer.Layer<Presence, never, Hub> = Layer.effect(Presence, make)
}

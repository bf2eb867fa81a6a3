/**
 * A relay's presence over the upstream: how the clients of one gateway process are seen by the project and by the
 * other processes relaying to it, and theirs here.
 *
 * An upstream channel holds one presence entry (one channel, one presence key), while a topic may have hundreds of
 * local entries: so the relay tracks them as one entry, `{"wedsync_relay": <process id>, "entries": [[key, meta], …]}`,
 * sent again (at most every `PRESENCE_RELAY_MS`) when they change. Another relay unpacks it: its subscribers see each
 * entry under its own key, joins and leaves as the aggregate changes, and a relay that leaves (or whose channel is lost)
 * takes its entries with it. A relay skips its own aggregate, which the upstream sends back to every member. A client
 * connected straight to the project sees the aggregate as one entry under the relay channel's key.
 *
 * Everything here comes from strangers: keys are only keys of `Map`s and null-prototype records, an aggregate is read
 * only in its documented shape, and at most `MAX_RELAYED_ENTRIES` of one aggregate are taken.
 */
import type { PresenceEntries } from "./UpstreamPool.ts"

/** The field that marks a relay's aggregate entry. */
export const RELAY_FIELD = "wedsync_relay"
/** Entries of one relay's aggregate taken, at most. */
export const MAX_RELAYED_ENTRIES = 10_000
/** The shortest pause between two tracks of a topic's aggregate: a ramp of joins is sent as a few updates. */
export const PRESENCE_RELAY_MS = 50

type Meta = Readonly<Record<string, unknown>>
type Metas = Record<string, { metas: Array<Meta> }>

/** One presence entry: its key and its meta (with its `phx_ref`). */
interface Tracked {
  readonly key: string
  readonly meta: Meta
}

/** Another relay's aggregate: the ref of its current meta upstream and the entries it holds, by ref. */
interface Relay {
  readonly ref: string
  readonly entries: Map<string, Tracked>
}

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const record = (): Metas => Object.create(null)

const add = (out: Metas, key: string, meta: Meta) => (out[key] ??= { metas: [] }).metas.push(meta)

const isEmpty = (metas: Metas) => {
  for (const _ in metas) return false
  return true
}

/** Each meta of one side of a diff (`{key: {metas}}`) with a string `phx_ref`. */
const eachMeta = (side: unknown, f: (key: string, meta: Meta, ref: string) => void) => {
  if (!isRecord(side)) return
  for (const key of Object.keys(side)) {
    const group = side[key]
    const metas = isRecord(group) ? group["metas"] : undefined
    if (!Array.isArray(metas)) continue
    for (const meta of metas) {
      if (isRecord(meta) && typeof meta["phx_ref"] === "string") f(key, meta, meta["phx_ref"])
    }
  }
}

/** The entries of an aggregate meta, by ref; undefined when the meta is not an aggregate. */
const entriesOf = (meta: Meta): Map<string, Tracked> | undefined => {
  const list = meta["entries"]
  if (typeof meta[RELAY_FIELD] !== "string" || !Array.isArray(list)) return undefined
  const entries = new Map<string, Tracked>()
  for (const item of list) {
    if (entries.size >= MAX_RELAYED_ENTRIES) break
    if (!Array.isArray(item) || typeof item[0] !== "string" || !isRecord(item[1])) continue
    const ref = item[1]["phx_ref"]
    if (typeof ref === "string") entries.set(ref, { key: item[0], meta: item[1] })
  }
  return entries
}

/** One held topic's presence as the relay sees it. */
export class TopicPresence {
  /** This process's entries of the topic, by ref, as its presence diffs said. */
  readonly local = new Map<string, Tracked>()
  /** Other relays' aggregates, by their upstream presence key. */
  private readonly relays = new Map<string, Relay>()

  /** Applies one of this process's `presence_diff` payloads (JSON); true when its entries changed. */
  applyLocal(json: string): boolean {
    let diff: unknown
    try {
      diff = JSON.parse(json)
    } catch {
      return false
    }
    if (!isRecord(diff)) return false
    let changed = false
    eachMeta(diff["leaves"], (_key, _meta, ref) => {
      changed = this.local.delete(ref) || changed
    })
    eachMeta(diff["joins"], (key, meta, ref) => {
      const { phx_ref_prev: _prev, ...kept } = meta
      this.local.set(ref, { key, meta: kept })
      changed = true
    })
    return changed
  }

  /** The aggregate to track upstream for this process's entries; undefined when it has none. */
  aggregate(nodeId: string): Record<string, unknown> | undefined {
    if (this.local.size === 0) return undefined
    const entries: Array<readonly [string, Meta]> = []
    for (const tracked of this.local.values()) entries.push([tracked.key, tracked.meta])
    return { [RELAY_FIELD]: nodeId, entries }
  }

  /**
   * A diff of the upstream channel's presence (realtime-js reports joins and leaves apart) as the diff local
   * subscribers get: plain entries as they are, other relays' aggregates as the entries that joined or left them, this
   * process's own aggregate not at all. Undefined when nothing is left to tell.
   */
  applyUpstream(
    nodeId: string,
    joins: PresenceEntries,
    leaves: PresenceEntries
  ): { readonly joins: Metas; readonly leaves: Metas } | undefined {
    const outJoins = record()
    const outLeaves = record()
    eachMeta(joins, (key, meta, ref) => {
      const entries = entriesOf(meta)
      if (entries === undefined) return add(outJoins, key, meta)
      if (meta[RELAY_FIELD] === nodeId) return
      const previous = this.relays.get(key)?.entries
      for (const [entryRef, tracked] of entries) {
        if (previous?.has(entryRef) !== true) add(outJoins, tracked.key, tracked.meta)
      }
      if (previous !== undefined) {
        for (const [entryRef, tracked] of previous) {
          if (!entries.has(entryRef)) add(outLeaves, tracked.key, tracked.meta)
        }
      }
      this.relays.set(key, { ref, entries })
    })
    eachMeta(leaves, (key, meta, ref) => {
      if (typeof meta[RELAY_FIELD] !== "string") return add(outLeaves, key, meta)
      const relay = this.relays.get(key)
      // A leave of an older meta of the relay (replaced by the join just applied) changes nothing.
      if (relay === undefined || relay.ref !== ref) return
      this.relays.delete(key)
      for (const tracked of relay.entries.values()) add(outLeaves, tracked.key, tracked.meta)
    })
    if (isEmpty(outJoins) && isEmpty(outLeaves)) return undefined
    return { joins: outJoins, leaves: outLeaves }
  }

  /** The upstream channel's presence as local subscribers see it: aggregates unpacked, this process's left out. */
  state(upstream: PresenceEntries): PresenceEntries {
    const out = record()
    eachMeta(upstream, (key, meta) => {
      if (typeof meta[RELAY_FIELD] !== "string") add(out, key, meta)
    })
    for (const relay of this.relays.values()) {
      for (const tracked of relay.entries.values()) add(out, tracked.key, tracked.meta)
    }
    return out
  }
}

/**
 * Connected devices per wedding and per supplier on this process: a socket with a joined private
 * `wedding:<id>` channel is one device of that wedding, and the same for `supplier:<id>`. Counts only: no user,
 * token or address is kept. A public channel, or a private one on any other topic, is not counted.
 *
 * Contract:
 * - `opened` is called when a channel is made (`Join.open`), `ended` when it is released (`Channel.release`),
 *   which every way a channel ends goes through: a leave, a rejoin (the old channel), a shutdown, the socket
 *   closing and the drain. `ended` of a channel that was never counted, or counted down already, does nothing, so a
 *   count can never go below the channels that hold it.
 * - A socket holds at most one channel per topic, and a scope's id is the whole rest of the subtopic, so one socket
 *   is at most one device of a given wedding or supplier.
 * - Ids come from clients, but only authorized ones get here: `ChannelPolicy` admits a private `wedding:<id>` only for
 *   an id the token (or a membership) grants, or for `service_role`. Every tracked id is held by at least one joined
 *   channel and is dropped when its count reaches 0, so the entries are bounded by the joined channels
 *   (`MAX_CONNECTIONS` x `MAX_CHANNELS_PER_CONNECTION`), not by what clients send.
 *
 * Cost: one `Set` slot per counted channel and one `Map` entry per scope with devices; nothing per public channel.
 * Publication to Redis and the cluster-wide view live in the gateway (`DevicePublisher`).
 */
import { HotMetric } from "@wedsync/metrics"
import { Context, Effect, Layer, Metric } from "effect"

/** The scopes devices are counted in: `wedding:<id>` and `supplier:<id>` private channels. */
export const kinds = ["wedding", "supplier"] as const

export type Kind = (typeof kinds)[number]

/** What `DeviceCounts` reads of a channel; the object itself is the identity of the counted device. */
export interface Scoped {
  readonly subtopic: string
  readonly isPrivate: boolean
}

/** This process's counts at one moment: devices per id, per kind. */
export interface Snapshot {
  readonly wedding: ReadonlyMap<string, number>
  readonly supplier: ReadonlyMap<string, number>
}

export interface DeviceCountsShape {
  /** Counts the channel's socket as a device of the channel's scope, when it has one. */
  readonly opened: (channel: Scoped) => void
  /** Counts it down again; a no-op for a channel that is not counted. */
  readonly ended: (channel: Scoped) => void
  /** Devices of one wedding or supplier on this process. */
  readonly count: (kind: Kind, id: string) => number
  /** Devices of every scope of one kind on this process. */
  readonly total: (kind: Kind) => number
  /** A copy of every count (for publication and the admin endpoint). */
  readonly snapshot: () => Snapshot
}

export const devices = Metric.gauge("wedsync_devices_scoped", {
  description: "Devices (sockets) with a joined private wedding or supplier channel on this node, by scope kind"
})

export const scopes = Metric.gauge("wedsync_devices_scopes", {
  description: "Weddings or suppliers with at least one device on this node, by scope kind"
})

const PREFIXES: ReadonlyArray<readonly [Kind, string]> = [["wedding", "wedding:"], ["supplier", "supplier:"]]

/** The scope of a private channel, or undefined when it has none (an empty id has none either). */
export const scopeOf = (channel: Scoped): readonly [Kind, string] | undefined => {
  if (!channel.isPrivate) return undefined
  for (const [kind, prefix] of PREFIXES) {
    if (channel.subtopic.length > prefix.length && channel.subtopic.startsWith(prefix)) {
      return [kind, channel.subtopic.slice(prefix.length)]
    }
  }
  return undefined
}

interface PerKind {
  readonly counts: Map<string, number>
  total: number
  readonly devices: HotMetric.HotGauge
  readonly scopes: HotMetric.HotGauge
}

/** Builds an empty counter; its gauges are registered (at 0) in the current metric registry. */
export const make: Effect.Effect<DeviceCountsShape> = Effect.map(Effect.context<never>(), (context) => {
  const perKind = (kind: Kind): PerKind => ({
    counts: new Map(),
    total: 0,
    devices: HotMetric.gaugeUnsafe(Metric.withAttributes(devices, { kind }), context),
    scopes: HotMetric.gaugeUnsafe(Metric.withAttributes(scopes, { kind }), context)
  })
  const byKind: Record<Kind, PerKind> = { wedding: perKind("wedding"), supplier: perKind("supplier") }
  const counted = new Set<Scoped>()

  const bump = (channel: Scoped, delta: 1 | -1) => {
    const scope = scopeOf(channel)
    if (scope === undefined) return false
    const state = byKind[scope[0]]
    const id = scope[1]
    const next = (state.counts.get(id) ?? 0) + delta
    if (next <= 0) {
      state.counts.delete(id)
      state.scopes.set(state.counts.size)
    } else {
      const isNew = !state.counts.has(id)
      state.counts.set(id, next)
      if (isNew) state.scopes.set(state.counts.size)
    }
    state.total += delta
    state.devices.add(delta)
    return true
  }

  return {
    opened: (channel) => {
      if (!counted.has(channel) && bump(channel, 1)) counted.add(channel)
    },
    ended: (channel) => {
      if (counted.delete(channel)) bump(channel, -1)
    },
    count: (kind, id) => byKind[kind].counts.get(id) ?? 0,
    total: (kind) => byKind[kind].total,
    snapshot: () => ({ wedding: new Map(byKind.wedding.counts), supplier: new Map(byKind.supplier.counts) })
  } satisfies DeviceCountsShape
})

export class DeviceCounts extends Context.Service<DeviceCounts, DeviceCountsShape>()(
  "@wedsync/connection/DeviceCounts"
) {
  /** A fresh, empty counter per build: one per gateway process (or per gateway of a test). */
  static readonly layer: Layer.Layer<DeviceCounts> = Layer.effect(DeviceCounts, make)
}

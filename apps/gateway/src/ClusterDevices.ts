/**
 * Device counts across the cluster, through Redis (only with `REDIS_URL`).
 *
 * Every `DEVICES_PUBLISH_MS` this process writes its `DeviceCounts` snapshot under a key of its own that expires after
 * three intervals, so the numbers of a process that died or lost Redis vanish by themselves; a clean stop deletes
 * them at once. The process also adds its id to a set of publishers. A reader takes the set, reads every publisher's
 * key in one `MGET`, drops from the set those whose key expired, and sums them, with its own live counts in place of
 * its last publication. Numbers of other processes are therefore up to one interval old.
 *
 * Keys (after `REDIS_PREFIX`): `devices:{devices}:processes` (a set of process ids) and
 * `devices:{devices}:process:<id>` (JSON). They share one hash tag, so the write (`MULTI`) and the read (`MGET`) stay
 * on one Redis Cluster slot; the traffic is one small write per process per interval. Values hold counts only:
 * wedding and supplier ids with their number of devices, never a user, token or address.
 */
import { DeviceCounts } from "@wedsync/connection"
import { RedisClient, RedisError, RedisKey } from "@wedsync/redis"
import { Clock, Context, Effect, Layer, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"

type Kind = DeviceCounts.Kind

/** One publication: this process's counts as `[id, devices]` pairs. */
interface Publication {
  readonly process: string
  readonly at: number
  readonly wedding: ReadonlyArray<readonly [string, number]>
  readonly supplier: ReadonlyArray<readonly [string, number]>
}

export interface ScopeCount {
  readonly id: string
  readonly devices: number
}

/** Cluster-wide (or, without Redis, this process's) counts. */
export interface Summary {
  /** `cluster`: every live process summed; `process`: this process only (no Redis, or Redis failed: `error`). */
  readonly scope: "cluster" | "process"
  /** Processes whose numbers are included. */
  readonly processes: number
  readonly totals: Record<Kind, number>
  /** Distinct weddings and suppliers with at least one device. */
  readonly scopes: Record<Kind, number>
  /** The `top` scopes of each kind with the most devices (ties by id). */
  readonly top: Record<Kind, ReadonlyArray<ScopeCount>>
  readonly counts: Record<Kind, ReadonlyMap<string, number>>
  readonly error?: string
}

/** Devices per id, per kind, summed over `processes` live processes. */
export interface Totals {
  readonly processes: number
  readonly counts: Record<Kind, Map<string, number>>
}

export interface ClusterDevicesShape {
  /** This process's id in Redis (host, pid and a random suffix). */
  readonly processId: string
  /** Writes this process's counts now (the loop calls it every interval). */
  readonly publish: Effect.Effect<void, RedisError.RedisError>
  /** Every live process's counts summed, this process's own taken live. */
  readonly read: Effect.Effect<Totals, RedisError.RedisError>
}

const NAMESPACE = "devices"
const TAG = "devices"
export const processesKey = RedisKey.tagged(NAMESPACE, TAG, "processes")
export const processKey = (id: string) => RedisKey.tagged(NAMESPACE, TAG, "process", id)

const kinds = DeviceCounts.kinds

const addInto = (into: Map<string, number>, id: unknown, devices: unknown) => {
  if (typeof id !== "string" || typeof devices !== "number" || !Number.isFinite(devices) || devices <= 0) return
  into.set(id, (into.get(id) ?? 0) + devices)
}

/** Adds a stored publication into `totals`; a value that is not one (another writer, a torn value) is skipped. */
const addPublication = (totals: Record<Kind, Map<string, number>>, raw: string): boolean => {
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    return false
  }
  if (typeof parsed !== "object" || parsed === null) return false
  for (const kind of kinds) {
    const pairs = (parsed as Record<string, unknown>)[kind]
    if (!Array.isArray(pairs)) continue
    const into = totals[kind]
    for (const pair of pairs) if (Array.isArray(pair)) addInto(into, pair[0], pair[1])
  }
  return true
}

export interface Options {
  /** How often this process publishes its counts; the key lives three times as long. */
  readonly publishIntervalMs: number
}

export const make = (options: Options) =>
  Effect.gen(function*() {
    const redis = yield* RedisClient.RedisClient
    const counts = yield* DeviceCounts.DeviceCounts
    const processId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`
    const ownKey = processKey(processId)
    const ttlMs = options.publishIntervalMs * 3

    const publish = Effect.gen(function*() {
      const snapshot = counts.snapshot()
      const value: Publication = {
        process: processId,
        at: yield* Clock.currentTimeMillis,
        wedding: [...snapshot.wedding],
        supplier: [...snapshot.supplier]
      }
      const text = JSON.stringify(value)
      const replies = yield* redis.command("MULTI", (r) =>
        r.multi()
          .set(redis.key(ownKey), text, "PX", ttlMs)
          .sadd(redis.key(processesKey), processId)
          // The set outlives no publisher: with every process gone it expires too.
          .pexpire(redis.key(processesKey), ttlMs)
          .exec())
      const failed = replies?.find(([error]) => error !== null)?.[0]
      if (replies === null || failed !== undefined) {
        return yield* RedisError.commandFailed("MULTI", failed ?? "transaction aborted")
      }
    })

    const read = Effect.gen(function*() {
      const members = yield* redis.command("SMEMBERS", (r) => r.smembers(redis.key(processesKey)))
      const others = members.filter((id) => id !== processId)
      const values = yield* redis.mget(others.map(processKey))
      const totals: Record<Kind, Map<string, number>> = { wedding: new Map(), supplier: new Map() }
      let processes = 1
      const gone: Array<string> = []
      values.forEach((value, i) => {
        if (value._tag === "None") gone.push(others[i]!)
        else if (addPublication(totals, value.value)) processes++
      })
      const own = counts.snapshot()
      for (const kind of kinds) for (const [id, n] of own[kind]) addInto(totals[kind], id, n)
      // Expired publishers leave the set here; a process that comes back adds itself again with its next write.
      if (gone.length > 0) {
        yield* Effect.ignore(redis.command("SREM", (r) => r.srem(redis.key(processesKey), ...gone)))
      }
      return { processes, counts: totals } satisfies Totals
    })

    const cleanup = Effect.ignore(
      redis.command("DEL", (r) => r.multi().del(redis.key(ownKey)).srem(redis.key(processesKey), processId).exec())
    )

    // Added before the loop is forked, so it runs after the loop was interrupted: no write can follow the delete.
    yield* Effect.addFinalizer(() => cleanup)
    // A failed write is retried at the next tick; the key of the last good one keeps the numbers until it expires.
    yield* Effect.forkScoped(
      publish.pipe(
        Effect.catch((error) => Effect.logWarning(`device counts not published: ${error.message}`)),
        Effect.repeat(Schedule.spaced(options.publishIntervalMs))
      )
    )

    return { processId, publish, read } satisfies ClusterDevicesShape
  })

export class ClusterDevices extends Context.Service<ClusterDevices, ClusterDevicesShape>()(
  "@wedsync/gateway/ClusterDevices"
) {
  /** Publishes while the layer lives; its key is deleted when it closes. */
  static readonly layer = (options: Options) => Layer.effect(ClusterDevices, make(options))
}

const topOf = (counts: ReadonlyMap<string, number>, n: number): Array<ScopeCount> =>
  [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, n)
    .map(([id, devices]) => ({ id, devices }))

const summaryOf = (
  scope: Summary["scope"],
  processes: number,
  counts: Record<Kind, ReadonlyMap<string, number>>,
  top: number
): Summary => {
  const totals = { wedding: 0, supplier: 0 }
  for (const kind of kinds) for (const n of counts[kind].values()) totals[kind] += n
  return {
    scope,
    processes,
    totals,
    scopes: { wedding: counts.wedding.size, supplier: counts.supplier.size },
    top: { wedding: topOf(counts.wedding, top), supplier: topOf(counts.supplier, top) },
    counts
  }
}

/**
 * The counts `/admin/devices` answers: cluster-wide with `ClusterDevices` (Redis), this process's without it, or when
 * the Redis read fails (then `error` says why).
 */
export const summary = (top: number): Effect.Effect<Summary, never, DeviceCounts.DeviceCounts> =>
  Effect.gen(function*() {
    const counts = yield* DeviceCounts.DeviceCounts
    const local = () => {
      const own = counts.snapshot()
      return summaryOf("process", 1, { wedding: own.wedding, supplier: own.supplier }, top)
    }
    const cluster = yield* Effect.serviceOption(ClusterDevices)
    if (cluster._tag === "None") return local()
    return yield* cluster.value.read.pipe(
      Effect.map((totals) => summaryOf("cluster", totals.processes, totals.counts, top)),
      Effect.catch((error) => Effect.succeed({ ...local(), error: error.message }))
    )
  })

/**
 * Per-topic broadcast history for Supabase's `replay`: the user broadcasts of private topics, each with a
 * time-ordered id (UUIDv7, made by the publisher), kept at most `maxMessages` per topic and at most `ttl` long.
 *
 * `publish` is the one way a private user broadcast enters the system: it gives the broadcast its id, appends it
 * to the topic's history and only then hands it to the hub. With the hub's broker on Redis that order is what
 * makes a resume gap-free: the history write reaches Redis before the broker's `SPUBLISH` (both on the command
 * connection), so a reader that subscribed to the topic first and read the history second sees every message in
 * one or the other (or both: the reader drops the live copy of a replayed id).
 *
 * `read` answers the most recent `limit` entries whose id time is at or after `since`, oldest first, and says when
 * that is not everything the client asked for (older than the TTL, dropped by the per-topic bound, or more than
 * `limit` matched): a replay is never silently partial.
 */
import { RedisClient, RedisKey } from "@wedsync/redis"
import { Clock, Config, Context, Duration, Effect, Layer, Metric, Schedule, Schema, type Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { HubShape } from "./Hub.ts"
import * as HubMetrics from "./HubMetrics.ts"
import * as Publication from "./Publication.ts"
import { keyOf, type TopicKey } from "./Publication.ts"
import type { Sink } from "./Sink.ts"
import * as PublicationWire from "./PublicationWire.ts"

export interface HistoryOptions {
  /** Entries kept per topic (`HISTORY_MAX_MESSAGES`); the oldest is dropped first. */
  readonly maxMessages: number
  /** How long an entry is kept (`HISTORY_TTL`). */
  readonly ttl: Duration.Duration
}

export const defaults: HistoryOptions = { maxMessages: 1000, ttl: Duration.hours(1) }

/** `HISTORY_MAX_MESSAGES` and `HISTORY_TTL`; the gateway checks their ranges before it reads them. */
export const config: Config.Config<HistoryOptions> = Config.all({
  maxMessages: Config.Int("HISTORY_MAX_MESSAGES").pipe(Config.withDefault(defaults.maxMessages)),
  ttl: Config.Duration("HISTORY_TTL").pipe(Config.withDefault(defaults.ttl))
})

/** One kept broadcast: its id and the publication as published, without the id's meta. */
export interface Entry {
  readonly id: string
  readonly publication: Publication.Publication
}

/** Why a replay does not hold everything the client asked for. */
export type Gap =
  /** `since` is older than the TTL: entries may have expired. */
  | { readonly _tag: "Expired"; readonly ttlMs: number }
  /** An entry at or after `since` was dropped by the per-topic bound. */
  | { readonly _tag: "Trimmed"; readonly maxMessages: number }
  /**
   * `since` is before the history began (`at`, ms): this process started (memory), or Redis lost its data and the
   * history started again.
   */
  | { readonly _tag: "Restarted"; readonly at: number }
  /** More than `limit` entries matched; only the most recent `limit` were replayed. */
  | { readonly _tag: "OverLimit"; readonly limit: number }
  /** The `left` oldest entries read were not sent: with them the replay would exceed `budget` bytes. */
  | { readonly _tag: "TooLarge"; readonly left: number; readonly budget: number }

export interface Replay {
  /** Oldest first. */
  readonly entries: ReadonlyArray<Entry>
  /**
   * Ids of entries that matched but are older than the `limit` returned, oldest first, as far as the read fetched them
   * (at least the newest few beyond `entries`): a replaying channel drops their held live copies, which would otherwise
   * arrive after newer replayed entries.
   */
  readonly older: ReadonlyArray<string>
  readonly gap: Gap | undefined
}

export class HistoryError extends Schema.TaggedError<HistoryError>()("HistoryError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

export interface HistoryShape {
  /** Appends to the topic's history. Never fails: a broadcast whose history write failed is still delivered live. */
  readonly append: (entry: Entry) => Effect.Effect<void>
  readonly read: (key: TopicKey, since: number, limit: number) => Effect.Effect<Replay, HistoryError>
}

// ---------------------------------------------------------------------------------------------------------------
// Ids and meta

/** A UUIDv7: 48 bits of milliseconds, then random bits; ids of later milliseconds sort after earlier ones. */
export const makeId = (ms: number): string => {
  const bytes = randomBytes(16)
  bytes.writeUIntBE(Math.max(0, Math.floor(ms)) % 2 ** 48, 0, 6)
  bytes[6] = 0x70 | (bytes[6]! & 0x0f)
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const hex = bytes.toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The milliseconds of a UUIDv7 id; NaN for anything else. */
export const timeOf = (id: string): number =>
  UUID.test(id) ? parseInt(id.slice(0, 8) + id.slice(9, 13), 16) : Number.NaN

/** Meta of a live broadcast with an id. */
export const liveMeta = (id: string): string => `{"id":"${id}"}`
/** Meta of a replayed broadcast. */
export const replayedMeta = (id: string): string => `{"replayed":true,"id":"${id}"}`

/**
 * The publication with `meta` set: a user broadcast's meta replaced (a client's own meta cannot pose as an id or
 * as replayed), a JSON broadcast's object given a last `meta` key (the last of duplicate keys wins in JSON.parse).
 */
export const withMeta = (publication: Publication.Publication, meta: string): Publication.Publication => {
  const body = publication.body
  if (body._tag === "UserBroadcast") return { ...publication, body: { ...body, meta } }
  const json = body.json
  if (!json.endsWith("}")) return publication
  const open = json.slice(0, -1).trimEnd()
  const next = open.endsWith("{") ? `${open}"meta":${meta}}` : `${open},"meta":${meta}}`
  return { ...publication, body: { _tag: "Json", json: next } }
}

const ID_AT_END = /"id":"([0-9a-f-]{36})"\}\}?$/

/** The id `withMeta(…, liveMeta(id))` gave a publication; undefined for one without. */
export const idOf = (publication: Publication.Publication): string | undefined => {
  const body = publication.body
  const text = body._tag === "Json" ? body.json : body.meta
  return text === undefined ? undefined : ID_AT_END.exec(text)?.[1]
}

/**
 * Publishes through the hub. A broadcast on a private topic first gets an id (its meta becomes `{"id":"…"}`) and is
 * appended to the topic's history; other publications go straight to the hub.
 */
export const publish = (
  hub: HubShape,
  history: HistoryShape,
  publication: Publication.Publication,
  except?: Sink
): Effect.Effect<number> => {
  if (!publication.isPrivate || publication.event !== "broadcast") return hub.publish(publication, except)
  return Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const id = makeId(now)
    return Effect.andThen(history.append({ id, publication }), hub.publish(withMeta(publication, liveMeta(id)), except))
  })
}

/** The gap of a read: expiry first (it covers the others), then a restart, then trimming, then the limit. */
const gapOf = (
  options: { readonly ttlMs: number; readonly maxMessages: number },
  now: number,
  since: number,
  startedAt: number,
  trimmedThrough: number | undefined,
  matched: number,
  limit: number
): Gap | undefined => {
  if (since < now - options.ttlMs) return { _tag: "Expired", ttlMs: options.ttlMs }
  if (since < startedAt) return { _tag: "Restarted", at: startedAt }
  if (trimmedThrough !== undefined && trimmedThrough >= since)
    return { _tag: "Trimmed", maxMessages: options.maxMessages }
  if (matched > limit) return { _tag: "OverLimit", limit }
  return undefined
}

/** The text of the `system` message that reports a gap. */
export const gapMessage = (gap: Gap): string => {
  switch (gap._tag) {
    case "Expired":
      return `Replay is incomplete: messages are kept for ${
        Math.round(gap.ttlMs / 1000)
      } seconds and since is older than that`
    case "Restarted":
      return `Replay is incomplete: the history was started afresh at ${
        new Date(gap.at).toISOString()
      } and holds nothing older`
    case "Trimmed":
      return `Replay is incomplete: at most ${gap.maxMessages} messages are kept per topic and older ones were dropped`
    case "OverLimit":
      return `Replay is incomplete: more than ${gap.limit} messages matched; only the last ${gap.limit} were replayed`
    case "TooLarge":
      return `Replay is incomplete: the ${gap.left} oldest messages were left out to keep the replay within ${gap.budget} bytes`
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Memory

interface Kept extends Entry {
  readonly time: number
}

interface Ring {
  entries: Array<Kept>
  /** Time of the newest entry dropped by the bound; undefined when none was. */
  trimmedThrough: number | undefined
}

const makeMemory = (options: HistoryOptions): Effect.Effect<HistoryShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ttlMs = Duration.toMillis(options.ttl)
    const topics = new Map<TopicKey, Ring>()
    const startedAt = yield* Clock.currentTimeMillis

    const expire = (ring: Ring, now: number) => {
      let n = 0
      while (n < ring.entries.length && ring.entries[n]!.time < now - ttlMs) n++
      if (n > 0) ring.entries.splice(0, n)
    }

    // Topics whose entries all expired are dropped, so memory follows the traffic of the last TTL only.
    const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        for (const [key, ring] of topics) {
          expire(ring, now)
          if (ring.entries.length === 0) topics.delete(key)
        }
      }))
    yield* sweep.pipe(
      Effect.repeat(Schedule.spaced(Duration.min(options.ttl, Duration.minutes(1)))),
      Effect.forkScoped
    )

    return {
      append: (entry) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            const key = keyOf(entry.publication)
            let ring = topics.get(key)
            if (ring === undefined) topics.set(key, ring = { entries: [], trimmedThrough: undefined })
            expire(ring, now)
            ring.entries.push({ ...entry, time: timeOf(entry.id) })
            while (ring.entries.length > options.maxMessages) {
              const dropped = ring.entries.shift()!
              ring.trimmedThrough = Math.max(ring.trimmedThrough ?? dropped.time, dropped.time)
            }
          })),
      read: (key, since, limit) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            const ring = topics.get(key)
            const matching = ring === undefined
              ? []
              : ring.entries.filter((e) => e.time >= since && e.time >= now - ttlMs)
            const entries = matching.slice(-limit).map(({ id, publication }) => ({ id, publication }))
            const older = matching.slice(0, Math.max(0, matching.length - limit)).map((e) => e.id)
            const gap = gapOf(
              { ttlMs, maxMessages: options.maxMessages },
              now,
              since,
              startedAt,
              ring?.trimmedThrough,
              matching.length,
              limit
            )
            return { entries, older, gap }
          }))
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// Redis

/**
 * The stream of a topic. Its hash tag is the topic key, as in the broker's shard channel (`Broker.channelOf`), so on
 * Redis Cluster the history and the live channel of a topic live on one node.
 */
export const streamOf = (key: TopicKey): RedisKey.RedisKey => RedisKey.tagged("history", key.toWellFormed())

/** The time of the newest entry the bound dropped from the topic's stream (same slot as the stream). */
export const trimmedOf = (key: TopicKey): RedisKey.RedisKey => RedisKey.tagged("history", key.toWellFormed(), "trimmed")

/** When the history of this Redis began (ms); one key for every topic. */
export const EPOCH: RedisKey.RedisKey = RedisKey.make("history", "epoch")

/**
 * KEYS: stream, trimmed. ARGV: id, publication bytes, max entries, ttl ms. Before the append makes the stream
 * longer than the bound, the entries to drop are read so the newest dropped time is kept exactly (MAXLEN alone
 * would not say what it removed). Both keys expire `ttl` after the last append.
 */
const APPEND_SCRIPT = `
local max = tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[1])
if len >= max then
  local dropped = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - max + 1)
  local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
  for _, entry in ipairs(dropped) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'i' then
        local id = fields[i + 1]
        local t = tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)
        if t ~= nil and t > newest then newest = t end
      end
    end
  end
  redis.call('SET', KEYS[2], tostring(newest), 'PX', ARGV[4])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', max - 1)
end
redis.call('XADD', KEYS[1], '*', 'i', ARGV[1], 'p', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('PTTL', KEYS[2]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
`
const APPEND_SHA = createHash("sha1").update(APPEND_SCRIPT).digest("hex")

/**
 * How far a publisher's clock may run ahead of Redis's: a read starts this much before `since` in stream (Redis)
 * time and filters by id (publisher) time, so an entry is found even when the two clocks differ by up to this.
 */
export const CLOCK_SKEW_MS = 10_000

/** Entries read per XREVRANGE beyond what the limit needs. */
const PAGE_SLACK = 16

const NO_ORIGIN = new Uint8Array(PublicationWire.ORIGIN_BYTES)

type RawEntry = [id: Buffer, fields: Array<Buffer>]

const decodeEntry = (raw: RawEntry): Entry | undefined => {
  const fields = raw[1]
  let id: string | undefined
  let bytes: Buffer | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString()
    if (name === "i") id = fields[i + 1]!.toString()
    else if (name === "p") bytes = fields[i + 1]
  }
  if (id === undefined || bytes === undefined) return undefined
  const decoded = PublicationWire.decode(bytes)
  return decoded === undefined ? undefined : { id, publication: decoded.publication }
}

const makeRedis = (options: HistoryOptions): Effect.Effect<HistoryShape, never, RedisClient.RedisClient> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const ttlMs = Math.max(1, Math.round(Duration.toMillis(options.ttl)))
    // When this Redis's history began: set by the first process that uses it, and again by the first append or read
    // that finds it missing, so after a Redis that lost its data a replay from before that is reported instead of
    // silently coming back short.
    const epoch = client.key(EPOCH)
    const startedAt = yield* Clock.currentTimeMillis
    yield* client.command("SET", (redis) => redis.set(epoch, String(startedAt), "NX")).pipe(
      Effect.catch((error) => Effect.logWarning("History: marking when the history began failed", error.message))
    )

    const append = (entry: Entry) => {
      const key = keyOf(entry.publication)
      const stream = client.key(streamOf(key))
      const trimmed = client.key(trimmedOf(key))
      const args = [entry.id, PublicationWire.encode(NO_ORIGIN, entry.publication), options.maxMessages, ttlMs] as const
      return client.command(
        "EVALSHA",
        (redis) =>
          Promise.all([
            // Back to back on one connection: no extra round trip.
            redis.set(epoch, String(timeOf(entry.id)), "NX"),
            redis.evalsha(APPEND_SHA, 2, stream, trimmed, ...args).catch((error: unknown) => {
              // The script is sent once per Redis (re)start, then run by its hash.
              if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
                return redis.eval(APPEND_SCRIPT, 2, stream, trimmed, ...args)
              }
              throw error
            })
          ])
      ).pipe(
        Effect.asVoid,
        Effect.catch((error) =>
          Effect.andThen(
            Metric.update(HubMetrics.historyAppendFailures, 1),
            Effect.logWarning(`History: append to ${key} failed`, error.message)
          )
        )
      )
    }

    const read = (key: TopicKey, since: number, limit: number) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const stream = client.key(streamOf(key))
        const floor = Math.max(since, now - ttlMs)
        const lowest = String(Math.max(0, floor - CLOCK_SKEW_MS))
        const count = limit + 1 + PAGE_SLACK
        // The markers and the first page in one round trip: a reconnect storm sends thousands of reads at once.
        const [started, trimmedThrough, firstPage] = yield* client.command("XREVRANGE", (redis) =>
          Promise.all([
            redis.set(epoch, String(now), "NX", "GET"),
            redis.get(client.key(trimmedOf(key))),
            redis.xrevrangeBuffer(stream, "+", lowest, "COUNT", count)
          ]))
        // Newest first, page by page, until one more than `limit` matched or the stream is past `since`.
        const newestFirst: Array<Entry> = []
        let upper = "+"
        for (let pageNumber = 0;; pageNumber++) {
          const page: Array<RawEntry> = pageNumber === 0 ? firstPage : yield* client.command(
            "XREVRANGE",
            (redis) => redis.xrevrangeBuffer(stream, upper, lowest, "COUNT", count)
          )
          for (const raw of page) {
            const entry = decodeEntry(raw)
            if (entry !== undefined && timeOf(entry.id) >= floor) newestFirst.push(entry)
          }
          if (page.length < count || newestFirst.length > limit) break
          upper = `(${page[page.length - 1]![0].toString()}`
        }
        const gap = gapOf(
          { ttlMs, maxMessages: options.maxMessages },
          now,
          since,
          started === null ? now : Number(started),
          trimmedThrough === null ? undefined : Number(trimmedThrough),
          newestFirst.length,
          limit
        )
        return {
          entries: newestFirst.slice(0, limit).reverse(),
          older: newestFirst.slice(limit).reverse().map((e) => e.id),
          gap
        }
      }).pipe(
        Effect.mapError((error) =>
          new HistoryError({ message: `reading the history of ${key} failed: ${error.message}`, cause: error })
        )
      )

    return { append, read }
  })

export class History extends Context.Service<History, HistoryShape>()("@wedsync/hub/History") {
  /** A bounded ring per topic in this process; expired topics are swept. */
  static readonly layerMemory = (options: Partial<HistoryOptions> = {}): Layer.Layer<History> =>
    Layer.effect(History, makeMemory({ ...defaults, ...options }))

  /**
   * A Redis stream per topic (`XADD` with exact trimming to `maxMessages`, `PEXPIRE` of `ttl` after each append,
   * entries past the TTL filtered at read). Shared by every process on the Redis.
   */
  static readonly layerRedis = (
    options: Partial<HistoryOptions> = {}
  ): Layer.Layer<History, never, RedisClient.RedisClient> =>
    Layer.effect(History, makeRedis({ ...defaults, ...options }))
}

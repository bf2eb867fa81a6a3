/**
 * The shared (L2) store of the layered cache: versioned, already encoded entries with a TTL, under keys that
 * `LayeredCache` has already hashed. The store does not interpret values; it guarantees only:
 *
 * - `set` keeps the entry with the highest version: a write whose version is not above the stored one (entry or
 *   tombstone) is refused, so a load that finishes late never replaces a newer value.
 * - `delete` leaves a tombstone with its version for `ttlMs`: it reads as absent and refuses older writes. With
 *   `ttlMs` 0 it only removes the entry (used to drop a rejected value without keeping out the reload's write).
 *   Neither removes an entry of a higher version.
 * - An entry (or tombstone) is absent once its TTL has passed, measured on the store's own clock.
 *
 * `layerMemory` keeps entries in a `Map` of this process (time from the Effect `Clock`, so `TestClock` drives it);
 * `layerRedis` keeps them in Redis (time from the Redis server) and runs the same suite (`@wedsync/cache/testing`).
 */
import { RedisClient, RedisKey } from "@wedsync/redis"
import type { RedisError } from "@wedsync/redis"
import { Clock, Context, Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as CacheError from "./CacheError.ts"

/** A stored value and its version. */
export interface StoreEntry {
  readonly version: number
  readonly value: string
}

export interface CacheStoreShape {
  readonly get: (key: string) => Effect.Effect<Option.Option<StoreEntry>, CacheError.CacheError>
  /** Writes unless the key holds an entry or tombstone of an equal or higher version; true when written. */
  readonly set: (key: string, entry: StoreEntry, ttlMs: number) => Effect.Effect<boolean, CacheError.CacheError>
  /**
   * Removes the entry and keeps a tombstone of `version` for `ttlMs`, or none when `ttlMs` is 0 (unless a higher
   * version is stored).
   */
  readonly delete: (key: string, version: number, ttlMs: number) => Effect.Effect<void, CacheError.CacheError>
}

interface Slot {
  readonly version: number
  /** `undefined` for a tombstone. */
  readonly value: string | undefined
  readonly expiresAt: number
}

/** A store in a `Map` of this process, reading time from `clock`. Expired slots are removed when they are read. */
export const makeMemory = (clock: Clock.Clock): CacheStoreShape => {
  const slots = new Map<string, Slot>()
  const live = (key: string, now: number): Slot | undefined => {
    const slot = slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= now) {
      slots.delete(key)
      return undefined
    }
    return slot
  }
  return {
    get: (key) =>
      Effect.sync(() => {
        const slot = live(key, clock.currentTimeMillisUnsafe())
        return slot === undefined || slot.value === undefined
          ? Option.none()
          : Option.some({ version: slot.version, value: slot.value })
      }),
    set: (key, entry, ttlMs) =>
      Effect.sync(() => {
        const now = clock.currentTimeMillisUnsafe()
        const slot = live(key, now)
        if (slot !== undefined && slot.version >= entry.version) return false
        slots.set(key, { version: entry.version, value: entry.value, expiresAt: now + ttlMs })
        return true
      }),
    delete: (key, version, ttlMs) =>
      Effect.sync(() => {
        const now = clock.currentTimeMillisUnsafe()
        const slot = live(key, now)
        if (slot !== undefined && slot.version > version) return
        if (ttlMs <= 0) slots.delete(key)
        else slots.set(key, { version, value: undefined, expiresAt: now + ttlMs })
      })
  }
}

// --- Redis ---------------------------------------------------------------------------------------------------------

/**
 * One Redis string per key: `<version>:<value>` for an entry, `<version>` alone for a tombstone (a version has no
 * colon), with the TTL as the key's own expiry. The version check and the write are one Lua script, so two processes
 * writing one key cannot both pass the check; Redis runs a script alone and its expiry is measured on its own clock.
 */
const storedVersion = `
local function stored_version(key)
  local current = redis.call("GET", key)
  if not current then return nil end
  local colon = string.find(current, ":", 1, true)
  return tonumber(colon and string.sub(current, 1, colon - 1) or current)
end
`

// KEYS[1] key, ARGV[1] version, ARGV[2] value, ARGV[3] ttl ms. 1 when written.
const setScript = `${storedVersion}
local current = stored_version(KEYS[1])
if current and current >= tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[3]) <= 0 then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], ARGV[1] .. ":" .. ARGV[2], "PX", ARGV[3])
end
return 1
`

// KEYS[1] key, ARGV[1] version, ARGV[2] tombstone ttl ms (0: no tombstone). 1 when the key was changed.
const deleteScript = `${storedVersion}
local current = stored_version(KEYS[1])
if current and current > tonumber(ARGV[1]) then return 0 end
if tonumber(ARGV[2]) <= 0 then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
end
return 1
`

interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
}

const script = (name: string, source: string): Script => ({
  name,
  source,
  sha: createHash("sha1").update(source).digest("hex")
})

const scripts = { set: script("cache set", setScript), delete: script("cache delete", deleteScript) }

const entryPattern = /^(-?\d{1,16}):/
const tombstonePattern = /^-?\d{1,16}$/

/**
 * The entry of a stored string; `None` for a tombstone. A string this store did not write reads as an entry of
 * version 0, so the cache rejects it as a foreign value (dropped and counted) instead of ignoring it, and any
 * write replaces it.
 */
export const parseRedisValue = (stored: string): Option.Option<StoreEntry> => {
  const match = entryPattern.exec(stored)
  if (match !== null) {
    const version = Number(match[1])
    if (Number.isSafeInteger(version)) return Option.some({ version, value: stored.slice(match[0].length) })
  }
  return tombstonePattern.test(stored) ? Option.none() : Option.some({ version: 0, value: stored })
}

/** The Redis key of a store key: `cache:<kind>:<id>:<hash>` under `REDIS_PREFIX` (the parts keep their colons). */
export const redisKey = (key: string): RedisKey.RedisKey => RedisKey.make("cache", ...key.split(":"))

const fromRedis = (what: string) => (error: RedisError.RedisError) => CacheError.unavailable(what, error)

/** A store in Redis through `client`: keys under its prefix, versions checked by Lua scripts on the server. */
export const makeRedis = (client: RedisClient.RedisClientShape): CacheStoreShape => {
  // EVALSHA sends 40 bytes instead of the script; after a Redis restart (or on a fresh server) the script cache is
  // empty and the first call loads it with EVAL.
  const run = (s: Script, key: string, args: ReadonlyArray<string>) =>
    client.command(s.name, (redis) => {
      const full = client.key(redisKey(key))
      return redis.evalsha(s.sha, 1, full, ...args).catch((error: unknown) =>
        error instanceof Error && error.message.startsWith("NOSCRIPT")
          ? redis.eval(s.source, 1, full, ...args)
          : Promise.reject(error)
      )
    })
  const ms = (ttlMs: number) => String(Math.max(0, Math.ceil(ttlMs)))
  return {
    get: (key) =>
      client.get(redisKey(key)).pipe(
        Effect.map(Option.flatMap(parseRedisValue)),
        Effect.mapError(fromRedis("cache read"))
      ),
    set: (key, entry, ttlMs) =>
      run(scripts.set, key, [String(entry.version), entry.value, ms(ttlMs)]).pipe(
        Effect.map((written) => written === 1),
        Effect.mapError(fromRedis("cache write"))
      ),
    delete: (key, version, ttlMs) =>
      run(scripts.delete, key, [String(version), ms(ttlMs)]).pipe(
        Effect.asVoid,
        Effect.mapError(fromRedis("cache delete"))
      )
  }
}

export class CacheStore extends Context.Service<CacheStore, CacheStoreShape>()("@wedsync/cache/CacheStore") {
  /** One store per layer build, in this process: the L2 of a single node, and of several simulated nodes in tests. */
  static readonly layerMemory: Layer.Layer<CacheStore> = Layer.effect(
    CacheStore,
    Clock.clockWith((clock) => Effect.succeed(makeMemory(clock)))
  )

  /** The shared store of every process on one Redis (and `REDIS_PREFIX`). */
  static readonly layerRedis: Layer.Layer<CacheStore, never, RedisClient.RedisClient> = Layer.effect(
    CacheStore,
    Effect.gen(function*() {
      return makeRedis(yield* RedisClient.RedisClient)
    })
  )

  /** No shared store: every read is a miss and every write is discarded (the cache is L1 only). */
  static readonly layerNoop: Layer.Layer<CacheStore> = Layer.succeed(CacheStore, {
    get: () => Effect.succeed(Option.none()),
    set: () => Effect.succeed(false),
    delete: () => Effect.void
  })
}

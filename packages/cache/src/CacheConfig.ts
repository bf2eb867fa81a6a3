/**
 * Settings of the layered cache: per-kind TTLs (fresh, negative, stale grace), the L1 bounds, the store timeout and
 * the HMAC key of stored values. `defaults` follows the WS-202 spec (subscription state 5 min, user data 10 min,
 * wedding data 2 min, connection metadata 30 min).
 *
 * This package never reads `process.env`: `apps/gateway` loads `config` (or builds `layer({...})`) and provides it.
 */
import { randomBytes } from "node:crypto"
import { Config, Context, Layer, Option, Redacted } from "effect"
import * as CacheKind from "./CacheKind.ts"

/** How long values of one kind live. */
export interface KindPolicy {
  /** A positive value is served as fresh for this long after it was loaded. */
  readonly ttlMs: number
  /** A negative value ("no", absent) is fresh for this long; never longer than `ttlMs`. */
  readonly negativeTtlMs: number
  /**
   * After the fresh time, the value is still served for this long while one background load refreshes it
   * (stale-while-revalidate). 0 turns it off.
   */
  readonly staleMs: number
}

export interface CacheOptions {
  readonly kinds: { readonly [K in CacheKind.Name]: KindPolicy }
  /** Most L1 entries; the least recently used go first. */
  readonly l1MaxEntries: number
  /** Most L1 bytes (estimated from the encoded value and the key); the least recently used go first. */
  readonly l1MaxBytes: number
  /** Longest wait for one store operation; a slower one counts as failed (reads fall back to the loader). */
  readonly storeTimeoutMs: number
  /**
   * Authenticates stored values (HMAC-SHA256) and hashes keys. Every process that shares a store needs the same key;
   * a value written under another key is a foreign value: a miss, dropped and counted.
   */
  readonly hmacKey: Redacted.Redacted<string>
  /** How long an invalidation keeps older writes of its key out of the store (a load that started before it). */
  readonly tombstoneMs: number
}

const minute = 60_000

/**
 * The spec's TTLs, 1/10 of them for negatives, 30 s of stale grace, 100,000 entries or 64 MiB in L1, 50 ms per store
 * operation. The HMAC key is random per process: fine alone, but processes sharing a store must set `CACHE_HMAC_KEY`.
 */
export const defaults: CacheOptions = {
  kinds: {
    subscription: { ttlMs: 5 * minute, negativeTtlMs: 30_000, staleMs: 30_000 },
    user: { ttlMs: 10 * minute, negativeTtlMs: minute, staleMs: 30_000 },
    wedding: { ttlMs: 2 * minute, negativeTtlMs: 12_000, staleMs: 30_000 },
    connection: { ttlMs: 30 * minute, negativeTtlMs: 3 * minute, staleMs: 30_000 }
  },
  l1MaxEntries: 100_000,
  l1MaxBytes: 64 * 1024 * 1024,
  storeTimeoutMs: 50,
  hmacKey: Redacted.make(randomBytes(32).toString("base64url")),
  tombstoneMs: minute
}

/** `defaults` overridden in part: `kinds` may be given per kind and per field. */
export type CacheOverrides = Partial<Omit<CacheOptions, "kinds">> & {
  readonly kinds?: { readonly [K in CacheKind.Name]?: Partial<KindPolicy> } | undefined
}

const seconds = (name: string, fallback: number): Config.Config<number> =>
  Config.Int(name).pipe(Config.withDefault(fallback / 1000), Config.map((s) => s * 1000))

const kindConfig = (name: CacheKind.Name, envName: string): Config.Config<KindPolicy> =>
  Config.all({
    ttlMs: seconds(`CACHE_TTL_${envName}`, defaults.kinds[name].ttlMs),
    negativeTtlMs: seconds(`CACHE_NEGATIVE_TTL_${envName}`, defaults.kinds[name].negativeTtlMs),
    staleMs: seconds(`CACHE_STALE_${envName}`, defaults.kinds[name].staleMs)
  }).pipe(Config.map((policy) => ({ ...policy, negativeTtlMs: Math.min(policy.negativeTtlMs, policy.ttlMs) })))

/**
 * Reads, in seconds: `CACHE_TTL_SUBSCRIPTION`, `CACHE_TTL_USER`, `CACHE_TTL_WEDDING`, `CACHE_TTL_CONNECTION`, the
 * same with `CACHE_NEGATIVE_TTL_` and `CACHE_STALE_`; `CACHE_L1_MAX_ENTRIES`, `CACHE_L1_MAX_BYTES`,
 * `CACHE_STORE_TIMEOUT_MS`, `CACHE_TOMBSTONE_MS` and `CACHE_HMAC_KEY` (unset: a random key per process).
 */
export const config: Config.Config<CacheOptions> = Config.all({
  kinds: Config.all({
    subscription: kindConfig("subscription", "SUBSCRIPTION"),
    user: kindConfig("user", "USER"),
    wedding: kindConfig("wedding", "WEDDING"),
    connection: kindConfig("connection", "CONNECTION")
  }),
  l1MaxEntries: Config.Int("CACHE_L1_MAX_ENTRIES").pipe(Config.withDefault(defaults.l1MaxEntries)),
  l1MaxBytes: Config.Int("CACHE_L1_MAX_BYTES").pipe(Config.withDefault(defaults.l1MaxBytes)),
  storeTimeoutMs: Config.Int("CACHE_STORE_TIMEOUT_MS").pipe(Config.withDefault(defaults.storeTimeoutMs)),
  tombstoneMs: Config.Int("CACHE_TOMBSTONE_MS").pipe(Config.withDefault(defaults.tombstoneMs)),
  hmacKey: Config.Redacted("CACHE_HMAC_KEY").pipe(
    Config.option,
    Config.map(Option.getOrElse(() => defaults.hmacKey))
  )
})

export class CacheConfig extends Context.Service<CacheConfig, CacheOptions>()("@wedsync/cache/CacheConfig") {
  /** `defaults` overridden by `options`. */
  static readonly layer = (options: CacheOverrides = {}): Layer.Layer<CacheConfig> => {
    const { kinds, ...rest } = options
    const merged = Object.fromEntries(
      CacheKind.names.map((name) => [name, { ...defaults.kinds[name], ...kinds?.[name] }])
    ) as unknown as CacheOptions["kinds"]
    return Layer.succeed(CacheConfig, { ...defaults, ...rest, kinds: merged })
  }

  /** `CacheConfig` loaded from `config` through the current `ConfigProvider`. */
  static readonly layerConfig: Layer.Layer<CacheConfig, Config.ConfigError> = Layer.effect(CacheConfig, config)
}

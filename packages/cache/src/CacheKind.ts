/**
 * What is cached, and under which TTL policy. A kind name (`subscription`, `user`, `wedding`, `connection`) selects
 * the TTLs of `CacheConfig`; a `CacheKind` descriptor adds an `id` that separates the keyspaces of different value
 * types sharing one policy (membership decisions and profiles are both `user` data), the codec used for the shared
 * store, and which values are negative ("no", absent) and so cached for the shorter negative TTL.
 *
 * Kind names and ids are fixed in code and used as metric labels and key parts; they never come from a request.
 */
import type * as CacheCodec from "./CacheCodec.ts"

/** The TTL policies of the WS-202 spec. */
export const names = ["subscription", "user", "wedding", "connection"] as const

/** One TTL policy. */
export type Name = (typeof names)[number]

/** A keyspace of values of type `A` under the policy `name`. */
export interface CacheKind<A> {
  readonly name: Name
  /** Separates keyspaces that share a policy; lowercase letters, digits, `-` and `_`. */
  readonly id: string
  readonly codec: CacheCodec.CacheCodec<A>
  /** True for a value cached under the negative TTL ("no", not found). */
  readonly isNegative: (value: A) => boolean
}

const idPattern = /^[a-z0-9_-]{1,32}$/

/**
 * A keyspace descriptor. Without `isNegative`, `null` and `undefined` are the negative values.
 * Throws on an id that could collide with the key layout: ids are constants, so this fails at module load.
 */
export const make = <A>(options: {
  readonly name: Name
  readonly id: string
  readonly codec: CacheCodec.CacheCodec<A>
  readonly isNegative?: ((value: A) => boolean) | undefined
}): CacheKind<A> => {
  if (!idPattern.test(options.id))
    throw new Error(`CacheKind id ${JSON.stringify(options.id)} must match ${idPattern.source}`)
  return {
    name: options.name,
    id: options.id,
    codec: options.codec,
    isNegative: options.isNegative ?? ((value) => value === undefined || value === null)
  }
}

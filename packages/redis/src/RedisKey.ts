/**
 * Redis key and channel names, built so they can live on Redis Cluster.
 *
 * A key is `<namespace>:<part>:<part>…`. Keys that one operation touches together (a MULTI, a Lua script, an MGET)
 * must hash to one Cluster slot, so `tagged` puts the shared part in a hash tag: `cache:{w-1}:members` and
 * `cache:{w-1}:plan` land on the slot of `w-1`. Parts are escaped (`%`, `{`, `}`, `:`), so an id can neither open a
 * hash tag of its own nor pose as another segment. Keys here carry no prefix: `RedisClient` adds `REDIS_PREFIX` in
 * one place, to keys, channels and patterns alike, and the prefix may not contain braces (it would capture the tag).
 */

declare const RedisKeyBrand: unique symbol

/** A key or channel name built by this module, without the deployment prefix. */
export type RedisKey = string & { readonly [RedisKeyBrand]: "RedisKey" }

/** A pattern for `PSUBSCRIBE`, built by `pattern`, without the deployment prefix. */
export type RedisPattern = string & { readonly [RedisKeyBrand]: "RedisPattern" }

export type Part = string | number

/** Escapes the characters that would change a key's structure; identity for ordinary ids. */
export const escapePart = (part: Part): string =>
  String(part).replace(/[%{}:]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

const join = (namespace: string, parts: ReadonlyArray<Part>): string =>
  [escapePart(namespace), ...parts.map(escapePart)].join(":")

/** `<namespace>:<parts…>`, for a key that stands alone. */
export const make = (namespace: string, ...parts: ReadonlyArray<Part>): RedisKey => join(namespace, parts) as RedisKey

/** `<namespace>:{<tag>}:<parts…>`: every key with the same tag hashes to the same Cluster slot. */
export const tagged = (namespace: string, tag: Part, ...parts: ReadonlyArray<Part>): RedisKey =>
  [escapePart(namespace), `{${escapePart(tag)}}`, ...parts.map(escapePart)].join(":") as RedisKey

// Characters PSUBSCRIBE treats as glob syntax.
const escapeGlob = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/** Every channel `make(namespace, ...parts, <anything>)`: a `PSUBSCRIBE` pattern ending in `*`. */
export const pattern = (namespace: string, ...parts: ReadonlyArray<Part>): RedisPattern =>
  `${escapeGlob(join(namespace, parts))}:*` as RedisPattern

/** Escapes glob syntax in a literal (the prefix) so it matches only itself inside a pattern. */
export const literalPattern = escapeGlob

/**
 * The part of a full key Redis Cluster hashes: the content of the first `{…}` when it is non-empty, otherwise the
 * whole key (the Redis Cluster specification's rule).
 */
export const hashTag = (key: string): string => {
  const open = key.indexOf("{")
  if (open === -1) return key
  const close = key.indexOf("}", open + 1)
  if (close === -1 || close === open + 1) return key
  return key.slice(open + 1, close)
}

/** Why a prefix cannot be used, or undefined when it can. */
export const prefixProblem = (prefix: string): string | undefined =>
  /[{}]/.test(prefix)
    ? `REDIS_PREFIX "${prefix}" contains "{" or "}", which would become the Redis Cluster hash tag of every key`
    : /\s/.test(prefix)
    ? `REDIS_PREFIX "${prefix}" contains white space`
    : undefined

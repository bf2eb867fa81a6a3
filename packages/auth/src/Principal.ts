/**
 * Who is on the other end of a socket or a join: the verified claims of a token, with the parts the gateway
 * reads on every decision pulled out up front.
 *
 * A `Principal` is only ever built from a token that `TokenVerifier` accepted, so `role` is always set. The
 * wedding and supplier memberships come from `app_metadata` (written by our backend, not editable by users,
 * unlike `user_metadata`). Malformed membership data yields empty sets rather than an error: a bad claim must
 * lose access, never crash a join.
 */

/** A verified caller. Immutable; safe to share between fibers and to cache. */
export interface Principal {
  /** The JWT `role` claim (`anon`, `authenticated`, `service_role`, …). */
  readonly role: string
  /** The JWT `sub` claim (the user id), when it is a string. */
  readonly sub: string | undefined
  /** Expiry in epoch seconds, rounded; `undefined` for opaque `sb_…` keys, which never expire. */
  readonly exp: number | undefined
  /** Every claim of the token, with `exp`/`iat` rounded like Supabase does. */
  readonly claims: Readonly<Record<string, unknown>>
  /** `app_metadata.wedding_ids`, as strings. */
  readonly weddingIds: ReadonlySet<string>
  /** `app_metadata.supplier_ids`, as strings. */
  readonly supplierIds: ReadonlySet<string>
  /** The token this principal was verified from (URL-decoded, whitespace removed). */
  readonly token: string
}

/** The role that bypasses channel policies, as in Supabase (the service key skips RLS). */
export const SERVICE_ROLE = "service_role"

/** True for `service_role` principals. */
export const isServiceRole = (principal: Principal): boolean => principal.role === SERVICE_ROLE

/**
 * Builds a principal from claims that have already been verified. `role` falls back to `""` and `exp` to
 * `undefined` when missing, so callers must validate first (as `TokenVerifier` does).
 */
export const make = (input: {
  readonly claims: Readonly<Record<string, unknown>>
  readonly token: string
}): Principal => {
  const claims = roundTimes(input.claims)
  const appMetadata = asRecord(claims["app_metadata"])
  return Object.freeze({
    role: typeof claims["role"] === "string" ? claims["role"] : "",
    sub: typeof claims["sub"] === "string" ? claims["sub"] : undefined,
    exp: typeof claims["exp"] === "number" && Number.isFinite(claims["exp"]) ? claims["exp"] : undefined,
    claims,
    weddingIds: idSet(appMetadata?.["wedding_ids"]),
    supplierIds: idSet(appMetadata?.["supplier_ids"]),
    token: input.token
  })
}

/** A principal for an opaque `sb_…` key: only a role, no expiry, no memberships. */
export const fromApiKey = (role: string, token: string): Principal => make({ claims: { role }, token })

// Supabase rounds decimal `exp`/`iat` (allowed by RFC 7519) so downstream integer arithmetic stays exact.
const roundTimes = (claims: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> => {
  const exp = claims["exp"]
  const iat = claims["iat"]
  const needsExp = typeof exp === "number" && Number.isFinite(exp) && !Number.isInteger(exp)
  const needsIat = typeof iat === "number" && Number.isFinite(iat) && !Number.isInteger(iat)
  if (!needsExp && !needsIat) return Object.freeze({ ...claims })
  return Object.freeze({
    ...claims,
    ...(needsExp ? { exp: Math.round(exp) } : {}),
    ...(needsIat ? { iat: Math.round(iat) } : {})
  })
}

const asRecord = (u: unknown): Readonly<Record<string, unknown>> | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Record<string, unknown>) : undefined

const idSet = (u: unknown): ReadonlySet<string> => {
  const ids = new Set<string>()
  if (!Array.isArray(u)) return ids
  for (const item of u) {
    if (typeof item === "string" && item.length > 0) ids.add(item)
    else if (typeof item === "number" && Number.isFinite(item)) ids.add(String(item))
  }
  return ids
}

/** Seconds since `principal` expired at `nowMs`, or `undefined` while it is valid (opaque keys never expire). */
export const expiredSecondsAgo = (principal: Principal, nowMs: number): number | undefined =>
  principal.exp !== undefined && principal.exp * 1000 <= nowMs ? Math.floor(nowMs / 1000 - principal.exp) : undefined

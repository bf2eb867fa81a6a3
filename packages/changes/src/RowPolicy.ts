/**
 * Who may see a changed row. A row with a `wedding_id` (or `supplier_id`) column reaches only
 * subscribers whose token lists that wedding (supplier); `service_role` sees everything; a table
 * with neither column follows `unscopedTables` (default: `service_role` only). Subscribers other
 * than `service_role` are "restricted": a DELETE reaches them with its primary key only, as
 * Supabase sends deletes under row-level security.
 *
 * When the row image lacks the scoping column (a DELETE under `REPLICA IDENTITY DEFAULT` carries
 * only the primary key) nobody but `service_role` can be shown to be allowed, so only it receives
 * the change: set `REPLICA IDENTITY FULL` on scoped tables whose deletes users must see.
 *
 * The new and the old image of an UPDATE are authorized separately (`sameScope`): when a row moves
 * from wedding B to wedding A, no column of B's image reaches a subscriber of A only, and B's
 * subscribers learn that the row left (see PostgresChanges).
 *
 * With a membership table (`Memberships`), a restricted subscriber whose token does not list the row's wedding
 * (supplier) may still see it when the table grants it to the token's `sub`. That decision is read synchronously from
 * the cache's L1; one L1 does not hold is answered "denied" and recorded in `missing`, which the caller loads and
 * decides again before it delivers (so a row is never sent or withheld on a guess).
 */
import { Memberships } from "@wedsync/auth"
import type { ChangeFeed } from "@wedsync/hub"

export type UnscopedRule = "service_role" | "authenticated" | "all"

/** The scoping of one changed row, computed once per change. */
export type RowScope =
  | { readonly _tag: "Wedding"; readonly id: string }
  | { readonly _tag: "Supplier"; readonly id: string }
  | { readonly _tag: "Unscoped" }
  /** The table is scoped but this row image does not carry the scoping column. */
  | { readonly _tag: "Unknown" }

type Decision = "full" | "restricted" | "denied"

const WEDDING = "wedding_id"
const SUPPLIER = "supplier_id"
const UNSCOPED: RowScope = { _tag: "Unscoped" }
const UNKNOWN: RowScope = { _tag: "Unknown" }

/** A scope id as text: strings as they are, integers in decimal. */
export const idOf = (value: unknown): string | undefined =>
  typeof value === "string" ? value : typeof value === "number" || typeof value === "bigint" ? String(value) : undefined

/** The scope of a row of a table with these column names. */
export const scopeOf = (
  columnNames: ReadonlySet<string>,
  row: Readonly<Record<string, unknown>> | undefined
): RowScope => {
  const scoped = columnNames.has(WEDDING) ? WEDDING : columnNames.has(SUPPLIER) ? SUPPLIER : undefined
  if (scoped === undefined) return UNSCOPED
  const id = idOf(row?.[scoped])
  if (id === undefined) return UNKNOWN
  return scoped === WEDDING ? { _tag: "Wedding", id } : { _tag: "Supplier", id }
}

/** Whether two images of a row are in the same wedding (supplier, or neither). */
export const sameScope = (a: RowScope, b: RowScope): boolean => {
  if (a._tag !== b._tag) return false
  return a._tag === "Wedding" || a._tag === "Supplier" ? a.id === (b as typeof a).id : true
}

const SERVICE_ROLE = "service_role"

/**
 * Decides per (access, scope). Decisions about a wedding or supplier are cached per access object
 * (one per verified token, shared by all of that token's sockets), so a change to a wedding with
 * 200 watching devices costs set lookups, not policy evaluations.
 */
export class RowPolicy {
  private readonly unscoped: UnscopedRule
  private readonly cache = new WeakMap<ChangeFeed.Access, Map<string, boolean>>()
  private readonly memberships: Memberships.Service | undefined
  /** Membership decisions loaded during this transaction (L1 may hold them only as stale). */
  private readonly resolved = new Map<string, boolean>()
  /**
   * Membership decisions a `decide` needed and could not make without a query (answered "denied"), by cache key.
   * The caller loads them (`resolve`) and decides again before delivering.
   */
  readonly missing = new Map<string, Memberships.Grant>()

  /** With `memberships` enabled, a token that does not list a wedding (supplier) may still see it through the table. */
  constructor(unscoped: UnscopedRule, memberships?: Memberships.Service) {
    this.unscoped = unscoped
    this.memberships = memberships?.enabled === true ? memberships : undefined
  }

  /** Whether decisions may need a membership query (`missing`). */
  get usesMemberships(): boolean {
    return this.memberships !== undefined
  }

  /** The time decisions are made at (epoch seconds); set once per transaction. */
  private nowSeconds = Number.NEGATIVE_INFINITY

  setNow(nowMs: number): void {
    this.nowSeconds = nowMs / 1000
    this.resolved.clear()
  }

  /** Keeps a loaded membership decision for the rest of the transaction. */
  resolve(key: string, member: boolean): void {
    this.resolved.set(key, member)
    this.missing.delete(key)
  }

  decide(access: ChangeFeed.Access, scope: RowScope): Decision {
    // An expired token sees nothing, whatever its role: the sweep that closes its channel may come later.
    if (access.exp !== undefined && access.exp <= this.nowSeconds) return "denied"
    if (access.role === SERVICE_ROLE) return "full"
    switch (scope._tag) {
      case "Unknown":
        return "denied"
      case "Unscoped":
        return this.unscoped === "all" || (this.unscoped === "authenticated" && access.role === "authenticated")
          ? "restricted"
          : "denied"
      case "Wedding":
      case "Supplier": {
        let decisions = this.cache.get(access)
        if (decisions === undefined) this.cache.set(access, decisions = new Map())
        const key = scope._tag === "Wedding" ? `w:${scope.id}` : `s:${scope.id}`
        let allowed = decisions.get(key)
        if (allowed === undefined) {
          allowed = scope._tag === "Wedding" ? access.weddingIds.has(scope.id) : access.supplierIds.has(scope.id)
          decisions.set(key, allowed)
        }
        if (allowed) return "restricted"
        // Table memberships change, so they are not kept per access: L1 holds them, shared by every access of a user.
        if (this.memberships === undefined || access.sub === undefined) return "denied"
        return this.member(access.sub, scope._tag === "Wedding" ? "wedding" : "supplier", scope.id)
      }
    }
  }

  private member(userId: string, scope: Memberships.ScopeKind, id: string): Decision {
    const key = Memberships.key(userId, scope, id)
    const member = this.memberships!.peek(key) ?? this.resolved.get(key)
    if (member === undefined) {
      this.missing.set(key, { userId, scope, id })
      return "denied"
    }
    return member ? "restricted" : "denied"
  }
}

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
 */
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

const idOf = (value: unknown): string | undefined =>
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

  constructor(unscoped: UnscopedRule) {
    this.unscoped = unscoped
  }

  /** The time decisions are made at (epoch seconds); set once per transaction. */
  private nowSeconds = Number.NEGATIVE_INFINITY

  setNow(nowMs: number): void {
    this.nowSeconds = nowMs / 1000
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
        return allowed ? "restricted" : "denied"
      }
    }
  }
}

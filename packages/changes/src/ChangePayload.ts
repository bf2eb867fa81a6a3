/**
 * The `data` of a `postgres_changes` frame, as Supabase sends it (spec §5.2), built once per change
 * and payload variant as JSON text; `frameJson` wraps it with a subscriber group's binding ids by
 * concatenation, so a change seen by many sockets is stringified once.
 */
import type { ChangeEvent } from "./ChangeEvent.ts"

export interface Variant {
  /** `restricted`: a DELETE carries only the primary key in `old_record`. */
  readonly variant: "full" | "restricted"
  /** A binding's `select`: only these columns plus the primary key. */
  readonly select: ReadonlyArray<string> | undefined
}

const pick = (
  row: Readonly<Record<string, unknown>> | undefined,
  keep: (column: string) => boolean
): Record<string, unknown> => {
  // Null prototype: a column named `__proto__` stays a column (on `{}` it would set the prototype).
  const out: Record<string, unknown> = Object.create(null)
  if (row === undefined) return out
  for (const column of Object.keys(row)) if (keep(column)) out[column] = row[column]
  return out
}

/** Supabase's `commit_timestamp`, record and column rules for one change and variant. */
export const data = (event: ChangeEvent, variant: Variant): Record<string, unknown> => {
  const selected = variant.select === undefined ? undefined : new Set([...variant.select, ...event.primaryKey])
  const visible = (column: string) => selected === undefined || selected.has(column)
  const columns = event.columns.filter((c) => visible(c.name)).map((c) => ({ name: c.name, type: c.type }))
  const head = {
    schema: event.schema,
    table: event.table,
    commit_timestamp: event.commitTimestamp,
    type: event.action,
    columns
  }
  const primaryKey = new Set(event.primaryKey)
  switch (event.action) {
    case "INSERT":
      return { ...head, record: pick(event.record, visible), errors: null }
    case "UPDATE":
      return { ...head, record: pick(event.record, visible), old_record: pick(event.oldRecord, visible), errors: null }
    default: {
      const keep = variant.variant === "restricted" ? (c: string) => primaryKey.has(c) : visible
      return { ...head, old_record: pick(event.oldRecord, keep), errors: null }
    }
  }
}

export const dataJson = (event: ChangeEvent, variant: Variant): string => JSON.stringify(data(event, variant))

/** `{"ids":[…],"data":…}` around already-encoded data. */
export const frameJson = (ids: ReadonlyArray<number>, dataJsonText: string): string =>
  `{"ids":${JSON.stringify(ids)},"data":${dataJsonText}}`

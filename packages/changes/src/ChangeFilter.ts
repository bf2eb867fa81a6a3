/**
 * Supabase's `postgres_changes` filter grammar, evaluated in the gateway with Postgres semantics.
 *
 * `column=op.value` conditions joined by top-level commas (AND); ops `eq neq lt lte gt gte in is
 * like ilike isdistinct`, each optionally prefixed by `not.`; PostgREST double-quoting for values
 * with `,()"\\` or surrounding spaces. `parse` is total. `validate` types every literal against the
 * table's columns and refuses what the gateway cannot evaluate exactly (never widening a filter):
 * `match`/`imatch` (Postgres regular expressions are not JavaScript's), order comparisons on text
 * (collation-dependent), booleans and uuids, columns of types it has no exact comparison for, and
 * `like` on non-text columns. `matches` is SQL's: a NULL or missing
 * column makes a comparison unknown, and an unknown condition (negated or not) does not match.
 */
import { Result } from "effect"
import type { Column } from "./ChangeEvent.ts"

type Op = "eq" | "neq" | "lt" | "lte" | "gt" | "gte" | "in" | "is" | "like" | "ilike" | "isdistinct"

const OPS: ReadonlySet<string> = new Set([
  "eq",
  "neq",
  "lt",
  "lte",
  "gt",
  "gte",
  "in",
  "is",
  "like",
  "ilike",
  "isdistinct"
])
const REFUSED_OPS: ReadonlySet<string> = new Set(["match", "imatch"])
const MAX_IN_VALUES = 100

interface Condition {
  readonly column: string
  readonly op: Op
  readonly negate: boolean
  /** One value, or the list of an `in`. */
  readonly values: ReadonlyArray<string>
}

type Filter = ReadonlyArray<Condition>

export class FilterError {
  readonly _tag = "FilterError"
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const fail = (message: string) => Result.fail(new FilterError(message))

/** Splits on `separator` outside double quotes and parentheses. */
const splitTopLevel = (text: string, separator: string): Array<string> | undefined => {
  const parts: Array<string> = []
  let depth = 0
  let quoted = false
  let current = ""
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      current += c
      if (c === "\\" && i + 1 < text.length) current += text[++i]
      else if (c === '"') quoted = false
      continue
    }
    if (c === '"') quoted = true
    else if (c === "(") depth++
    else if (c === ")") depth--
    if (depth < 0) return undefined
    if (c === separator && depth === 0) {
      parts.push(current)
      current = ""
    } else {
      current += c
    }
  }
  if (quoted || depth !== 0) return undefined
  parts.push(current)
  return parts
}

/** A PostgREST value: `"quoted, with \\" escapes"` or bare text (trimmed). */
const unquote = (raw: string): string | undefined => {
  const value = raw.trim()
  if (!value.startsWith('"')) return value
  if (value.length < 2 || !value.endsWith('"')) return undefined
  let out = ""
  for (let i = 1; i < value.length - 1; i++) {
    const c = value[i]!
    if (c === "\\") {
      if (i + 1 >= value.length - 1) return undefined
      out += value[++i]
    } else if (c === '"') {
      return undefined
    } else {
      out += c
    }
  }
  return out
}

const parseCondition = (segment: string): Result.Result<Condition, FilterError> => {
  const eq = segment.indexOf("=")
  if (eq <= 0) return fail(`Error parsing \`filter\` params: ${JSON.stringify(segment.split("="))}`)
  const column = segment.slice(0, eq).trim()
  let rest = segment.slice(eq + 1)
  let negate = false
  if (rest.startsWith("not.")) {
    negate = true
    rest = rest.slice(4)
  }
  const dot = rest.indexOf(".")
  const op = dot < 0 ? rest : rest.slice(0, dot)
  if (REFUSED_OPS.has(op)) {
    return fail(
      `\`${op}\` filters are not supported by this gateway: Postgres regular expressions cannot be evaluated exactly here`
    )
  }
  if (dot < 0 || !OPS.has(op)) return fail(`Error parsing \`filter\` params: ${JSON.stringify([column, rest])}`)
  const valueText = rest.slice(dot + 1)
  if (op === "in") {
    const trimmed = valueText.trim()
    if (!trimmed.startsWith("(") || !trimmed.endsWith(")"))
      return fail("`in` filter value must be wrapped by parentheses")
    const items = splitTopLevel(trimmed.slice(1, -1), ",")
    if (items === undefined) return fail(`Error parsing \`filter\` params: ${JSON.stringify([column, rest])}`)
    const values: Array<string> = []
    for (const item of items) {
      const value = unquote(item)
      if (value === undefined) return fail(`Error parsing \`filter\` params: ${JSON.stringify([column, rest])}`)
      values.push(value)
    }
    if (values.length > MAX_IN_VALUES) return fail(`too many values for \`in\` filter. Maximum ${MAX_IN_VALUES}`)
    return Result.succeed({ column, op, negate, values })
  }
  const value = unquote(valueText)
  if (value === undefined) return fail(`Error parsing \`filter\` params: ${JSON.stringify([column, rest])}`)
  return Result.succeed({ column, op: op as Op, negate, values: [value] })
}

/** Parses a filter string; total: any input gives a filter or a `FilterError`. */
export const parse = (filter: string): Result.Result<Filter, FilterError> => {
  const segments = splitTopLevel(filter, ",")
  if (segments === undefined) return fail(`Error parsing \`filter\` params: ${JSON.stringify([filter])}`)
  if (segments.some((s) => s.trim() === ""))
    return fail("filter must not contain empty segments (check for extra commas)")
  const conditions: Array<Condition> = []
  for (const segment of segments) {
    const condition = parseCondition(segment.trim())
    if (Result.isFailure(condition)) return Result.fail(condition.failure)
    conditions.push(condition.success)
  }
  return Result.succeed(conditions)
}

// ---- typing ----------------------------------------------------------------------------------

type Kind = "integer" | "decimal" | "float" | "text" | "uuid" | "bool" | "timestamp" | "date"

// A Map: type names come from the catalog (a user type may be named `constructor`).
const KINDS: ReadonlyMap<string, Kind> = new Map<string, Kind>([
  ["int2", "integer"],
  ["int4", "integer"],
  ["int8", "integer"],
  ["oid", "integer"],
  ["numeric", "decimal"],
  ["float4", "float"],
  ["float8", "float"],
  ["text", "text"],
  ["varchar", "text"],
  ["bpchar", "text"],
  ["name", "text"],
  ["citext", "text"],
  ["uuid", "uuid"],
  ["bool", "bool"],
  ["timestamp", "timestamp"],
  ["timestamptz", "timestamp"],
  ["date", "date"]
])

/** A comparable form of a value: a bigint, a number, a string, a boolean; undefined when not a value of the kind. */
type Comparable = bigint | number | string | boolean

const INTEGER = /^[+-]?\d+$/
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i

/** Decimal strings compared exactly: scaled to a common number of fraction digits as bigints. */
const decimalKey = (text: string): bigint => {
  const negative = text.startsWith("-")
  const body = text.replace(/^[+-]/, "")
  const [whole = "0", fraction = ""] = body.split(".")
  const scaled = BigInt((whole || "0") + fraction.padEnd(30, "0").slice(0, 30))
  return negative ? -scaled : scaled
}

const timestampMillis = (text: string): number | undefined => {
  // Postgres text forms ("2026-01-01 12:00:00.123+00") and ISO; a bare timestamp is read as UTC.
  let iso = text.trim().replace(" ", "T")
  if (/[+-]\d\d$/.test(iso)) iso += ":00"
  if (/T\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(iso)) iso += "Z"
  const ms = Date.parse(iso)
  return Number.isNaN(ms) ? undefined : ms
}

/** Converts a row value or a filter literal to the column kind's comparable form. */
const toComparable = (kind: Kind, value: unknown): Comparable | undefined => {
  if (value === null || value === undefined) return undefined
  const text = value instanceof Date ? value.toISOString() : typeof value === "string" ? value : String(value)
  switch (kind) {
    case "integer":
      return typeof value === "number" && Number.isInteger(value)
        ? BigInt(value)
        : INTEGER.test(text)
        ? BigInt(text)
        : undefined
    case "decimal":
    case "float":
      if (kind === "float" && typeof value === "number") return value
      return DECIMAL.test(text) ? (kind === "decimal" ? decimalKey(text) : Number(text)) : undefined
    case "uuid":
      return UUID.test(text) ? text.replaceAll("-", "").toLowerCase() : undefined
    case "bool":
      if (typeof value === "boolean") return value
      return /^(t|true)$/i.test(text) ? true : /^(f|false)$/i.test(text) ? false : undefined
    case "timestamp":
    case "date":
      return value instanceof Date ? value.getTime() : timestampMillis(text)
    case "text":
      return text
  }
}

interface TypedCondition {
  readonly column: string
  readonly kind: Kind
  readonly op: Op
  readonly negate: boolean
  readonly values: ReadonlyArray<Comparable>
  /** `is null` / `is true` / `is false` / `is unknown`. */
  readonly is: "null" | "true" | "false" | "unknown" | undefined
  readonly pattern: RegExp | undefined
}

export type TypedFilter = ReadonlyArray<TypedCondition>

const likeToRegExp = (pattern: string, caseInsensitive: boolean): RegExp => {
  let source = "^"
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === "\\" && i + 1 < pattern.length) source += pattern[++i]!.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")
    else if (c === "%") source += "[\\s\\S]*"
    else if (c === "_") source += "[\\s\\S]"
    else source += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")
  }
  return new RegExp(`${source}$`, caseInsensitive ? "iu" : "u")
}

/** Types a parsed filter against the table's columns, refusing what cannot be honoured exactly. */
export const validate = (filter: Filter, columns: ReadonlyArray<Column>): Result.Result<TypedFilter, FilterError> => {
  const typed: Array<TypedCondition> = []
  for (const condition of filter) {
    const column = columns.find((c) => c.name === condition.column)
    if (column === undefined) return fail(`invalid column for filter ${condition.column}`)
    const kind = KINDS.get(column.type)
    if (kind === undefined) {
      return fail(`filters on ${column.type} columns are not supported by this gateway (column ${column.name})`)
    }
    if (condition.op === "is") {
      const word = condition.values[0]!.toLowerCase()
      if (word !== "null" && word !== "true" && word !== "false" && word !== "unknown") {
        return fail(`\`is\` filter value must be null, true, false or unknown (column ${column.name})`)
      }
      if (word !== "null" && kind !== "bool")
        return fail(`\`is ${word}\` needs a boolean column (column ${column.name})`)
      typed.push({
        column: column.name,
        kind,
        op: "is",
        negate: condition.negate,
        values: [],
        is: word,
        pattern: undefined
      })
      continue
    }
    if (condition.op === "like" || condition.op === "ilike") {
      if (kind !== "text") return fail(`\`${condition.op}\` needs a text column (column ${column.name})`)
      const pattern = likeToRegExp(condition.values[0]!, condition.op === "ilike")
      typed.push({
        column: column.name,
        kind,
        op: condition.op,
        negate: condition.negate,
        values: [],
        is: undefined,
        pattern
      })
      continue
    }
    // Text order depends on the database collation, which the gateway cannot reproduce exactly.
    if ((kind === "bool" || kind === "uuid" || kind === "text") && ["lt", "lte", "gt", "gte"].includes(condition.op)) {
      return fail(
        `\`${condition.op}\` is not supported on ${column.type} columns by this gateway (column ${column.name})`
      )
    }
    const values: Array<Comparable> = []
    for (const literal of condition.values) {
      const value = toComparable(kind, literal)
      if (value === undefined) return fail(`invalid input value "${literal}" for ${column.type} column ${column.name}`)
      values.push(value)
    }
    typed.push({
      column: column.name,
      kind,
      op: condition.op,
      negate: condition.negate,
      values,
      is: undefined,
      pattern: undefined
    })
  }
  return Result.succeed(typed)
}

// ---- evaluation ------------------------------------------------------------------------------

/** Three-valued result: true, false, or undefined for SQL's unknown. */
const evaluate = (condition: TypedCondition, row: Readonly<Record<string, unknown>>): boolean | undefined => {
  if (!Object.hasOwn(row, condition.column)) return undefined
  const raw = row[condition.column]
  if (condition.op === "is") {
    switch (condition.is) {
      case "null":
        return raw === null
      case "unknown":
        return raw === null
      default: {
        const value = toComparable("bool", raw)
        return value === undefined ? false : value === (condition.is === "true")
      }
    }
  }
  if (condition.op === "isdistinct") {
    const value = raw === null ? undefined : toComparable(condition.kind, raw)
    const literal = condition.values[0]
    return value === undefined ? true : value !== literal
  }
  if (raw === null) return undefined
  if (condition.pattern !== undefined) return condition.pattern.test(typeof raw === "string" ? raw : String(raw))
  const value = toComparable(condition.kind, raw)
  if (value === undefined) return undefined
  const literal = condition.values[0]!
  switch (condition.op) {
    case "eq":
      return value === literal
    case "neq":
      return value !== literal
    case "lt":
      return value < literal
    case "lte":
      return value <= literal
    case "gt":
      return value > literal
    case "gte":
      return value >= literal
    case "in":
      return condition.values.includes(value)
    default:
      return undefined
  }
}

/** Whether `row` satisfies every condition. A missing row or column, or an unknown result, does not match. */
export const matches = (filter: TypedFilter, row: Readonly<Record<string, unknown>> | undefined): boolean => {
  if (row === undefined) return false
  for (const condition of filter) {
    const result = evaluate(condition, row)
    if (result === undefined) return false
    if (result === condition.negate) return false
  }
  return true
}

/**
 * Postgres values from their text form to JSON-ready values, the way Supabase sends them (it casts rows
 * to jsonb): integers, floats and numerics become numbers (int8/numeric beyond 2^53 stay strings), bool a
 * boolean, json/jsonb parsed JSON, arrays JSON arrays of their element rule, domains their base type's
 * rule, SQL NULL null, and everything else, timestamps included, the text Postgres prints in a UTC/ISO
 * session ("2026-01-01 12:00:00.123+00").
 *
 * Pure: the catalog fills a `Types` registry from `pg_type`, and the stream decodes tuples with it. A new
 * value type is one entry in `scalars` (by `pg_type.typname`); its arrays and domains follow by themselves.
 */
import type { Column } from "./ChangeEvent.ts"

/** Turns one value's text form into its JSON value. */
export type Convert = (text: string) => unknown

export const keepText: Convert = (text) => text

const integer: Convert = (text) => {
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : text
}

const decimal: Convert = (text) => {
  const n = Number(text)
  return Number.isFinite(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER ? n : text
}

// NaN and ±Infinity have no JSON number.
const float: Convert = (text) => {
  const n = Number(text)
  return Number.isFinite(n) ? n : text
}

// A Map: type names come from the catalog, and a type may be named `constructor` or `__proto__`.
/** The base types that are not kept as text, by `pg_type.typname`. */
export const scalars: ReadonlyMap<string, Convert> = new Map<string, Convert>([
  ["int2", integer],
  ["int4", integer],
  ["int8", integer],
  ["oid", integer],
  ["float4", float],
  ["float8", float],
  ["numeric", decimal],
  ["bool", (text) => text === "t"],
  ["json", (text) => JSON.parse(text)],
  ["jsonb", (text) => JSON.parse(text)]
])

/**
 * Parses array_out's text form: `{1,2}`, `{{a,b},{c,NULL}}`, `[0:1]={x,y}`, elements quoted with `"` and
 * backslash escapes when they contain delimiters, braces, quotes, spaces or spell NULL.
 */
export const parseArray = (text: string, delimiter: string, element: Convert): unknown => {
  let i = text.startsWith("[") ? text.indexOf("=") + 1 : 0
  const parse = (): Array<unknown> => {
    const out: Array<unknown> = []
    i++ // "{"
    if (text.charAt(i) === "}") {
      i++
      return out
    }
    while (i < text.length) {
      const c = text.charAt(i)
      if (c === "{") {
        out.push(parse())
      } else if (c === '"') {
        let value = ""
        i++
        while (i < text.length && text.charAt(i) !== '"') {
          if (text.charAt(i) === "\\") i++
          value += text.charAt(i)
          i++
        }
        i++
        out.push(element(value))
      } else {
        let end = i
        while (end < text.length && text.charAt(end) !== delimiter && text.charAt(end) !== "}") end++
        const raw = text.slice(i, end)
        i = end
        // array_out quotes the string "NULL", so an unquoted NULL is SQL null.
        out.push(raw.toUpperCase() === "NULL" ? null : element(raw))
      }
      if (text.charAt(i) === delimiter) {
        i++
      } else {
        i++ // "}"
        return out
      }
    }
    return out
  }
  return parse()
}

/** One `pg_type` row. */
export interface TypeInfo {
  readonly name: string
  readonly category: string
  /** Element type of an array type, else 0. */
  readonly elem: number
  /** Base type of a domain, else 0. */
  readonly base: number
  readonly delimiter: string
}

/** What a type the catalog does not know reads as: text. */
export const unknownType: TypeInfo = { name: "unknown", category: "X", elem: 0, base: 0, delimiter: "," }

/** Type names and converters by OID, resolved once per OID. */
export class Types {
  readonly #types = new Map<number, TypeInfo>()
  readonly #converters = new Map<number, Convert>()

  /** The OIDs among `oids` (and never 0) that are not registered yet. */
  missing(oids: Iterable<number>): Array<number> {
    return [...new Set(oids)].filter((oid) => oid !== 0 && !this.#types.has(oid))
  }

  has(oid: number): boolean {
    return this.#types.has(oid)
  }

  add(oid: number, info: TypeInfo): void {
    this.#types.set(oid, info)
  }

  name(oid: number): string {
    return this.#types.get(oid)?.name ?? "unknown"
  }

  /** The converter of a type: a domain's base type's, an array's element rule, a scalar's, else text. */
  converter(oid: number): Convert {
    const cached = this.#converters.get(oid)
    if (cached !== undefined) return cached
    const info = this.#types.get(oid)
    let convert: Convert = keepText
    if (info !== undefined && info.base !== 0) {
      convert = this.converter(info.base)
    } else if (info !== undefined && info.category === "A" && info.elem !== 0) {
      const element = this.converter(info.elem)
      const delimiter = this.#types.get(info.elem)?.delimiter ?? ","
      // int2vector and oidvector print space-separated lists without braces: keep those as text.
      convert = (text) => text.startsWith("{") || text.startsWith("[") ? parseArray(text, delimiter, element) : text
    } else if (info !== undefined) {
      convert = scalars.get(info.name) ?? keepText
    }
    this.#converters.set(oid, convert)
    return convert
  }
}

/** A tuple as pgoutput decodes it: column name to text form, null, or absent (an unchanged TOASTed value). */
export type Tuple = Readonly<Record<string, unknown>>

/**
 * A row image as a record of typed values, one converter per column. A column absent from `tuple` (an
 * unchanged TOASTed value) is taken from `fallback` (the old image, with FULL identity or the key) when it
 * has it, and left out otherwise.
 */
export const toRecord = (
  columns: ReadonlyArray<Column>,
  converts: ReadonlyArray<Convert>,
  tuple: Tuple | null,
  fallback: Tuple | null
): Record<string, unknown> | undefined => {
  if (tuple === null) return undefined
  // Null prototype: column names are the database's strings, and `__proto__` is a valid column name.
  const out: Record<string, unknown> = Object.create(null)
  for (let i = 0; i < columns.length; i++) {
    const name = columns[i]!.name
    let raw = tuple[name]
    if (raw === undefined && fallback !== null) raw = fallback[name]
    if (raw === undefined) continue
    out[name] = raw === null ? null : typeof raw === "string" ? converts[i]!(raw) : raw
  }
  return out
}

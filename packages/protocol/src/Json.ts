/**
 * Limits on JSON that a client sends. The depth check runs before `JSON.parse`: V8 parses deep
 * nesting fine, but `JSON.stringify` and every recursive walk after it overflow the stack, so a
 * text nested deeper than `MAX_DEPTH` is refused unparsed, on the REST endpoints and the socket alike.
 */

/** Deepest nesting of objects and arrays accepted in a client's JSON. */
export const MAX_DEPTH = 64

/**
 * Whether a JSON text nests objects/arrays deeper than `max`, counted without parsing (brackets
 * inside strings skipped), stopping as soon as `max` is passed. Linear, no recursion. Works on
 * UTF-8 bytes and on strings alike (every character it looks at is ASCII).
 */
export const nestedDeeperThan = (text: string | Uint8Array, max: number): boolean => {
  let depth = 0
  let inString = false
  const bytes = typeof text === "string" ? undefined : text
  const length = text.length
  for (let i = 0; i < length; i++) {
    const c = bytes === undefined ? (text as string).charCodeAt(i) : bytes[i]!
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

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
 *
 * It runs on every text frame before anything else, so a string is jumped over with a native `indexOf` for its
 * closing quote instead of being walked character by character: a 2.9 MB broadcast whose bulk is one string costs
 * microseconds, not the ~19 ms of a character loop that held every other socket's deliveries meanwhile. A quote is a
 * closing one when an even run of backslashes precedes it; each backslash is counted once, so this stays linear on
 * hostile input too. The string and byte scans are two functions of one shape on purpose: a single loop reading both
 * kinds is polymorphic, and this runs on every frame.
 */
export const nestedDeeperThan = (text: string | Uint8Array, max: number): boolean =>
  typeof text === "string" ? stringDeeperThan(text, max) : bytesDeeperThan(text, max)

const QUOTE = 0x22
const BACKSLASH = 0x5c

const stringDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  const length = text.length
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      let close = i
      do {
        close = text.indexOf('"', close + 1)
        // Unterminated: nothing after it counts (the parser refuses the text).
        if (close < 0) return false
      } while (escapedAt(text, close))
      i = close
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

/** Whether the quote at `at` is escaped: an odd run of backslashes before it. */
const escapedAt = (text: string, at: number): boolean => {
  let backslashes = 0
  for (let k = at - 1; k >= 0 && text.charCodeAt(k) === BACKSLASH; k--) backslashes++
  return backslashes % 2 === 1
}

const bytesDeeperThan = (bytes: Uint8Array, max: number): boolean => {
  let depth = 0
  const length = bytes.length
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!
    if (c === QUOTE) {
      let close = i
      do {
        close = bytes.indexOf(QUOTE, close + 1)
        if (close < 0) return false
      } while (escapedByteAt(bytes, close))
      i = close
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

const escapedByteAt = (bytes: Uint8Array, at: number): boolean => {
  let backslashes = 0
  for (let k = at - 1; k >= 0 && bytes[k] === BACKSLASH; k--) backslashes++
  return backslashes % 2 === 1
}

const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d

/** The index just past the JSON string, number or null that starts at `at` (the text is known to be valid JSON). */
const afterPrimitive = (text: string, at: number): number => {
  if (text.charCodeAt(at) === QUOTE) {
    let close = at
    do close = text.indexOf('"', close + 1)
    while (escapedAt(text, close))
    return close + 1
  }
  let end = at
  while (
    end < text.length && text.charCodeAt(end) !== 0x2c && text.charCodeAt(end) !== 0x5d &&
    !isJsonSpace(text.charCodeAt(end))
  ) {
    end++
  }
  return end
}

/**
 * The text of the last element of a JSON array whose other elements are strings, numbers or null: the payload of a
 * v2 frame `[join_ref, ref, topic, event, payload]` as the client wrote it, without its surrounding spaces.
 *
 * Only for a text that `JSON.parse` has accepted as exactly such an array (the caller checks): then the slice is valid
 * JSON that parses to the same value, and a large broadcast can go out without a `JSON.stringify` of its payload (a
 * 2.9 MB payload: ~8 ms of the event loop). Undefined when the shape is not what it expects.
 */
export const lastElementText = (text: string, leading: number): string | undefined => {
  let at = 0
  while (isJsonSpace(text.charCodeAt(at))) at++
  if (text.charCodeAt(at) !== 0x5b) return undefined
  at++
  for (let element = 0; element < leading; element++) {
    while (isJsonSpace(text.charCodeAt(at))) at++
    at = afterPrimitive(text, at)
    while (isJsonSpace(text.charCodeAt(at))) at++
    if (text.charCodeAt(at) !== 0x2c) return undefined
    at++
  }
  const close = text.lastIndexOf("]")
  if (close < at) return undefined
  let start = at
  let end = close
  while (start < end && isJsonSpace(text.charCodeAt(start))) start++
  while (end > start && isJsonSpace(text.charCodeAt(end - 1))) end--
  return text.slice(start, end)
}

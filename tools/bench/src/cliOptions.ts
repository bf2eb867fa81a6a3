/** Command-line values the benches share the reading of. */

/**
 * `--name` from `parseArgs`' values as a number of at least `min` (and whole when `whole`), or an error that names the
 * flag and what it got.
 */
export const numberOption = (
  values: Readonly<Record<string, unknown>>,
  name: string,
  min: number,
  whole = false
): number => {
  const raw = values[name]
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min || (whole && !Number.isInteger(n))) {
    throw new Error(`--${name} must be a ${whole ? "whole " : ""}number >= ${min}, got "${String(raw)}"`)
  }
  return n
}

/**
 * Log sequence numbers: positions in Postgres' write-ahead log, 64-bit, printed as two hexadecimal 32-bit
 * halves ("16/B374D848"). Arithmetic and comparison run on the `bigint`, so the low word carries into the
 * high word like any other number; only parsing and printing know about the halves.
 */

/** A position in the WAL. */
export type Lsn = bigint

export const zero: Lsn = 0n

/** Reads Postgres' spelling ("0/16B3748"), either half padded or not. A missing half reads as 0. */
export const parse = (text: string): Lsn => {
  const [high = "0", low = "0"] = text.split("/")
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`)
}

/** Postgres' spelling: upper case, halves unpadded ("0/16B3748"). */
export const format = (lsn: Lsn): string =>
  `${(lsn >> 32n).toString(16)}/${(lsn & 0xffffffffn).toString(16)}`.toUpperCase()

/** Re-spells an LSN the way Postgres prints it; the pgoutput decoder pads each half to eight digits. */
export const normalize = (text: string): string => format(parse(text))

/** `lsn` moved by `bytes` (negative moves back). */
export const add = (lsn: Lsn, bytes: bigint | number): Lsn => lsn + BigInt(bytes)

export const compare = (a: Lsn, b: Lsn): -1 | 0 | 1 => a < b ? -1 : a > b ? 1 : 0

export const max = (a: Lsn, b: Lsn): Lsn => a > b ? a : b

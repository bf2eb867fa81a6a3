/** Number formatting for the markdown report; missing values render as an em dash. */

const missing = (n: number | undefined): n is undefined => n === undefined || !Number.isFinite(n)

export const int = (n: number | undefined): string => (missing(n) ? "—" : Math.round(n).toLocaleString("en-US"))

export const fixed = (n: number | undefined, digits = 1): string =>
  missing(n) ? "—" : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

export const mib = (kib: number | undefined): string => (missing(kib) ? "—" : fixed(kib / 1024, 1))

/** `a / b` as `1.23×`, or an em dash when either side is missing or `b` is zero. */
export const ratio = (a: number | undefined, b: number | undefined): string =>
  missing(a) || missing(b) || b === 0 ? "—" : `${fixed(a / b, 2)}×`

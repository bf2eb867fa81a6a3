/**
 * Tokens an attacker (and the victims) present: Supabase-shaped HS256 JWTs signed with jose, plus the hostile ones —
 * forged (wrong secret), expired, not yet valid (`nbf`), `alg: none`, wrong issuer or audience.
 */
import { SignJWT } from "jose"

export const JWT_SECRET = "attack-suite-secret-with-at-least-32-bytes-of-entropy"
export const JWT_ISSUER = "https://auth.wedsync.test/auth/v1"
export const JWT_AUDIENCE = "authenticated"

export interface TokenOptions {
  readonly role?: string
  readonly sub?: string
  readonly weddingIds?: ReadonlyArray<string>
  /** Seconds from now; negative: already expired. Default 3600. */
  readonly expiresIn?: number
  /** Seconds from now for `nbf`; unset: no `nbf`. */
  readonly notBefore?: number
  readonly issuer?: string
  readonly audience?: string
  readonly secret?: string
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

export const sign = (options: TokenOptions = {}): Promise<string> => {
  const now = nowSeconds()
  const claims: Record<string, unknown> = { role: options.role ?? "authenticated" }
  if (options.weddingIds !== undefined) claims["app_metadata"] = { wedding_ids: options.weddingIds }
  if (options.notBefore !== undefined) claims["nbf"] = now + options.notBefore
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresIn ?? 3600))
  if (options.sub !== undefined) jwt.setSubject(options.sub)
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer)
  if (options.audience !== undefined) jwt.setAudience(options.audience)
  return jwt.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET))
}

/** The project's anon key as Supabase issues it (ten years). */
export const anonKey = (options: Omit<TokenOptions, "role" | "expiresIn"> = {}): Promise<string> =>
  sign({ ...options, role: "anon", expiresIn: 10 * 365 * 24 * 3600 })

export const serviceRoleKey = (options: Omit<TokenOptions, "role" | "expiresIn"> = {}): Promise<string> =>
  sign({ ...options, role: "service_role", expiresIn: 10 * 365 * 24 * 3600 })

export const userToken = (
  sub: string,
  weddingIds: ReadonlyArray<string>,
  options: TokenOptions = {}
): Promise<string> => sign({ ...options, sub, weddingIds, role: "authenticated" })

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url")

/** An unsigned token (`alg: none`) claiming service_role: must never be accepted. */
export const algNone = (): string =>
  `${b64url({ alg: "none", typ: "JWT" })}.${
    b64url({ role: "service_role", sub: "attacker", exp: nowSeconds() + 3600 })
  }.`

/** A service_role token signed with a secret the gateway does not know. */
export const forged = (): Promise<string> =>
  sign({ role: "service_role", sub: "attacker", secret: "attacker-guessed-secret-at-least-32-bytes-long!" })

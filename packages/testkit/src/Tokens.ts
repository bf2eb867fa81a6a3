/**
 * Test JWTs shaped like Supabase's: HS256 with the project's JWT secret, `role`, `sub`, `exp` and any extra claims.
 *
 * For driving the gateway's token checks (valid, expired, wrong secret, missing claims) from tests. Not a verifier.
 */
import { SignJWT } from "jose"

/** Claims and lifetime of a test token. */
export interface TokenOptions {
  /** Seconds until `exp`, from now; negative gives an already expired token. Default 3600. */
  readonly expiresInSeconds?: number | undefined
  /** `role` claim. Default "authenticated". */
  readonly role?: string | undefined
  /** `sub` claim. Default "test-user". */
  readonly sub?: string | undefined
  /** Any other claims. */
  readonly claims?: Record<string, unknown> | undefined
  /** Omit `exp` entirely. */
  readonly noExpiry?: boolean | undefined
}

/** Signs an HS256 JWT with `secret`. */
export const signToken = (secret: string, options: TokenOptions = {}): Promise<string> => {
  const now = Math.floor(Date.now() / 1000)
  const jwt = new SignJWT({ role: options.role ?? "authenticated", ...options.claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.sub ?? "test-user")
    .setIssuedAt(now)
  if (options.noExpiry !== true) jwt.setExpirationTime(now + (options.expiresInSeconds ?? 3600))
  return jwt.sign(new TextEncoder().encode(secret))
}

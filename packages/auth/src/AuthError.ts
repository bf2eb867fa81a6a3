/**
 * The failures of token verification and channel authorization, as one wrapper `AuthError` with a `reason`.
 *
 * Every reason's `_tag` is the Supabase Realtime error code and its `message` is Supabase's text, word for
 * word, so `ErrorReply.reasonText` (connection) produces exactly the `reason` string supabase-js shows in `CHANNEL_ERROR`
 * (`"InvalidJWTToken: Token has expired 5 seconds ago"`). This module only describes failures: mapping them to
 * a `phx_reply`, an HTTP status or a close code is `connection`'s job.
 */
import { Schema } from "effect"

/**
 * The token is expired, lacks `role`/`exp`, or carries an unusable `exp`. Build it with one of the static
 * constructors so the message stays Supabase's.
 */
export class InvalidJWTToken extends Schema.TaggedError<InvalidJWTToken>()("InvalidJWTToken", {
  message: Schema.String
}) {
  /** `Token has expired <N> seconds ago`; `secondsAgo` is clamped to a non-negative integer. */
  static expired(secondsAgo: number): InvalidJWTToken {
    const n = Number.isFinite(secondsAgo) ? Math.max(0, Math.floor(secondsAgo)) : 0
    return new InvalidJWTToken({ message: `Token has expired ${n} seconds ago` })
  }

  /** The token verified but has no string `role` or no `exp`. */
  static missingClaims(): InvalidJWTToken {
    return new InvalidJWTToken({ message: "Fields `role` and `exp` are required in JWT" })
  }

  /** `exp` is present but is not a finite number. */
  static invalidExpiration(): InvalidJWTToken {
    return new InvalidJWTToken({ message: "Token expiration time is invalid" })
  }

  /** `nbf` is in the future (or not a finite number). */
  static notYetValid(): InvalidJWTToken {
    return new InvalidJWTToken({ message: "Token is not valid yet (nbf)" })
  }

  /** `JWT_ISSUER` is set and the token's `iss` is another one, or missing. */
  static wrongIssuer(): InvalidJWTToken {
    return new InvalidJWTToken({ message: "Token issuer (iss) is not accepted" })
  }

  /** `JWT_AUDIENCE` is set and the token's `aud` does not name it. */
  static wrongAudience(): InvalidJWTToken {
    return new InvalidJWTToken({ message: "Token audience (aud) is not accepted" })
  }
}

/** The value is not a compact JWS whose header and payload are JSON objects (and not an `sb_` key either). */
export class MalformedJWT extends Schema.TaggedError<MalformedJWT>()("MalformedJWT", {}) {
  override readonly message = "The token provided is not a valid JWT"
}

/**
 * The signature does not match the key. Also used for an `sb_secret_…` (or listed-only `sb_publishable_…`) key
 * that is not configured: to a client both mean "this credential is not ours".
 */
export class JwtSignatureError extends Schema.TaggedError<JwtSignatureError>()("JwtSignatureError", {}) {
  override readonly message = "Failed to validate JWT signature"
}

/** No key can check this token: unknown `kid`, unsupported `alg`, or the JWKS could not be fetched. */
export class JwtSignerError extends Schema.TaggedError<JwtSignerError>()("JwtSignerError", {
  kid: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const hint = "check your JWT secret or JWKS configuration"
    // JSON.stringify stands in for Elixir's `inspect(kid)`: the kid is quoted and escaped.
    return this.kid === undefined
      ? `Failed to generate JWT signer, ${hint}`
      : `Failed to generate JWT signer for key ID (kid) ${JSON.stringify(this.kid)}, ${hint}`
  }
}

/** A private channel the principal may not read. `subtopic` is the topic without its `realtime:` prefix. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  subtopic: Schema.String
}) {
  override get message(): string {
    return `You do not have permissions to read from this Channel topic: ${this.subtopic}`
  }
}

/** The upgrade carried neither an `apikey` query parameter nor an `x-api-key` header (or it was blank). */
export class ApiKeyMissing extends Schema.TaggedError<ApiKeyMissing>()("ApiKeyMissing", {}) {
  override readonly message = "API key is missing"
}

/** Schema of every reason, for decoding logged errors. */
export const AuthErrorReason = Schema.Union([
  InvalidJWTToken,
  MalformedJWT,
  JwtSignatureError,
  JwtSignerError,
  Unauthorized,
  ApiKeyMissing
])

/** Every reason an `AuthError` can carry. */
export type AuthErrorReason =
  | InvalidJWTToken
  | MalformedJWT
  | JwtSignatureError
  | JwtSignerError
  | Unauthorized
  | ApiKeyMissing

/** The Supabase error codes this package can produce (the reasons' tags). */
type AuthErrorCode = AuthErrorReason["_tag"]

/**
 * The one error type of `TokenVerifier` and `ChannelPolicy`. Handle a single reason with
 * `Effect.catchReason("AuthError", "InvalidJWTToken", f)`.
 */
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", {
  reason: AuthErrorReason
}) {
  /** The Supabase error code, e.g. `"MalformedJWT"`. */
  get code(): AuthErrorCode {
    return this.reason._tag
  }

  override get message(): string {
    return this.reason.message
  }
}

/** Wraps a reason; shorter than `new AuthError({ reason })` at call sites. */
export const make = (reason: AuthErrorReason): AuthError => new AuthError({ reason })

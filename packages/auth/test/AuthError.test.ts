import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { AuthError } from "../src/index.ts"

// Supabase's texts (realtime_channel.ex, user_socket.ex), character for character, as `<code>: <message>` (the
// connection package's `ErrorReply.reasonText` puts them in that form on the wire).
const cases: ReadonlyArray<readonly [AuthError.AuthErrorReason, string]> = [
  [AuthError.InvalidJWTToken.expired(5), "InvalidJWTToken: Token has expired 5 seconds ago"],
  [AuthError.InvalidJWTToken.expired(-3), "InvalidJWTToken: Token has expired 0 seconds ago"],
  [AuthError.InvalidJWTToken.missingClaims(), "InvalidJWTToken: Fields `role` and `exp` are required in JWT"],
  [AuthError.InvalidJWTToken.invalidExpiration(), "InvalidJWTToken: Token expiration time is invalid"],
  [new AuthError.MalformedJWT(), "MalformedJWT: The token provided is not a valid JWT"],
  [new AuthError.JwtSignatureError(), "JwtSignatureError: Failed to validate JWT signature"],
  [
    new AuthError.JwtSignerError({ kid: "key-1" }),
    'JwtSignerError: Failed to generate JWT signer for key ID (kid) "key-1", check your JWT secret or JWKS configuration'
  ],
  [
    new AuthError.JwtSignerError({}),
    "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
  ],
  [
    new AuthError.Unauthorized({ subtopic: "wedding:42" }),
    "Unauthorized: You do not have permissions to read from this Channel topic: wedding:42"
  ],
  [new AuthError.ApiKeyMissing(), "ApiKeyMissing: API key is missing"]
]

describe("AuthError", () => {
  for (const [reason, wire] of cases) {
    it(`${reason._tag} reads ${JSON.stringify(wire)}`, () => {
      const error = AuthError.make(reason)
      assert.strictEqual(error.code, reason._tag)
      assert.strictEqual(error.message, reason.message)
      assert.strictEqual(`${error.code}: ${error.message}`, wire)
    })
  }

  it("is a yieldable Error whose reasons decode back from their encoded form", () => {
    const error = AuthError.make(new AuthError.Unauthorized({ subtopic: "supplier:9" }))
    assert.instanceOf(error, Error)
    const roundTrip = Schema.decodeUnknownSync(AuthError.AuthError)(Schema.encodeSync(AuthError.AuthError)(error))
    assert.deepStrictEqual([roundTrip.code, roundTrip.message], [error.code, error.message])
  })

  it.effect("reasons are reachable with Effect.catchReason", () =>
    Effect.gen(function*() {
      const failing: Effect.Effect<string, AuthError.AuthError> = Effect.fail(
        AuthError.make(AuthError.InvalidJWTToken.expired(9))
      )
      const handled = yield* failing.pipe(
        Effect.catchReason("AuthError", "InvalidJWTToken", (reason) => Effect.succeed(`refresh: ${reason.message}`))
      )
      assert.strictEqual(handled, "refresh: Token has expired 9 seconds ago")
    }))
})

import { assert, describe, it } from "@effect/vitest"
import { AuthError } from "@wedsync/auth"
import * as ConnectionError from "../src/ConnectionError.ts"
import { CloseCode, closeCodeOf, joinReason, upgradeRefusal } from "../src/ErrorReply.ts"
import { authReasons, connectionReasons } from "./Reasons.ts"


describe("ErrorReply", () => {
  it("the lists above cover every reason of both error types", () => {
    const connectionTags = ConnectionError.ConnectionError.fields.reason.members.map((m) => m.identifier)
    assert.deepStrictEqual(connectionReasons.map((r) => r._tag), connectionTags)
    const authTags = AuthError.AuthErrorReason.members.map((m) => m.identifier)
    assert.deepStrictEqual(authReasons.map((r) => r._tag), authTags)
  })

  describe("joinReason is `<Code>: <message>`, Supabase's join error text", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [joinReason(ConnectionError.topicNameRequired()), "TopicNameRequired: You must provide a topic name"],
      [joinReason(ConnectionError.tooManyChannels()), "ChannelRateLimitReached: Too many channels"],
      [joinReason(ConnectionError.tooManyJoins()), "ClientJoinRateLimitReached: Too many joins per second"],
      [joinReason(ConnectionError.tooManyConnections("")), "ConnectionRateLimitReached: Too many connected users"],
      [joinReason(ConnectionError.restarting()), "RealtimeRestarting: Realtime is restarting, please standby"],
      [joinReason(AuthError.InvalidJWTToken.expired(5)), "InvalidJWTToken: Token has expired 5 seconds ago"],
      [joinReason(AuthError.InvalidJWTToken.missingClaims()), "InvalidJWTToken: Fields `role` and `exp` are required in JWT"],
      [joinReason(AuthError.InvalidJWTToken.invalidExpiration()), "InvalidJWTToken: Token expiration time is invalid"],
      [joinReason(new AuthError.MalformedJWT()), "MalformedJWT: The token provided is not a valid JWT"],
      [joinReason(new AuthError.JwtSignatureError()), "JwtSignatureError: Failed to validate JWT signature"],
      [
        joinReason(new AuthError.JwtSignerError({ kid: "key-1" })),
        "JwtSignerError: Failed to generate JWT signer for key ID (kid) \"key-1\", check your JWT secret or JWKS configuration"
      ],
      [
        joinReason(new AuthError.JwtSignerError({})),
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
      ],
      [
        joinReason(new AuthError.Unauthorized({ subtopic: "wedding:42" })),
        "Unauthorized: You do not have permissions to read from this Channel topic: wedding:42"
      ]
    ]
    for (const [actual, text] of cases) it(text, () => assert.strictEqual(actual, text))
  })

  describe("upgradeRefusal", () => {
    it("connection caps and join rate are 429 with Supabase's {error} body", () => {
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.tooManyConnections("")), {
        status: 429,
        body: "{\"error\":\"Too many connected users\"}"
      })
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.tooManyConnections(" from this address")), {
        status: 429,
        body: "{\"error\":\"Too many connected users from this address\"}"
      })
      assert.strictEqual(upgradeRefusal(ConnectionError.tooManyJoins()).status, 429)
    })

    it("a draining node is 503", () => {
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.restarting()), {
        status: 503,
        body: "{\"error\":\"Realtime is restarting, please standby\"}"
      })
    })

    it("every auth failure is 401 with the reason's message, an expired token without its age", () => {
      for (const reason of authReasons) {
        const refusal = upgradeRefusal(reason)
        assert.strictEqual(refusal.status, 401, reason._tag)
        const expected = reason.message.startsWith("Token has expired") ? "Token has expired" : reason.message
        assert.deepStrictEqual(JSON.parse(refusal.body), { error: expected })
      }
      assert.ok(authReasons.some((r) => r.message.startsWith("Token has expired ")), "the fixture covers expiry")
      assert.strictEqual(upgradeRefusal(new AuthError.ApiKeyMissing()).body, "{\"error\":\"API key is missing\"}")
    })
  })

  describe("close codes", () => {
    it("are RFC 6455's for normal, internal error and restart, and 40xx for ours", () => {
      assert.deepStrictEqual(CloseCode, {
        normal: 1000,
        internalError: 1011,
        serviceRestart: 1012,
        heartbeatTimeout: 4000,
        payloadTooDeep: 4003,
        slowConsumer: 4008,
        tooManyJoins: 4029,
        tooManyFrames: 4030
      })
    })

    it("closeCodeOf maps the reasons that close a socket", () => {
      const codes = Object.fromEntries(connectionReasons.map((r) => [r._tag, closeCodeOf(r)]))
      assert.deepStrictEqual(codes, {
        TopicNameRequired: 1000,
        UnmatchedTopic: 1000,
        ChannelRateLimitReached: 1000,
        ClientJoinRateLimitReached: 4029,
        ConnectionRateLimitReached: 1000,
        RealtimeRestarting: 1012,
        OutboxOverflow: 4008,
        HeartbeatTimeout: 4000,
        PayloadTooLarge: 1000,
        EventRateLimitReached: 1000,
        PresenceRateLimitReached: 1000,
        TooManyPresenceKeys: 1000,
        PresenceStateTooLarge: 1000,
        InvalidJoinPayload: 1000,
        BindingLimitReached: 1000,
        FrameRateLimitReached: 4030,
        PayloadTooDeep: 4003
      })
    })
  })

  it("ConnectionError's message is its reason's", () => {
    const error = new ConnectionError.ConnectionError({ reason: ConnectionError.tooManyChannels() })
    assert.strictEqual(error.message, "Too many channels")
    assert.strictEqual(error._tag, "ConnectionError")
  })
})

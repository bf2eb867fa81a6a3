import { assert, describe, it } from "@effect/vitest"
import { AuthError } from "@wedsync/auth"
import * as ConnectionError from "../src/ConnectionError.ts"
import { ChangeFeed } from "@wedsync/hub"
import { Reply } from "@wedsync/protocol"
import * as RestError from "../src/RestError.ts"
import {
  catalogue,
  CloseCode,
  closeCodeOf,
  errorPayload,
  reasonText,
  restRefusal,
  upgradeRefusal,
  type WireReason
} from "../src/ErrorReply.ts"

const ofArea = (tags: ReadonlyArray<string>) => catalogue.filter((reason) => tags.includes(reason._tag))
const connectionTags = ConnectionError.ConnectionError.fields.reason.members.map((m) => m.identifier)
const authTags = AuthError.AuthErrorReason.members.map((m) => m.identifier)
const connectionReasons = ofArea(connectionTags)
const authReasons = ofArea(authTags)

describe("ErrorReply", () => {
  it("the catalogue holds every reason of every area, each once", () => {
    const restTags = RestError.RestError.fields.reason.members.map((m) => m.identifier)
    const changesTags = [ChangeFeed.UnableToSubscribe, ChangeFeed.InvalidFilter].map((c) => new c({ message: "" })._tag)
    const every = [...connectionTags, ...authTags, ...restTags, ...changesTags]
    assert.deepStrictEqual([...catalogue.map((r) => r._tag)].sort(), [...every].sort())
  })

  describe("errorPayload: `<Code>: <message>`, except Phoenix's and Supabase's bare answers", () => {
    const payload = (reason: WireReason) => errorPayload(reason)
    it("a join error carries `<Code>: <message>`", () =>
      assert.deepStrictEqual(
        payload(ConnectionError.tooManyChannels()),
        Reply.error("ChannelRateLimitReached: Too many channels")
      ))
    it("an unmatched topic and a presence payload that is not a map are Phoenix's bare texts", () => {
      assert.deepStrictEqual(payload(ConnectionError.unmatchedTopic()), Reply.error("unmatched topic"))
      assert.deepStrictEqual(
        payload(ConnectionError.invalidPresencePayload()),
        Reply.error("Presence track payload must be a map")
      )
    })
    it("a payload over the limit is Supabase's raw payload_size_exceeded, an unknown presence event an empty error", () => {
      assert.deepStrictEqual(payload(ConnectionError.payloadTooLarge()), Reply.errorRaw("payload_size_exceeded"))
      assert.deepStrictEqual(payload(ConnectionError.unknownPresenceEvent()), Reply.errorRaw({}))
    })
  })

  describe("restRefusal: Supabase's broadcast API statuses with a {message} body", () => {
    const answer = (reason: WireReason) => {
      const { status, body } = restRefusal(reason)
      return [status, JSON.parse(body)] as const
    }
    it("maps each REST reason to its status", () => {
      assert.deepStrictEqual(answer(RestError.bodyTooLarge(10)), [413, {
        message: "Payload Too Large: Request body exceeds 10 bytes"
      }])
      assert.deepStrictEqual(answer(RestError.bodyUnreadable()), [400, { message: "Could not read the request body" }])
      assert.deepStrictEqual(answer(ConnectionError.payloadTooDeep(64)), [400, {
        message: "JSON is nested more than 64 levels deep"
      }])
      assert.deepStrictEqual(answer(RestError.invalidJson()), [422, { message: "Request body is not valid JSON" }])
      assert.deepStrictEqual(answer(ConnectionError.payloadTooLarge()), [422, {
        message: "Payload size exceeds tenant limit"
      }])
      assert.deepStrictEqual(answer(RestError.unsupportedMediaType()), [
        415,
        { error: "Unsupported Media Type. Use application/json or application/octet-stream" }
      ])
    })
    it("any token failure is 401 Unauthorized; a valid token that may not write a private topic is 403", () => {
      for (const reason of authReasons.filter((r) => r._tag !== "Unauthorized")) {
        assert.deepStrictEqual(answer(reason), [401, { message: "Unauthorized" }], reason._tag)
      }
      assert.deepStrictEqual(answer(new AuthError.Unauthorized({ subtopic: "wedding:1" })), [403, {
        message: "Unauthorized"
      }])
    })
  })

  describe("reasonText is `<Code>: <message>`, Supabase's join error text", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [reasonText(ConnectionError.topicNameRequired()), "TopicNameRequired: You must provide a topic name"],
      [reasonText(ConnectionError.tooManyChannels()), "ChannelRateLimitReached: Too many channels"],
      [reasonText(ConnectionError.tooManyJoins()), "ClientJoinRateLimitReached: Too many joins per second"],
      [reasonText(ConnectionError.tooManyConnections("")), "ConnectionRateLimitReached: Too many connected users"],
      [reasonText(ConnectionError.restarting()), "RealtimeRestarting: Realtime is restarting, please standby"],
      [reasonText(AuthError.InvalidJWTToken.expired(5)), "InvalidJWTToken: Token has expired 5 seconds ago"],
      [
        reasonText(AuthError.InvalidJWTToken.missingClaims()),
        "InvalidJWTToken: Fields `role` and `exp` are required in JWT"
      ],
      [reasonText(AuthError.InvalidJWTToken.invalidExpiration()), "InvalidJWTToken: Token expiration time is invalid"],
      [reasonText(new AuthError.MalformedJWT()), "MalformedJWT: The token provided is not a valid JWT"],
      [reasonText(new AuthError.JwtSignatureError()), "JwtSignatureError: Failed to validate JWT signature"],
      [
        reasonText(new AuthError.JwtSignerError({ kid: "key-1" })),
        'JwtSignerError: Failed to generate JWT signer for key ID (kid) "key-1", check your JWT secret or JWKS configuration'
      ],
      [
        reasonText(new AuthError.JwtSignerError({})),
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
      ],
      [
        reasonText(new AuthError.Unauthorized({ subtopic: "wedding:42" })),
        "Unauthorized: You do not have permissions to read from this Channel topic: wedding:42"
      ]
    ]
    for (const [actual, text] of cases) it(text, () => assert.strictEqual(actual, text))
  })

  describe("upgradeRefusal", () => {
    it("connection caps and join rate are 429 with Supabase's {error} body", () => {
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.tooManyConnections("")), {
        status: 429,
        body: '{"error":"Too many connected users"}'
      })
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.tooManyConnections(" from this address")), {
        status: 429,
        body: '{"error":"Too many connected users from this address"}'
      })
      assert.strictEqual(upgradeRefusal(ConnectionError.tooManyJoins()).status, 429)
    })

    it("a draining node is 503", () => {
      assert.deepStrictEqual(upgradeRefusal(ConnectionError.restarting()), {
        status: 503,
        body: '{"error":"Realtime is restarting, please standby"}'
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
      assert.strictEqual(upgradeRefusal(new AuthError.ApiKeyMissing()).body, '{"error":"API key is missing"}')
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
        PayloadTooDeep: 4003,
        InvalidPresencePayload: 1000,
        UnknownPresenceEvent: 1000,
        TrackPayloadTooLarge: 1000,
        TokenExpired: 1000,
        FieldTooLong: 1000,
        UnableToReplayMessages: 1000
      })
    })
  })

  it("ConnectionError's message is its reason's", () => {
    const error = new ConnectionError.ConnectionError({ reason: ConnectionError.tooManyChannels() })
    assert.strictEqual(error.message, "Too many channels")
    assert.strictEqual(error._tag, "ConnectionError")
  })
})

/** One instance of every failure reason, shared by the reply and catalogue tests. */
import { AuthError } from "@wedsync/auth"
import * as ConnectionError from "../src/ConnectionError.ts"

/** One instance of every connection reason, built as the code builds them where a builder exists. */
export const connectionReasons: ReadonlyArray<ConnectionError.Reason> = [
  ConnectionError.topicNameRequired(),
  new ConnectionError.UnmatchedTopic({ message: "unmatched topic" }),
  ConnectionError.tooManyChannels(),
  ConnectionError.tooManyJoins(),
  ConnectionError.tooManyConnections(""),
  ConnectionError.restarting(),
  ConnectionError.outboxOverflow(),
  ConnectionError.heartbeatTimeout(),
  new ConnectionError.PayloadTooLarge({ message: "payload_size_exceeded" }),
  ConnectionError.tooManyEvents(),
  ConnectionError.presenceRateLimited(),
  ConnectionError.tooManyPresenceKeys(10_000),
  ConnectionError.presenceChannelTooLarge(3_000_000),
  ConnectionError.unknownChangeEvent('"UPSERT"'),
  ConnectionError.tooManyBindings(100),
  ConnectionError.tooManyFrames(),
  ConnectionError.payloadTooDeep(64)
]

/** One instance of every auth reason. */
export const authReasons: ReadonlyArray<AuthError.AuthErrorReason> = [
  AuthError.InvalidJWTToken.expired(5),
  new AuthError.MalformedJWT(),
  new AuthError.JwtSignatureError(),
  new AuthError.JwtSignerError({ kid: "key-1" }),
  new AuthError.Unauthorized({ subtopic: "wedding:42" }),
  new AuthError.ApiKeyMissing()
]

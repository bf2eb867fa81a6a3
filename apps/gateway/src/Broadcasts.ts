/**
 * REST broadcast: `POST /api/broadcast` (batch, JSON messages) and
 * `POST /api/broadcast/:topic/events/:event` (one message, JSON or binary body), with Supabase's
 * statuses and bodies (spec §3.5). Both publish through the same hub as socket broadcasts, and broadcasts to private
 * topics go into the topic's history with an id of ours (`History.publish`; a batch message's own `id` is then
 * replaced: replay needs time-ordered ids).
 *
 * A request is authenticated from its headers before its body is read, and the body is read only up
 * to the REST body limit: a larger `Content-Length` is refused unread, and a chunked body stops
 * being read at the limit (413). JSON nested deeper than `MAX_JSON_DEPTH` is refused with 400
 * before it is parsed.
 */
import { NodeHttpServerRequest } from "@effect/platform-node"
import { AuthError, ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import {
  BroadcastRules,
  ConnectionConfig,
  ConnectionError,
  ErrorReply,
  RefusalLog,
  RestError
} from "@wedsync/connection"
import { History, Hub, Publication } from "@wedsync/hub"
import { Frame, Json, Serializer } from "@wedsync/protocol"
import { Data, Effect, Result, Schema } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { Readable } from "node:stream"
import { GatewayConfig, restBodyLimit } from "./GatewayConfig.ts"

const accepted = HttpServerResponse.empty({ status: 202 })

/** Deepest JSON nesting (objects and arrays) a REST body may have. */
/** The socket refuses the same depth (`Json.MAX_DEPTH`, packages/protocol). */
const MAX_JSON_DEPTH = Json.MAX_DEPTH

/** A refusal of this request, by reason: `ErrorReply` gives its status and body. */
class Refused extends Data.TaggedError("Refused")<{ readonly reason: ErrorReply.WireReason }> {}
const refuse = (reason: ErrorReply.WireReason) => Effect.fail(new Refused({ reason }))

/** Reads at most `limit` bytes; past it, stops reading (the 413 then closes the connection). */
const readLimited = (source: Readable, limit: number) =>
  Effect.callback<Buffer, RestError.RestError>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
      source.off("aborted", onError)
    }
    function onData(chunk: Buffer) {
      size += chunk.length
      if (size > limit) {
        cleanup()
        source.pause()
        return resume(Effect.fail(new RestError.RestError({ reason: RestError.bodyTooLarge(limit) })))
      }
      chunks.push(chunk)
    }
    function onEnd() {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    function onError() {
      cleanup()
      resume(Effect.fail(new RestError.RestError({ reason: RestError.bodyUnreadable() })))
    }
    source.on("data", onData)
    source.once("end", onEnd)
    source.once("error", onError)
    source.once("aborted", onError)
    return Effect.sync(cleanup)
  })

/** The request body, refused unread when `Content-Length` is over the limit, and cut off at the limit otherwise. */
const body = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const limit = restBodyLimit(yield* GatewayConfig, (yield* ConnectionConfig.ConnectionConfig).maxPayloadBytes)
  const declared = request.headers["content-length"]
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit) {
    return yield* new RestError.RestError({ reason: RestError.bodyTooLarge(limit) })
  }
  return yield* readLimited(NodeHttpServerRequest.toIncomingMessage(request) as Readable, limit)
})

/** The JSON value of a body; too deep is refused before parsing (`JSON.parse` would recurse through it). */
const parseJson = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    if (Json.nestedDeeperThan(bytes, MAX_JSON_DEPTH))
      return yield* refuse(ConnectionError.payloadTooDeep(MAX_JSON_DEPTH))
    const parsed = Result.try(() =>
      JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")) as unknown
    )
    return Result.isSuccess(parsed) ? parsed.success : yield* refuse(RestError.invalidJson())
  })

/**
 * A JSON object, checked without copying it: a decoder that rebuilt the payload would turn a `__proto__` key into
 * the copy's prototype and drop it.
 */
const JsonObject = Schema.declare(
  (u: unknown): u is object => typeof u === "object" && u !== null && !Array.isArray(u),
  { expected: "a JSON object" }
)

/** The batch body, as Supabase's broadcast API takes it. `private` may be a boolean or its string form. */
const BatchBody = Schema.Struct({
  messages: Schema.Array(Schema.Struct({
    topic: Schema.NonEmptyString,
    event: Schema.String,
    payload: JsonObject,
    private: Schema.optional(Schema.Union([Schema.Boolean, Schema.Literals(["true", "false"])])),
    id: Schema.optional(Schema.String)
  }))
})
const decodeBatch = Schema.decodeUnknownResult(BatchBody)

/** `Authorization: Bearer …` first, then the `apikey` header, as Supabase's REST endpoints. */
const principalOf = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const verifier = yield* TokenVerifier.TokenVerifier
  const bearer = request.headers["authorization"]?.match(/^Bearer\s+(.+)$/i)?.[1]
  const token = bearer ?? request.headers["apikey"]
  if (token === undefined || token === "")
    return yield* new AuthError.AuthError({ reason: new AuthError.ApiKeyMissing() })
  return yield* verifier.verify(token)
})

const mayWrite = (principal: Principal.Principal, subtopic: string, isPrivate: boolean) =>
  ChannelPolicy.ChannelPolicy.use((policy) => policy.authorizeJoin(principal, subtopic, isPrivate)).pipe(
    Effect.as(true),
    Effect.catchTag("AuthError", () => Effect.succeed(false))
  )

const batch = Effect.gen(function*() {
  const principal = yield* principalOf
  const hub = yield* Hub.Hub
  const history = yield* History.History
  const { maxPayloadBytes } = yield* ConnectionConfig.ConnectionConfig
  const decoded = decodeBatch(yield* parseJson(yield* body))
  if (Result.isFailure(decoded))
    return yield* refuse(RestError.invalidBody(decoded.failure.message.replace(/\s*\n\s*/g, " ")))
  const publications: Array<Publication.Publication> = []
  for (const m of decoded.success.messages) {
    const payloadJson = JSON.stringify(m.payload)
    const tooLarge = BroadcastRules.jsonPayloadSize(payloadJson, maxPayloadBytes)
    if (tooLarge !== undefined) return yield* refuse(tooLarge)
    const isPrivate = m.private === true || m.private === "true"
    // Private messages the sender may not write are skipped and still answered 202, as Supabase does.
    if (isPrivate && !(yield* mayWrite(principal, m.topic, true))) continue
    const meta = m.id === undefined || isPrivate ? undefined : JSON.stringify({ id: m.id })
    publications.push(
      Publication.json(
        `${Frame.TOPIC_PREFIX}${m.topic}`,
        isPrivate,
        "broadcast",
        Serializer.broadcastPayloadJson(m.event, payloadJson, meta)
      )
    )
  }
  for (const publication of publications) yield* History.publish(hub, history, publication)
  return accepted
})

const single = Effect.gen(function*() {
  const principal = yield* principalOf
  const request = yield* HttpServerRequest.HttpServerRequest
  const { topic, event } = yield* HttpRouter.params
  const hub = yield* Hub.Hub
  const history = yield* History.History
  const { maxPayloadBytes } = yield* ConnectionConfig.ConnectionConfig
  if (topic === undefined || topic === "" || event === undefined || event === "")
    return yield* refuse(RestError.topicAndEventRequired())
  const isPrivate = new URL(request.url, "http://gateway").searchParams.get("private") === "true"
  const contentType = (request.headers["content-type"] ?? "application/json").split(";")[0]!.trim().toLowerCase()
  if (contentType !== "application/json" && contentType !== "application/octet-stream")
    return yield* refuse(RestError.unsupportedMediaType())
  const payload: Uint8Array = yield* body
  const encoding: Frame.PayloadEncoding = contentType === "application/json" ? "json" : "binary"
  const tooLarge = BroadcastRules.payloadSize(payload.length, maxPayloadBytes)
  if (tooLarge !== undefined) return yield* refuse(tooLarge)
  if (encoding === "json") yield* parseJson(payload)
  if (isPrivate && !(yield* mayWrite(principal, topic, true)))
    return yield* refuse(new AuthError.Unauthorized({ subtopic: topic }))
  const publication = BroadcastRules.userBroadcast(
    `${Frame.TOPIC_PREFIX}${topic}`,
    isPrivate,
    event,
    encoding,
    payload,
    maxPayloadBytes
  )
  if (Result.isFailure(publication)) return yield* refuse(publication.failure)
  yield* History.publish(hub, history, publication.success)
  return accepted
})

/**
 * Every refusal is answered by `ErrorReply.restRefusal` and logged, rate-limited per reason (RefusalLog: no token, no
 * address, no user). A refusal made before the body was read closes the connection, so the rest is never read.
 */
const handle = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, Refused | RestError.RestError | AuthError.AuthError, R>
) =>
  effect.pipe(
    Effect.catch((error) => {
      const reason: ErrorReply.WireReason = error.reason
      const { status, body } = ErrorReply.restRefusal(reason)
      const unread = reason._tag === "BodyTooLarge" || error instanceof AuthError.AuthError
      const response = HttpServerResponse.text(body, {
        status,
        contentType: "application/json",
        headers: unread ? { connection: "close" } : {}
      })
      // Nesting is logged on one line with its text (the pretty logger prints each annotation on a line of its own).
      const log = reason._tag === "PayloadTooDeep" ? RefusalLog.logLine("rest", reason) : RefusalLog.log("rest", reason)
      return Effect.as(log, response)
    })
  )

export const routes = HttpRouter.addAll([
  HttpRouter.route("POST", "/realtime/v1/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/realtime/v1/api/broadcast/:topic/events/:event", handle(single)),
  HttpRouter.route("POST", "/api/broadcast/:topic/events/:event", handle(single))
])

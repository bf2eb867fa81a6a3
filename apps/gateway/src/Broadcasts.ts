/**
 * REST broadcast: `POST /api/broadcast` (batch, JSON messages) and
 * `POST /api/broadcast/:topic/events/:event` (one message, JSON or binary body), with Supabase's
 * statuses and bodies (spec §3.5). Both publish through the same hub as socket broadcasts.
 *
 * A request is authenticated from its headers before its body is read, and the body is read only up
 * to the REST body limit: a larger `Content-Length` is refused unread, and a chunked body stops
 * being read at the limit (413). JSON nested deeper than `MAX_JSON_DEPTH` is refused with 400
 * before it is parsed.
 */
import { NodeHttpServerRequest } from "@effect/platform-node"
import { AuthError, ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import { ConnectionConfig, RefusalLog } from "@wedsync/connection"
import { Hub, Publication } from "@wedsync/hub"
import { Frame, Json, Serializer } from "@wedsync/protocol"
import { Data, Effect, Result } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { Readable } from "node:stream"
import { GatewayConfig, restBodyLimit } from "./GatewayConfig.ts"

const json = (status: number, body: unknown) => HttpServerResponse.jsonUnsafe(body, { status })
/** Refusals answered before the body was read close the connection, so the rest of it is never read. */
const closing = (status: number, body: unknown) => HttpServerResponse.jsonUnsafe(body, { status, headers: { connection: "close" } })
const unauthorized = closing(401, { message: "Unauthorized" })
const unprocessable = (message: string) => json(422, { message })
const accepted = HttpServerResponse.empty({ status: 202 })

/** Deepest JSON nesting (objects and arrays) a REST body may have. */
/** The socket refuses the same depth (`Json.MAX_DEPTH`, packages/protocol). */
const MAX_JSON_DEPTH = Json.MAX_DEPTH

class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limit: number }> {
  override get message(): string {
    return `Request body exceeds ${this.limit} bytes`
  }
}

class BodyUnreadable extends Data.TaggedError("BodyUnreadable")<{ readonly cause: unknown }> {
  override get message(): string {
    return "Could not read the request body"
  }
}

class PayloadTooDeep extends Data.TaggedError("PayloadTooDeep")<{}> {
  override get message(): string {
    return `JSON is nested more than ${MAX_JSON_DEPTH} levels deep`
  }
}

/** Reads at most `limit` bytes; past it, stops reading (the 413 then closes the connection). */
const readLimited = (source: Readable, limit: number) =>
  Effect.callback<Buffer, BodyTooLarge | BodyUnreadable>((resume) => {
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
        return resume(Effect.fail(new BodyTooLarge({ limit })))
      }
      chunks.push(chunk)
    }
    function onEnd() {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    function onError(cause: unknown) {
      cleanup()
      resume(Effect.fail(new BodyUnreadable({ cause })))
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
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit) return yield* new BodyTooLarge({ limit })
  return yield* readLimited(NodeHttpServerRequest.toIncomingMessage(request) as Readable, limit)
})

const parseJson = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    if (Json.nestedDeeperThan(bytes, MAX_JSON_DEPTH)) return yield* new PayloadTooDeep()
    return Result.try(() => JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")) as unknown)
  })

/** `Authorization: Bearer …` first, then the `apikey` header, as Supabase's REST endpoints. */
const principalOf = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const verifier = yield* TokenVerifier.TokenVerifier
  const bearer = request.headers["authorization"]?.match(/^Bearer\s+(.+)$/i)?.[1]
  const token = bearer ?? request.headers["apikey"]
  if (token === undefined || token === "") return yield* new AuthError.AuthError({ reason: new AuthError.ApiKeyMissing() })
  return yield* verifier.verify(token)
})

const mayWrite = (principal: Principal.Principal, subtopic: string, isPrivate: boolean) =>
  ChannelPolicy.ChannelPolicy.use((policy) => policy.authorizeJoin(principal, subtopic, isPrivate)).pipe(
    Effect.as(true),
    Effect.catchTag("AuthError", () => Effect.succeed(false))
  )

interface BatchMessage {
  readonly topic: string
  readonly event: string
  readonly payload: object
  readonly private: boolean
  readonly id: string | undefined
}

const parseBatch = (body: unknown): Result.Result<ReadonlyArray<BatchMessage>, string> => {
  const messages = (body as { readonly messages?: unknown } | null)?.messages
  if (!Array.isArray(messages)) return Result.fail("Expected a JSON object with a messages array")
  const parsed: Array<BatchMessage> = []
  for (const [index, m] of messages.entries()) {
    const o = m as Record<string, unknown> | null
    if (typeof o?.["topic"] !== "string" || o["topic"] === "") return Result.fail(`messages[${index}].topic must be a non-empty string`)
    if (typeof o["event"] !== "string") return Result.fail(`messages[${index}].event must be a string`)
    const payload = o["payload"]
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      return Result.fail(`messages[${index}].payload must be a JSON object`)
    }
    const isPrivate = o["private"] === true || o["private"] === "true"
    const id = typeof o["id"] === "string" ? o["id"] : undefined
    parsed.push({ topic: o["topic"], event: o["event"], payload, private: isPrivate, id })
  }
  return Result.succeed(parsed)
}

const batch = Effect.gen(function*() {
  const principal = yield* principalOf
  const hub = yield* Hub.Hub
  const { maxPayloadBytes } = yield* ConnectionConfig.ConnectionConfig
  const parsed = yield* parseJson(yield* body)
  if (Result.isFailure(parsed)) return unprocessable("Request body is not valid JSON")
  const messages = parseBatch(parsed.success)
  if (Result.isFailure(messages)) return unprocessable(messages.failure)
  const publications: Array<Publication.Publication> = []
  for (const m of messages.success) {
    const payloadJson = JSON.stringify(m.payload)
    if (Buffer.byteLength(payloadJson) > maxPayloadBytes) return unprocessable("Payload size exceeds tenant limit")
    // Private messages the sender may not write are skipped and still answered 202, as Supabase does.
    if (m.private && !(yield* mayWrite(principal, m.topic, true))) continue
    const meta = m.id === undefined ? undefined : JSON.stringify({ id: m.id })
    publications.push(
      Publication.json(`${Frame.TOPIC_PREFIX}${m.topic}`, m.private, "broadcast", Serializer.broadcastPayloadJson(m.event, payloadJson, meta))
    )
  }
  for (const publication of publications) yield* hub.publish(publication)
  return accepted
})

const single = Effect.gen(function*() {
  const principal = yield* principalOf
  const request = yield* HttpServerRequest.HttpServerRequest
  const { topic, event } = yield* HttpRouter.params
  const hub = yield* Hub.Hub
  const { maxPayloadBytes } = yield* ConnectionConfig.ConnectionConfig
  if (topic === undefined || topic === "" || event === undefined || event === "") return unprocessable("topic and event are required")
  const isPrivate = new URL(request.url, "http://gateway").searchParams.get("private") === "true"
  const contentType = (request.headers["content-type"] ?? "application/json").split(";")[0]!.trim().toLowerCase()
  if (contentType !== "application/json" && contentType !== "application/octet-stream") {
    return json(415, { error: "Unsupported Media Type. Use application/json or application/octet-stream" })
  }
  const payload: Uint8Array = yield* body
  if (payload.length > maxPayloadBytes) return unprocessable("Payload size exceeds tenant limit")
  const encoding: Frame.PayloadEncoding = contentType === "application/json" ? "json" : "binary"
  if (encoding === "json" && Result.isFailure(yield* parseJson(payload))) return unprocessable("Request body is not valid JSON")
  if (isPrivate && !(yield* mayWrite(principal, topic, true))) return json(403, { message: "Unauthorized" })
  const publication = Publication.userBroadcast(`${Frame.TOPIC_PREFIX}${topic}`, isPrivate, event, encoding, payload)
  if (Result.isFailure(publication)) return unprocessable(publication.failure.message)
  yield* hub.publish(publication.success)
  return accepted
})

/** Each refusal is logged, rate-limited per reason (RefusalLog: no token, no address, no user). */
const handle = <E extends { readonly _tag: string; readonly message: string }, R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  effect.pipe(
    Effect.catch((error) => {
      if (error instanceof AuthError.AuthError) return Effect.as(RefusalLog.log("rest", error.reason), unauthorized)
      switch (error._tag) {
        case "BodyTooLarge":
          return Effect.as(
            RefusalLog.log("rest", { _tag: "PayloadTooLarge", message: error.message }),
            closing(413, { message: `Payload Too Large: ${error.message}` })
          )
        case "PayloadTooDeep":
          // One line per request (the pretty logger prints each annotation on a line of its own).
          return Effect.as(RefusalLog.logLine("rest", error), json(400, { message: error.message }))
        default:
          return Effect.succeed(json(400, { message: "Could not read the request body" }))
      }
    })
  )

export const routes = HttpRouter.addAll([
  HttpRouter.route("POST", "/realtime/v1/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/realtime/v1/api/broadcast/:topic/events/:event", handle(single)),
  HttpRouter.route("POST", "/api/broadcast/:topic/events/:event", handle(single))
])

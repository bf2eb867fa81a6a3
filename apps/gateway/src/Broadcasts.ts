/**
 * REST broadcast: `POST /api/broadcast` (batch, JSON messages) and
 * `POST /api/broadcast/:topic/events/:event` (one message, JSON or binary body), with Supabase's
 * statuses and bodies (spec §3.5). Both publish through the same hub as socket broadcasts.
 */
import { AuthError, ChannelPolicy, type Principal, TokenVerifier } from "@wedsync/auth"
import { ConnectionConfig } from "@wedsync/connection"
import { Hub, Publication } from "@wedsync/hub"
import { Frame, Serializer } from "@wedsync/protocol"
import { Effect, Result } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"

const json = (status: number, body: unknown) => HttpServerResponse.jsonUnsafe(body, { status })
const unauthorized = json(401, { message: "Unauthorized" })
const unprocessable = (message: string) => json(422, { message })
const accepted = HttpServerResponse.empty({ status: 202 })

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
  const request = yield* HttpServerRequest.HttpServerRequest
  const hub = yield* Hub.Hub
  const { maxPayloadBytes } = yield* ConnectionConfig.ConnectionConfig
  const text = yield* request.text
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return unprocessable("Request body is not valid JSON")
  }
  const messages = parseBatch(body)
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
  const payload = new Uint8Array(yield* request.arrayBuffer)
  if (payload.length > maxPayloadBytes) return unprocessable("Payload size exceeds tenant limit")
  const encoding: Frame.PayloadEncoding = contentType === "application/json" ? "json" : "binary"
  if (encoding === "json") {
    try {
      JSON.parse(Buffer.from(payload).toString("utf8"))
    } catch {
      return unprocessable("Request body is not valid JSON")
    }
  }
  if (isPrivate && !(yield* mayWrite(principal, topic, true))) return json(403, { message: "Unauthorized" })
  const publication = Publication.userBroadcast(`${Frame.TOPIC_PREFIX}${topic}`, isPrivate, event, encoding, payload)
  if (Result.isFailure(publication)) return unprocessable(publication.failure.message)
  yield* hub.publish(publication.success)
  return accepted
})

const handle = <E extends { readonly _tag: string }, R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  effect.pipe(
    Effect.catch((e) =>
      Effect.succeed(e._tag === "AuthError" ? unauthorized : json(400, { message: "Could not read the request body" }))
    )
  )

export const routes = HttpRouter.addAll([
  HttpRouter.route("POST", "/realtime/v1/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/api/broadcast", handle(batch)),
  HttpRouter.route("POST", "/realtime/v1/api/broadcast/:topic/events/:event", handle(single)),
  HttpRouter.route("POST", "/api/broadcast/:topic/events/:event", handle(single))
])

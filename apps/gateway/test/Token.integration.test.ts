/**
 * `npm run token` (the newcomer's way to a user JWT) run as a real command: its token passes the gateway's own
 * verifier and policy for the weddings it names, and no others.
 */
import { AuthConfig, ChannelPolicy, Memberships, TokenVerifier } from "@wedsync/auth"
import { Effect, Layer, Redacted } from "effect"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, it } from "@effect/vitest"

const root = fileURLToPath(new URL("../../../", import.meta.url))

const runToken = (args: ReadonlyArray<string>, env: Record<string, string> = {}): string => {
  const { JWT_SECRET: _secret, JWT_ISSUER: _issuer, JWT_AUDIENCE: _audience, ...inherited } = process.env
  return execFileSync("npm", ["run", "-s", "token", "--", ...args], {
    cwd: root,
    env: { ...inherited, ...env },
    encoding: "utf8"
  }).trim()
}

const decide = (token: string, subtopic: string, auth: Layer.Layer<AuthConfig.AuthConfig>) =>
  Effect.gen(function*() {
    const principal = yield* TokenVerifier.TokenVerifier.use((v) => v.verify(token))
    yield* ChannelPolicy.ChannelPolicy.use((p) => p.authorizeJoin(principal, subtopic, true))
    return principal
  }).pipe(
    Effect.provide(
      Layer.mergeAll(TokenVerifier.TokenVerifier.layer, ChannelPolicy.ChannelPolicy.layer).pipe(
        Layer.provide([auth, Memberships.Memberships.layerNoop])
      )
    ),
    Effect.result,
    Effect.runPromise
  )

it("prints a token for the dev secret that joins the weddings it names and no other", async () => {
  const token = runToken(["--sub", "u1", "--wedding", "42", "--wedding", "7"])
  const joined = await decide(token, "wedding:42", AuthConfig.AuthConfig.layer())
  assert.strictEqual(joined._tag, "Success")
  if (joined._tag === "Success") assert.strictEqual(joined.success.sub, "u1")
  assert.strictEqual((await decide(token, "wedding:7", AuthConfig.AuthConfig.layer()))._tag, "Success")
  const other = await decide(token, "wedding:43", AuthConfig.AuthConfig.layer())
  assert.strictEqual(other._tag === "Failure" ? other.failure.code : other._tag, "Unauthorized")
})

it("signs with JWT_SECRET when it is set: the configured gateway accepts it, one with another secret does not", async () => {
  const secret = "a-production-like-secret-of-more-than-32-bytes"
  const token = runToken(["--supplier", "s1"], { JWT_SECRET: secret })
  assert.strictEqual(
    (await decide(token, "supplier:s1", AuthConfig.AuthConfig.layer({ jwtSecret: Redacted.make(secret) })))._tag,
    "Success"
  )
  const other = await decide(token, "supplier:s1", AuthConfig.AuthConfig.layer())
  assert.strictEqual(other._tag === "Failure" ? other.failure.code : other._tag, "JwtSignatureError")
})

it("refuses a bad --exp with a message and a non-zero exit", () => {
  assert.throws(() => runToken(["--exp", "soon"]), /--exp must be a positive number/)
})

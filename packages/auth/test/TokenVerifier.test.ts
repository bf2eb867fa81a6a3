import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Redacted } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { base64url, exportJWK, generateKeyPair } from "jose"
import type { JWK } from "jose"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { AuthConfig, AuthError, TokenVerifier } from "../src/index.ts"
import { TestTokens } from "../src/testing/index.ts"

const verifierLayer = (options?: Partial<AuthConfig.AuthConfig["Service"]>) =>
  TokenVerifier.TokenVerifier.layer.pipe(Layer.provide(AuthConfig.AuthConfig.layer(options)))

const verify = (token: string) => TokenVerifier.TokenVerifier.use((v) => v.verify(token))

// The `phx_reply` reason a client would see.
const wireFailure = (token: string) =>
  Effect.map(Effect.flip(verify(token)), (error) => `${error.code}: ${error.message}`)

const encodeJson = (value: unknown): string => base64url.encode(JSON.stringify(value))

const OTHER_SECRET = "another-secret-that-is-at-least-32-characters"

layer(verifierLayer())("TokenVerifier (HS, TestClock at epoch 0)", (it) => {
  it.effect("accepts a valid HS256 user token and exposes its claims", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect(
        TestTokens.userClaims({ sub: "user-1", weddingIds: ["w1", 2], supplierIds: ["s1"] })
      )
      const principal = yield* verify(token)
      assert.strictEqual(principal.role, "authenticated")
      assert.strictEqual(principal.sub, "user-1")
      assert.strictEqual(principal.exp, 3600)
      assert.deepStrictEqual([...principal.weddingIds], ["w1", "2"])
      assert.deepStrictEqual([...principal.supplierIds], ["s1"])
      assert.strictEqual(principal.token, token)
      assert.strictEqual(principal.claims["aud"], "authenticated")
    }))

  it.effect("accepts HS384 and HS512", () =>
    Effect.gen(function*() {
      for (const alg of ["HS384", "HS512"]) {
        const token = yield* TestTokens.signEffect({ role: "anon" }, { alg })
        assert.strictEqual((yield* verify(token)).role, "anon")
      }
    }))

  it.effect("URL-decodes the token and strips whitespace, like Supabase's clean_token", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "anon" })
      const mangled = ` ${token.replaceAll(".", "%2E")}\n`
      const principal = yield* verify(mangled)
      assert.strictEqual(principal.token, token)
    }))

  it.effect("expires a cached token when the clock passes exp: `Token has expired 5 seconds ago`", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "authenticated" }, { expiresInSeconds: 60 })
      assert.strictEqual((yield* verify(token)).exp, 60)
      yield* TestClock.adjust("65 seconds")
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token has expired 5 seconds ago")
      // The failure is not cached away: asking again still reports the expiry, now from a full verification.
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token has expired 7 seconds ago")
    }))

  it.effect("rejects a token whose exp equals now (`0 seconds ago`); one second earlier it is valid", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "anon" }, { expiresInSeconds: 30 })
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual((yield* verify(token)).role, "anon")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token has expired 0 seconds ago")
    }))

  it.effect("rounds a decimal exp", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "anon", exp: 99.6, iat: 0.4 })
      const principal = yield* verify(token)
      assert.strictEqual(principal.exp, 100)
      assert.strictEqual(principal.claims["exp"], 100)
      assert.strictEqual(principal.claims["iat"], 0)
    }))

  it.effect("InvalidJWTToken: role or exp missing", () =>
    Effect.gen(function*() {
      const expected = "InvalidJWTToken: Fields `role` and `exp` are required in JWT"
      const noRole = yield* TestTokens.signEffect({ sub: "u" })
      const noExp = yield* TestTokens.signEffect({ role: "anon" }, { expiresInSeconds: null })
      const numericRole = yield* TestTokens.signEffect({ role: 7 })
      assert.strictEqual(yield* wireFailure(noRole), expected)
      assert.strictEqual(yield* wireFailure(noExp), expected)
      assert.strictEqual(yield* wireFailure(numericRole), expected)
    }))

  it.effect("InvalidJWTToken: an exp that is not a number", () =>
    Effect.gen(function*() {
      for (const exp of ["tomorrow", null, true, { at: 1 }]) {
        const token = yield* TestTokens.signEffect({ role: "anon", exp })
        assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token expiration time is invalid")
      }
    }))

  it.effect("reports expiry before missing claims, as Supabase validates exp first", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("100 seconds")
      const token = yield* TestTokens.signEffect({ sub: "no-role" }, { expiresInSeconds: -10 })
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token has expired 10 seconds ago")
    }))

  it.effect("MalformedJWT: anything that is not a compact JWS with JSON object parts", () =>
    Effect.gen(function*() {
      const valid = yield* TestTokens.signEffect({ role: "anon" })
      const [header, , signature] = valid.split(".")
      const samples = [
        "not-a-jwt",
        "a.b.c",
        "a.b.c.d.e",
        `${header}.${encodeJson([1, 2])}.${signature}`,
        `${header}.${base64url.encode("{not json")}.${signature}`,
        `${encodeJson("HS256")}.${encodeJson({ role: "anon" })}.${signature}`,
        `${header}..${signature}`,
        `${valid}%zz`,
        "sb_unknown_key"
      ]
      for (const sample of samples) {
        assert.strictEqual(yield* wireFailure(sample), "MalformedJWT: The token provided is not a valid JWT", sample)
      }
    }))

  it.effect("JwtSignatureError: signed with another secret, or tampered with", () =>
    Effect.gen(function*() {
      const good = yield* TestTokens.signEffect({ role: "authenticated" })
      assert.strictEqual((yield* verify(good)).role, "authenticated")

      const otherSecret = yield* TestTokens.signEffect({ role: "authenticated" }, { secret: OTHER_SECRET })
      const [header, , signature] = good.split(".")
      const tampered = `${header}.${encodeJson({ role: "service_role", exp: 3600 })}.${signature}`
      for (const token of [otherSecret, tampered]) {
        assert.strictEqual(yield* wireFailure(token), "JwtSignatureError: Failed to validate JWT signature")
      }
    }))

  it.effect("JwtSignerError: no JWKS configured for RS256, or an algorithm Supabase does not accept", () =>
    Effect.gen(function*() {
      const [, payload] = (yield* TestTokens.signEffect({ role: "anon" })).split(".")
      const withoutKid = "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
      const samples = [
        `${encodeJson({ alg: "RS256", typ: "JWT", kid: "k1" })}.${payload}.c2ln`,
        `${encodeJson({ alg: "none", typ: "JWT" })}.${payload}.`,
        `${encodeJson({ typ: "JWT" })}.${payload}.c2ln`,
        `${encodeJson({ alg: "PS256", typ: "JWT" })}.${payload}.c2ln`
      ]
      for (const sample of samples) assert.strictEqual(yield* wireFailure(sample), withoutKid)
    }))

  it.effect("ApiKeyMissing: a blank token", () =>
    Effect.gen(function*() {
      for (const blank of ["", "   ", "%20\n"]) {
        assert.strictEqual(yield* wireFailure(blank), "ApiKeyMissing: API key is missing")
      }
    }))

  it.effect("accepts any sb_publishable_ key as anon when none is configured", () =>
    Effect.gen(function*() {
      const principal = yield* verify("sb_publishable_anything")
      assert.strictEqual(principal.role, "anon")
      assert.strictEqual(principal.exp, undefined)
      assert.strictEqual(principal.sub, undefined)
    }))

  it.effect("refuses every sb_secret_ key when none is configured", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* wireFailure("sb_secret_guess"),
        "JwtSignatureError: Failed to validate JWT signature"
      )
    }))

  it.effect("errors can be handled per reason with Effect.catchReason", () =>
    Effect.gen(function*() {
      const handled = yield* verify("sb_secret_guess").pipe(
        Effect.as("accepted"),
        Effect.catchReason("AuthError", "JwtSignatureError", (reason) => Effect.succeed(reason.message))
      )
      assert.strictEqual(handled, "Failed to validate JWT signature")
    }))
})

layer(verifierLayer({ clockToleranceSeconds: 10 }))("TokenVerifier with clock tolerance", (it) => {
  it.effect("accepts a token up to the tolerance past exp; beyond it, counts from exp", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "anon" }, { expiresInSeconds: 60 })
      yield* TestClock.adjust("65 seconds")
      assert.strictEqual((yield* verify(token)).role, "anon")
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token has expired 15 seconds ago")
    }))
})

layer(
  verifierLayer({
    publishableKeys: ["sb_publishable_good"],
    secretKeys: [Redacted.make("sb_secret_good"), Redacted.make("sb_secret_rotated_in")]
  })
)("TokenVerifier with configured sb_ keys", (it) => {
  it.effect("accepts a listed sb_publishable_ key as anon; refuses an unlisted one", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* verify("sb_publishable_good")).role, "anon")
      assert.strictEqual(
        yield* wireFailure("sb_publishable_other"),
        "JwtSignatureError: Failed to validate JWT signature"
      )
    }))

  it.effect("accepts a listed sb_secret_ key as service_role; refuses an unlisted one", () =>
    Effect.gen(function*() {
      const principal = yield* verify("sb_secret_good")
      assert.strictEqual(principal.role, "service_role")
      assert.strictEqual(principal.exp, undefined)
      assert.strictEqual((yield* verify(" sb_secret_rotated_in ")).role, "service_role")
      for (const refused of ["sb_secret_goo", "sb_secret_good2", "sb_secret_"]) {
        assert.strictEqual(yield* wireFailure(refused), "JwtSignatureError: Failed to validate JWT signature")
      }
    }))
})

layer(verifierLayer())("TokenVerifier: nbf and alg none (TestClock at epoch 0)", (it) => {
  it.effect("refuses a token whose nbf is in the future; accepts it once nbf has passed", () =>
    Effect.gen(function*() {
      const token = yield* TestTokens.signEffect({ role: "anon", nbf: 30 }, { expiresInSeconds: 600 })
      assert.strictEqual(yield* wireFailure(token), "InvalidJWTToken: Token is not valid yet (nbf)")
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual((yield* verify(token)).role, "anon")
    }))

  it.effect("refuses an nbf that is not a number; a numeric past nbf is accepted", () =>
    Effect.gen(function*() {
      const bad = yield* TestTokens.signEffect({ role: "anon", nbf: "soon" })
      assert.strictEqual(yield* wireFailure(bad), "InvalidJWTToken: Token is not valid yet (nbf)")
      const good = yield* TestTokens.signEffect({ role: "anon", nbf: 0 })
      assert.strictEqual((yield* verify(good)).role, "anon")
    }))

  it.effect("refuses alg none (unsigned) and an HS token re-labelled RS256; the same claims signed HS256 pass", () =>
    Effect.gen(function*() {
      const signed = yield* TestTokens.signEffect({ role: "service_role" })
      const [, claims] = signed.split(".")
      const unsigned = `${encodeJson({ alg: "none", typ: "JWT" })}.${claims}.`
      assert.match(yield* wireFailure(unsigned), /^JwtSignerError: /)
      const relabelled = `${encodeJson({ alg: "RS256", typ: "JWT", kid: "k" })}.${claims}.${signed.split(".")[2]}`
      assert.match(yield* wireFailure(relabelled), /^JwtSignerError/)
      assert.strictEqual((yield* verify(signed)).role, "service_role")
    }))
})

layer(verifierLayer({ issuer: "https://auth.wedsync.test", audience: "authenticated" }))(
  "TokenVerifier with JWT_ISSUER and JWT_AUDIENCE",
  (it) => {
    it.effect("refuses another or a missing issuer and audience; accepts the configured ones (aud as string or array)", () =>
      Effect.gen(function*() {
        const iss = "https://auth.wedsync.test"
        assert.strictEqual(
          yield* wireFailure(
            yield* TestTokens.signEffect({ role: "authenticated", iss: "https://evil.test", aud: "authenticated" })
          ),
          "InvalidJWTToken: Token issuer (iss) is not accepted"
        )
        assert.strictEqual(
          yield* wireFailure(yield* TestTokens.signEffect({ role: "authenticated", aud: "authenticated" })),
          "InvalidJWTToken: Token issuer (iss) is not accepted"
        )
        assert.strictEqual(
          yield* wireFailure(yield* TestTokens.signEffect({ role: "authenticated", iss, aud: "other" })),
          "InvalidJWTToken: Token audience (aud) is not accepted"
        )
        assert.strictEqual(
          (yield* verify(yield* TestTokens.signEffect({ role: "authenticated", iss, aud: "authenticated" }))).role,
          "authenticated"
        )
        assert.strictEqual(
          (yield* verify(yield* TestTokens.signEffect({ role: "authenticated", iss, aud: ["x", "authenticated"] })))
            .role,
          "authenticated"
        )
      }))
  }
)

layer(verifierLayer({ jwksUrl: "http://127.0.0.1:9/jwks.json" }))(
  "TokenVerifier with a JWKS and no secret of its own",
  (it) => {
    it.effect("refuses HS tokens signed with the public development secret; sb_ keys still work", () =>
      Effect.gen(function*() {
        const minted = yield* TestTokens.signEffect({ role: "service_role" })
        assert.match(yield* wireFailure(minted), /^JwtSignerError/)
        assert.strictEqual((yield* verify("sb_publishable_any")).role, "anon")
      }))
  }
)

layer(verifierLayer({ jwksUrl: "http://127.0.0.1:9/jwks.json", jwtSecret: Redacted.make(OTHER_SECRET) }))(
  "TokenVerifier with a JWKS and its own secret",
  (it) => {
    it.effect("accepts HS tokens signed with the configured secret", () =>
      Effect.gen(function*() {
        const token = yield* TestTokens.signEffect({ role: "authenticated" }, { secret: OTHER_SECRET })
        assert.strictEqual((yield* verify(token)).role, "authenticated")
      }))
  }
)

// A JWKS endpoint on loopback, like Supabase Auth's `/.well-known/jwks.json`.
const serveJwks = (keys: ReadonlyArray<JWK>) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly url: string; readonly close: () => void; readonly hits: () => number }>((resume) => {
      let hits = 0
      const server = createServer((_req, res) => {
        hits++
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ keys }))
      })
      let closed = false
      const close = () => {
        if (closed) return
        closed = true
        server.close()
        server.closeAllConnections()
      }
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({ url: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json`, close, hits: () => hits })
        )
      })
    }),
    (server) => Effect.sync(server.close)
  )

const makeKeys = Effect.promise(async () => {
  const rsa = await generateKeyPair("RS256", { extractable: true })
  const ec = await generateKeyPair("ES256", { extractable: true })
  const impostor = await generateKeyPair("RS256", { extractable: true })
  const rsaJwk = { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" }
  const ecJwk = { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" }
  return { rsa, ec, impostor, jwks: [rsaJwk, ecJwk] }
})

describe("TokenVerifier with a JWKS (real HTTP server on 127.0.0.1)", () => {
  it.live("verifies RS256 and ES256 tokens by kid, and still verifies HS256 with the secret", () =>
    Effect.gen(function*() {
      const keys = yield* makeKeys
      const server = yield* serveJwks(keys.jwks)
      yield* Effect.gen(function*() {
        const rs = yield* TestTokens.signEffect(
          { role: "authenticated", sub: "rs-user" },
          { alg: "RS256", kid: "rsa-1", privateKey: keys.rsa.privateKey }
        )
        const es = yield* TestTokens.signEffect(
          { role: "authenticated", sub: "es-user" },
          { alg: "ES256", kid: "ec-1", privateKey: keys.ec.privateKey }
        )
        const hs = yield* TestTokens.signEffect({ role: "anon" }, { kid: "supabase-auth-hs-kid", secret: OTHER_SECRET })
        assert.strictEqual((yield* verify(rs)).sub, "rs-user")
        assert.strictEqual((yield* verify(es)).sub, "es-user")
        assert.strictEqual((yield* verify(hs)).role, "anon")
        assert.strictEqual(server.hits(), 1)
      }).pipe(Effect.provide(verifierLayer({ jwksUrl: server.url, jwtSecret: Redacted.make(OTHER_SECRET) })))
    }))

  it.live("fails with JwtSignerError for an unknown kid or a missing kid, JwtSignatureError for a wrong key", () =>
    Effect.gen(function*() {
      const keys = yield* makeKeys
      const server = yield* serveJwks(keys.jwks)
      yield* Effect.gen(function*() {
        const good = yield* TestTokens.signEffect(
          { role: "authenticated" },
          { alg: "RS256", kid: "rsa-1", privateKey: keys.rsa.privateKey }
        )
        const unknownKid = yield* TestTokens.signEffect(
          { role: "authenticated" },
          { alg: "RS256", kid: "rotated-out", privateKey: keys.rsa.privateKey }
        )
        const noKid = yield* TestTokens.signEffect(
          { role: "authenticated" },
          { alg: "RS256", privateKey: keys.rsa.privateKey }
        )
        const impostor = yield* TestTokens.signEffect(
          { role: "service_role" },
          { alg: "RS256", kid: "rsa-1", privateKey: keys.impostor.privateKey }
        )
        assert.strictEqual((yield* verify(good)).role, "authenticated")
        assert.strictEqual(
          yield* wireFailure(unknownKid),
          'JwtSignerError: Failed to generate JWT signer for key ID (kid) "rotated-out", check your JWT secret or JWKS configuration'
        )
        assert.strictEqual(
          yield* wireFailure(noKid),
          "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration"
        )
        assert.strictEqual(yield* wireFailure(impostor), "JwtSignatureError: Failed to validate JWT signature")
      }).pipe(Effect.provide(verifierLayer({ jwksUrl: server.url })))
    }))

  it.live("fails with JwtSignerError naming the kid when the JWKS cannot be fetched", () =>
    Effect.gen(function*() {
      const keys = yield* makeKeys
      const server = yield* serveJwks(keys.jwks)
      server.close()
      const token = yield* TestTokens.signEffect(
        { role: "authenticated" },
        { alg: "RS256", kid: "rsa-1", privateKey: keys.rsa.privateKey }
      )
      const reason = yield* wireFailure(token).pipe(Effect.provide(verifierLayer({ jwksUrl: server.url })))
      assert.strictEqual(
        reason,
        'JwtSignerError: Failed to generate JWT signer for key ID (kid) "rsa-1", check your JWT secret or JWKS configuration'
      )
    }))
})

// Whatever a client puts in `apikey` or `access_token`, verify answers with a Principal or an AuthError.
describe("TokenVerifier totality", () => {
  const segment = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.jsonValue({ maxDepth: 2 }).map(encodeJson),
    fc.dictionary(fc.constantFrom("alg", "kid", "typ", "crit", "b64"), fc.jsonValue({ maxDepth: 1 })).map(encodeJson)
  )
  const inputs = fc.oneof(
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.tuple(segment, segment, segment).map((parts) => parts.join(".")),
    fc.tuple(fc.constantFrom("sb_publishable_", "sb_secret_", "sb_", "%", "%E0%A4%A"), fc.string()).map(
      ([prefix, rest]) => prefix + rest
    )
  )

  const assertTotal = (exit: Exit.Exit<unknown, unknown>): boolean => {
    if (Exit.isSuccess(exit)) return true
    return !Cause.hasDies(exit.cause) &&
      exit.cause.reasons.every((reason) => Cause.isFailReason(reason) && reason.error instanceof AuthError.AuthError)
  }

  it.effect("verify never dies on arbitrary strings", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<TokenVerifier.TokenVerifier>()
      const run = Effect.runPromiseExitWith(context)
      yield* Effect.promise(() =>
        fc.assert(fc.asyncProperty(inputs, async (input) => assertTotal(await run(verify(input)))), { numRuns: 1000 })
      )
    }).pipe(Effect.provide(verifierLayer({ secretKeys: [Redacted.make("sb_secret_x")] }))))

  it.effect("verify never dies on correctly signed tokens with arbitrary claims", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<TokenVerifier.TokenVerifier>()
      const run = Effect.runPromiseExitWith(context)
      const claims = fc.oneof(
        fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
        fc.record({
          role: fc.oneof(fc.constant("authenticated"), fc.jsonValue({ maxDepth: 1 })),
          exp: fc.oneof(
            fc.double({ noNaN: true, noDefaultInfinity: true }),
            fc.integer(),
            fc.jsonValue({ maxDepth: 1 })
          ),
          app_metadata: fc.oneof(
            fc.jsonValue({ maxDepth: 2 }),
            fc.record({ wedding_ids: fc.jsonValue({ maxDepth: 1 }), supplier_ids: fc.jsonValue({ maxDepth: 1 }) })
          )
        }, { requiredKeys: [] })
      )
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(claims, async (c) => {
            const exit = await run(verify(await TestTokens.sign(c, { nowSeconds: 0 })))
            if (Exit.isSuccess(exit)) {
              return [...exit.value.weddingIds, ...exit.value.supplierIds].every((id) => typeof id === "string")
            }
            return assertTotal(exit)
          }),
          { numRuns: 300 }
        )
      )
    }).pipe(Effect.provide(verifierLayer())))
})
